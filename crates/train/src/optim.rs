//! Optimisers and learning-rate schedules.
//!
//! The schedule is a pure function of the global step, so resuming from a checkpoint needs no
//! scheduler state and gives exactly the learning rates of an uninterrupted run.

use burn::optim::{
    decay::WeightDecayConfig, momentum::MomentumConfig, AdamConfig, AdamWConfig, ModuleOptimizer,
    SgdConfig,
};
use serde::{Deserialize, Serialize};

use crate::fused_adam::{FusedAdam, FusedAdamW};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OptimizerKind {
    Adam,
    /// Adam with decoupled weight decay (the default).
    #[default]
    #[cfg_attr(feature = "clap", value(name = "adamw"))]
    AdamW,
    /// SGD with Nesterov momentum.
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Schedule {
    Constant,
    /// Cosine decay from the peak to zero over the run, after the warm-up.
    #[default]
    Cosine,
}

/// Optimiser settings, all serialised into `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimConfig {
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD momentum (Nesterov); ignored by Adam and AdamW.
    pub momentum: f64,
    pub schedule: Schedule,
    /// Linear warm-up from ~0 to `lr`, in epochs (may be fractional).
    pub warmup_epochs: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::default(),
            lr: 2e-3,
            weight_decay: 5e-4,
            momentum: 0.9,
            schedule: Schedule::Cosine,
            warmup_epochs: 0.5,
        }
    }
}

impl OptimConfig {
    /// The optimiser: Adam and AdamW fused into one pass per parameter on burn-flex (see
    /// [`crate::fused_adam`]), burn's own elsewhere and for SGD.
    pub fn build(&self) -> ModuleOptimizer {
        self.build_with(true)
    }

    /// [`Self::build`], or with `fused = false` burn's own Adam and AdamW on every backend (the
    /// same results, for side-by-side speed measurements).
    pub fn build_with(&self, fused: bool) -> ModuleOptimizer {
        let wd = self.weight_decay as f32;
        match (self.optimizer, fused) {
            (OptimizerKind::Adam, true) => FusedAdam::new(wd).into(),
            (OptimizerKind::AdamW, true) => FusedAdamW::new(wd).into(),
            (OptimizerKind::Adam, false) => AdamConfig::new()
                .with_weight_decay((wd > 0.0).then(|| WeightDecayConfig::new(wd)))
                .init(),
            (OptimizerKind::AdamW, false) => AdamWConfig::new().with_weight_decay(wd).init(),
            (OptimizerKind::Sgd, _) => SgdConfig::new()
                .with_momentum((self.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                        .with_nesterov(true)
                }))
                .with_weight_decay((wd > 0.0).then(|| WeightDecayConfig::new(wd)))
                .init(),
        }
    }

    /// Learning rate for 0-based `step` of `total_steps`, with `steps_per_epoch` for the warm-up.
    pub fn lr_at(&self, step: usize, total_steps: usize, steps_per_epoch: usize) -> f64 {
        let warmup = (self.warmup_epochs * steps_per_epoch as f64).round() as usize;
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = total_steps.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                // Never exactly zero: the last steps still move the weights a little.
                self.lr * (0.5 * (1.0 + (std::f64::consts::PI * t).cos())).max(1e-3)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let c = OptimConfig {
            lr: 1.0,
            warmup_epochs: 1.0,
            ..Default::default()
        };
        assert!((c.lr_at(0, 100, 10) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(9, 100, 10) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(10, 100, 10) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(55, 100, 10) - 0.5).abs() < 1e-9);
        assert!(c.lr_at(99, 100, 10) < 0.01);
        let flat = OptimConfig {
            schedule: Schedule::Constant,
            warmup_epochs: 0.0,
            ..c
        };
        assert_eq!(flat.lr_at(0, 100, 10), 1.0);
        assert_eq!(flat.lr_at(99, 100, 10), 1.0);
    }
}
