//! What training saves after every epoch and continues from: its progress ([`TrainState`]),
//! the model, weight average and optimiser ([`Checkpoint`]), and where they go
//! ([`CheckpointSink`], the run folder in `train`).

use burn::optim::ModuleOptimizer;
use catdog_infer::ModelIoError;
use catdog_model::Classifier;
use serde::{Deserialize, Serialize};

use crate::report::metrics::EpochMetrics;

/// Progress of a run, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    pub best_epoch: usize,
    /// The best validation loss so far (`None` before the first epoch). JSON has no infinity,
    /// so "none yet" is not written as one.
    #[serde(default)]
    pub best_val_loss: Option<f64>,
    pub epochs_since_best: usize,
    pub history: Vec<EpochMetrics>,
}

impl TrainState {
    pub fn new() -> Self {
        TrainState {
            epoch: 0,
            best_epoch: 0,
            best_val_loss: None,
            epochs_since_best: 0,
            history: Vec::new(),
        }
    }
}

impl TrainState {
    /// Adds a finished epoch; true when its validation loss is the best so far.
    pub fn record(&mut self, metrics: EpochMetrics) -> bool {
        let (epoch, val_loss) = (metrics.epoch, metrics.val_loss);
        self.epoch = epoch;
        self.history.push(metrics);
        if self.best_val_loss.is_none_or(|best| val_loss < best) {
            self.best_val_loss = Some(val_loss);
            self.best_epoch = epoch;
            self.epochs_since_best = 0;
            true
        } else {
            self.epochs_since_best += 1;
            false
        }
    }

    /// Early stopping: `patience` epochs have passed without a better validation loss.
    pub fn patience_ran_out(&self, patience: Option<usize>) -> bool {
        patience.is_some_and(|p| self.epochs_since_best >= p)
    }
}

impl Default for TrainState {
    fn default() -> Self {
        Self::new()
    }
}

/// What a checkpoint holds: the model (autodiff device, training mode), its weight average if
/// the run keeps one, and the optimiser.
pub struct Checkpoint {
    pub model: Classifier,
    pub average: Option<Classifier>,
    pub optim: ModuleOptimizer,
}

/// Where a trainer's checkpoints go.
pub trait CheckpointSink {
    /// Saves the state after an epoch, atomically: a later load sees this checkpoint whole or
    /// the one before.
    fn save_checkpoint(
        &self,
        model: &Classifier,
        average: Option<&Classifier>,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<(), ModelIoError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_loss_round_trips_before_the_first_epoch() {
        let text = serde_json::to_string(&TrainState::new()).unwrap();
        let back: TrainState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.best_val_loss, None);
        // latest.json of older builds wrote the infinite start value as null.
        let old =
            r#"{"epoch":1,"best_epoch":0,"best_val_loss":null,"epochs_since_best":1,"history":[]}"#;
        let state: TrainState = serde_json::from_str(old).unwrap();
        assert_eq!((state.epoch, state.best_val_loss), (1, None));
    }
}
