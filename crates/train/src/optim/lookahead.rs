//! Lookahead (Zhang et al., 2019; `lookahead = { steps = 5, alpha = 0.5 }`, `--lookahead 5`):
//! the optimiser's weights are "fast" weights that explore for `steps` steps; then the "slow"
//! weights move `alpha` of the way towards them, and the fast weights start again from there.
//! The optimiser's own state (Adam's moments) carries on.
//!
//! The slow weights restart from the trained ones at every epoch, after a last synchronisation
//! at the epoch's end: the weights an epoch's checkpoint saves are then the slow ones, and a
//! resumed run continues exactly as an uninterrupted one without saving anything more.
//!
//! Only trainable parameters are averaged (BatchNorm's running statistics follow the fast
//! weights, as PyTorch's implementations do with buffers).

use catdog_model::Classifier;
use serde::{Deserialize, Serialize};

use crate::optim::model_values::{collect, replace, Tensors};

/// Lookahead's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LookaheadConfig {
    /// Optimiser steps between two synchronisations (k).
    pub steps: usize,
    /// How far the slow weights move towards the fast ones at each synchronisation.
    pub alpha: f64,
}

impl Default for LookaheadConfig {
    fn default() -> Self {
        Self {
            steps: 5,
            alpha: 0.5,
        }
    }
}

/// The slow weights of a run with Lookahead.
pub struct Lookahead {
    config: LookaheadConfig,
    /// Every trainable tensor's slow values, in visiting order; empty until the epoch's first
    /// step.
    slow: Vec<Vec<f32>>,
    /// Steps since the slow weights were last set.
    since: usize,
}

impl Lookahead {
    pub fn new(config: LookaheadConfig) -> Self {
        Self {
            config,
            slow: Vec::new(),
            since: 0,
        }
    }

    /// After an optimiser step: the epoch's first step sets the slow weights to the model's;
    /// every `steps` steps after that, the model continues from the synchronised slow weights.
    pub fn after_step(&mut self, model: Classifier) -> Classifier {
        if self.slow.is_empty() {
            self.slow = trainable(&model);
            self.since = 0;
            return model;
        }
        self.since += 1;
        if self.since < self.config.steps {
            return model;
        }
        self.synchronise(model)
    }

    /// At the end of an epoch: a last synchronisation (when steps were taken since the last
    /// one), after which the next epoch starts its slow weights afresh.
    pub fn end_epoch(&mut self, model: Classifier) -> Classifier {
        let model = if self.since > 0 && !self.slow.is_empty() {
            self.synchronise(model)
        } else {
            model
        };
        self.slow.clear();
        model
    }

    /// `slow += alpha * (fast - slow)`, and the model takes the slow weights.
    fn synchronise(&mut self, model: Classifier) -> Classifier {
        let fast = trainable(&model);
        let alpha = self.config.alpha as f32;
        for (slow, fast) in self.slow.iter_mut().zip(&fast) {
            for (s, f) in slow.iter_mut().zip(fast) {
                *s += alpha * (f - *s);
            }
        }
        self.since = 0;
        replace(model, &self.slow, Tensors::Trainable)
    }
}

/// Every trainable tensor of `model` (those that take a gradient), in visiting order.
fn trainable(model: &Classifier) -> Vec<Vec<f32>> {
    collect(model, Tensors::Trainable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_models::tiny_cnn;

    /// `model` with every trainable value `v` replaced by `f(v)`.
    fn shifted(model: Classifier, by: f32) -> Classifier {
        let moved: Vec<Vec<f32>> = trainable(&model)
            .into_iter()
            .map(|t| t.into_iter().map(|v| v + by).collect())
            .collect();
        replace(model, &moved, Tensors::Trainable)
    }

    #[test]
    fn every_k_steps_the_model_continues_from_the_interpolated_slow_weights() {
        let mut look = Lookahead::new(LookaheadConfig {
            steps: 2,
            alpha: 0.25,
        });
        let start = tiny_cnn(1);
        let first = trainable(&start);
        // Step 1 of the epoch: the slow weights start here.
        let model = look.after_step(start);
        assert_eq!(trainable(&model), first);
        // Step 2: the fast weights move by 1.0; no synchronisation yet.
        let model = look.after_step(shifted(model, 1.0));
        // Step 3: they move by 1.0 more (2.0 from the slow weights), and synchronise:
        // slow + 0.25 * 2.0.
        let model = look.after_step(shifted(model, 1.0));
        let got = trainable(&model);
        for (g, f) in got.iter().flatten().zip(first.iter().flatten()) {
            assert!((g - (f + 0.5)).abs() < 1e-5, "{g} vs {}", f + 0.5);
        }
        // Every parameter still takes a gradient (as many trainable tensors as before).
        assert!(!got.is_empty());
        assert_eq!(got.len(), first.len());
        // One step more, then the epoch ends: synchronised again, then afresh.
        let model = look.after_step(shifted(model, 4.0));
        let model = look.end_epoch(model);
        for (g, f) in trainable(&model)
            .iter()
            .flatten()
            .zip(first.iter().flatten())
        {
            assert!((g - (f + 1.5)).abs() < 1e-5, "{g} vs {}", f + 1.5);
        }
        assert!(look.slow.is_empty());
        // With no step since the last synchronisation, the end of an epoch changes nothing.
        let before = trainable(&model);
        let model = look.end_epoch(model);
        assert_eq!(trainable(&model), before);
    }
}
