//! Weight averaging (`ema = 0.999`): an exponential moving average of the weights, updated after
//! every optimiser step, is what gets validated, kept as the best model and exported. It
//! smooths the noise of the last steps, where a single set of weights is one sample of it.
//!
//! BatchNorm's running statistics are averaged like the weights (as timm's `ModelEmaV2`), so
//! the averaged model's normalisation matches its weights.
//!
//! The average lives in plain `f32` buffers, one per tensor in the module's visiting order, and
//! is updated in one pass over them: as burn tensor ops (a reshape, two scalings and an add per
//! tensor, each dispatched and allocated) it cost a fifth of a CNN training step.

use burn::module::Module;
use catdog_model::Classifier;

use crate::optim::model_values::{collect, replace, Tensors};

pub struct WeightAverage {
    decay: f64,
    /// Every float tensor's averaged values, in visiting order; empty until the first update.
    values: Vec<Vec<f32>>,
}

impl WeightAverage {
    /// An average that starts at the weights of the first update. Not at the initial weights:
    /// burn initialises parameters when first read, and reading them here, before the first
    /// epoch seeds the device, would give the run other initial weights than one without an
    /// average.
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            values: Vec::new(),
        }
    }

    /// Continues an average saved in a checkpoint as a model.
    pub fn resume(model: &Classifier, decay: f64) -> Self {
        Self {
            decay,
            values: floats(model),
        }
    }

    /// The decay used after `step` (0-based) optimiser steps: it ramps up as (1 + step) /
    /// (10 + step) so that the first steps' near-random weights fade out quickly; a pure function
    /// of the step, so a resumed run averages exactly as an uninterrupted one.
    pub fn decay_at(&self, step: usize) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// `average = d * average + (1 - d) * model` for every weight and running statistic, with
    /// `d` the decay after global step `step`.
    pub fn update(&mut self, model: &Classifier, step: usize) {
        let current = floats(model);
        if self.values.is_empty() {
            self.values = current;
            return;
        }
        let keep = self.decay_at(step) as f32;
        let take = 1.0 - keep;
        for (average, current) in self.values.iter_mut().zip(&current) {
            for (a, c) in average.iter_mut().zip(current) {
                *a = keep * *a + take * c;
            }
        }
    }

    /// The average averaged over the ranks of `world` (each rank's running statistics come from
    /// its own images; its weights are the same on every rank).
    pub fn average_across(&mut self, world: &dyn crate::distributed::Collective) {
        crate::distributed::average_values(world, &mut self.values);
    }

    /// The averaged model (inference mode, on `model`'s inner device), once the average has
    /// started: `model` with the averaged values in place of its own.
    pub fn model(&self, model: &Classifier) -> Option<Classifier> {
        if self.values.is_empty() {
            return None;
        }
        Some(replace(model.valid(), &self.values, Tensors::All))
    }
}

/// Every float tensor (weights and running statistics) of `model`, in visiting order.
fn floats(model: &Classifier) -> Vec<Vec<f32>> {
    // `valid()` (handles, no copy) first: it settles the running statistics' last update, which
    // a plain visit would see one step late (and a resumed run not late at all).
    collect(&model.valid(), Tensors::All)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::*;
    use crate::test_models::tiny_cnn;

    #[test]
    fn every_weight_and_running_statistic_moves_by_one_minus_the_decay() {
        let start = tiny_cnn(1);
        let mut average = WeightAverage::new(0.9);
        assert!(average.model(&start).is_none());
        average.update(&start, 0);
        // A different model of the same shape, with running statistics moved away from 0 and 1.
        let other = tiny_cnn(2);
        let Classifier::Cnn(cnn) = &other else {
            unreachable!()
        };
        let norm = &cnn.blocks[0].norms[0];
        let device = norm.running_mean.value().device();
        norm.running_mean
            .update(Tensor::<1>::ones([4], &device).mul_scalar(3.0));
        let (a, b) = (floats(&start), floats(&other));
        // Step 1000: the ramp (1001 / 1010) is above 0.9, so the decay is 0.9.
        assert_eq!(average.decay_at(1000), 0.9);
        assert!((average.decay_at(0) - 0.1).abs() < 1e-12);
        average.update(&other, 1000);
        let got = floats(&average.model(&other).unwrap());
        assert_eq!(got.len(), a.len());
        let mut running_mean_seen = false;
        for ((g, a), b) in got.iter().zip(&a).zip(&b) {
            for ((g, a), b) in g.iter().zip(a).zip(b) {
                let want = 0.9 * a + 0.1 * b;
                assert!(
                    (g - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{g} vs {want}"
                );
                running_mean_seen |= *b == 3.0 && (g - 0.3).abs() < 1e-6;
            }
        }
        assert!(running_mean_seen, "BatchNorm's running mean is averaged");
        // The trained model itself is untouched.
        assert_eq!(floats(&other), b);
        // A resumed average is the saved one.
        let saved = average.model(&other).unwrap();
        assert_eq!(WeightAverage::resume(&saved, 0.9).values, average.values);
    }
}
