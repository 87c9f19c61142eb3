//! Cross-entropy on raw logits.
//!
//! burn's `CrossEntropyLoss` (with its default `logits: true`) applies `log_softmax`, which
//! subtracts the row maximum before exponentiating (the log-sum-exp trick): finite for logits of
//! any size. The model never applies a softmax itself.

use burn::{
    nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig},
    tensor::{Device, Int, Tensor},
};

/// Mean cross-entropy of a batch, computed from logits, with optional label smoothing.
#[derive(Debug)]
pub struct Loss {
    inner: CrossEntropyLoss,
}

impl Loss {
    /// `label_smoothing` in `[0, 1)`; `0` is plain cross-entropy.
    pub fn new(label_smoothing: f32, device: &Device) -> Self {
        let smoothing = (label_smoothing > 0.0).then_some(label_smoothing);
        Self {
            inner: CrossEntropyLossConfig::new()
                .with_smoothing(smoothing)
                .init(device),
        }
    }

    /// `logits`: `[batch, classes]` raw scores; `targets`: `[batch]` class indices.
    /// Returns a one-element tensor, the batch mean.
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.inner.forward(logits, targets)
    }

    /// The loss of a training batch: [`Self::forward`] on its targets or, for a mixed batch
    /// (`mix`: the partner labels and the weight of `targets`), the two labels' losses
    /// weighted by the share of each image they show.
    pub fn of_batch(
        &self,
        logits: Tensor<2>,
        targets: Tensor<1, Int>,
        mix: Option<(Tensor<1, Int>, f32)>,
    ) -> Tensor<1> {
        match mix {
            None => self.forward(logits, targets),
            Some((partner, weight)) => {
                let own = self.forward(logits.clone(), targets).mul_scalar(weight);
                own + self.forward(logits, partner).mul_scalar(1.0 - weight)
            }
        }
    }
}

/// Cross-entropy of one row of logits on the host, in f64: `logsumexp(logits) - logits[target]`.
///
/// Used by evaluation to report per-image losses without another pass through the device.
pub fn cross_entropy_row(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln() - logits[target] as f64
}
