//! Optimisers and learning-rate schedules.
//!
//! The schedule is a pure function of the global step, so resuming from a checkpoint needs no
//! scheduler state and gives exactly the learning rates of an uninterrupted run.

use burn::optim::{
    decay::WeightDecayConfig, momentum::MomentumConfig, AdamConfig, AdamWConfig, ModuleOptimizer,
    SgdConfig,
};
use serde::{Deserialize, Serialize};

use crate::optim::fused_adam::{FusedAdam, FusedAdamW};

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
    /// [`crate::optim::fused_adam`]), burn's own elsewhere and for SGD.
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
        self.lr_planned(step, &[(0, total_steps)], steps_per_epoch)
    }

    /// Learning rate for 0-based `step` of a run whose length was planned again during it:
    /// `plan` holds `(from_step, total_steps)` pairs in order, the first from step 0. The
    /// cosine's progress is continuous: from each re-plan on, what was left of it is spread
    /// over the new remaining steps, so a changed count bends the curve and never jumps it.
    pub fn lr_planned(&self, step: usize, plan: &[(usize, usize)], steps_per_epoch: usize) -> f64 {
        let warmup = (self.warmup_epochs * steps_per_epoch as f64).round() as usize;
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let t = cosine_progress(step, warmup, plan);
                // Never exactly zero: the last steps still move the weights a little.
                self.lr * (0.5 * (1.0 + (std::f64::consts::PI * t).cos())).max(1e-3)
            }
        }
    }
}

/// How far (0 to 1) the cosine is at `step` (>= `warmup`): linear in the steps within each
/// planned span, reaching 1 at that span's total.
fn cosine_progress(step: usize, warmup: usize, plan: &[(usize, usize)]) -> f64 {
    // Progress `t0` at step `from`, heading for 1 at step `total`.
    let at = |t0: f64, from: usize, total: usize, s: usize| {
        if total <= from {
            1.0
        } else {
            (t0 + (1.0 - t0) * (s - from) as f64 / (total - from) as f64).min(1.0)
        }
    };
    let Some(&(_, first_total)) = plan.first() else {
        return 0.0;
    };
    let (mut t0, mut from, mut total) = (0.0, warmup, first_total);
    for &(change, new_total) in &plan[1..] {
        if change > step {
            break;
        }
        let change = change.max(warmup);
        t0 = at(t0, from, total, change);
        (from, total) = (change, new_total);
    }
    at(t0, from, total, step)
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

    #[test]
    fn a_replanned_cosine_bends_without_a_jump() {
        let c = OptimConfig {
            lr: 1.0,
            warmup_epochs: 1.0,
            ..Default::default()
        };
        // One plan is the plain schedule.
        for step in [0, 9, 10, 40, 99] {
            assert_eq!(c.lr_planned(step, &[(0, 100)], 10), c.lr_at(step, 100, 10));
        }
        // A change during the warm-up is the new count from the start.
        for step in [3, 10, 40, 79] {
            assert_eq!(
                c.lr_planned(step, &[(0, 100), (5, 80)], 10),
                c.lr_at(step, 80, 10)
            );
        }
        // Cut from 100 to 60 steps at step 50: the same until then, continuous there (progress
        // 40/90), then the remaining progress over the 10 steps left, reaching the floor.
        let plan = [(0, 100), (50, 60)];
        assert_eq!(c.lr_planned(49, &plan, 10), c.lr_at(49, 100, 10));
        assert_eq!(c.lr_planned(50, &plan, 10), c.lr_at(50, 100, 10));
        let t = 40.0 / 90.0 + (50.0 / 90.0) * 5.0 / 10.0;
        let expected = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        assert!((c.lr_planned(55, &plan, 10) - expected).abs() < 1e-12);
        assert!(c.lr_planned(59, &plan, 10) < 0.03);
        assert_eq!(c.lr_planned(60, &plan, 10), 1e-3);
        // Lengthened from 60 to 120 at step 30: never a rise, monotone to the end.
        let plan = [(0, 60), (30, 120)];
        let lrs: Vec<f64> = (10..120).map(|s| c.lr_planned(s, &plan, 10)).collect();
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]), "{lrs:?}");
        assert!((c.lr_planned(30, &plan, 10) - c.lr_at(30, 60, 10)).abs() < 1e-12);
    }
}
