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
    softmax_row_at(logits, 1.0)
}

/// `softmax(logits / temperature)` of one row: the probabilities of a model calibrated by
/// temperature scaling (`temperature > 1` softens over-confident logits, `< 1` sharpens
/// under-confident ones). The argmax is the same at every positive temperature.
pub fn softmax_row_at(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let t = f64::from(temperature);
    let exps: Vec<f64> = logits
        .iter()
        .map(|&l| (f64::from(l - max) / t).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Index of the largest value in `row`; ties go to the lowest index, NaN never wins (a NaN at
/// index 0 keeps index 0, since nothing compares greater than it), and an empty row gives 0.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}
