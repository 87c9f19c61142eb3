use burn::tensor::{activation::softmax, Tensor};

/// Reads logits `[batch, classes]` as probabilities: a softmax over the class axis.
///
/// For display and decisions only; the loss never sees these.
pub fn probabilities(logits: Tensor<2>) -> Tensor<2> {
    softmax(logits, 1)
}

/// Softmax of one row of logits on the host, stable for logits of any size
/// (the largest logit is subtracted before `exp`).
pub fn softmax_row(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}
