//! Training, evaluation and export for catdog models.
//!
//! `train()` (run.rs) reads top to bottom: the run folder ([`RunDir`], the only code that names
//! its files), the data ([`dataset`]), the [`Trainer`] (step, epoch, validation), the final
//! evaluation and `summary.json`. Loading and running a trained model for inference lives in
//! `catdog-infer`, which this crate builds on.

mod budget;
pub mod calibrate;
mod card;
mod config;
pub mod dataset;
mod ema;
pub mod evaluate;
pub mod export;
pub mod fused_adam;
pub mod gallery;
mod lock;
mod lookahead;
pub mod loss;
pub mod lr_find;
pub mod metrics;
pub mod mistakes;
mod model_values;
mod optim;
mod owned_dir;
mod paths;
pub mod plots;
mod progress;
mod progressive;
mod run;
pub mod run_dir;
mod summary;
#[cfg(test)]
mod test_models;
mod trainer;
pub mod whiten;

pub use budget::{Budget, BudgetTooShort};
pub use card::{HeldOutMetrics, ModelCard, TensorInfo};
pub use config::{pixel_cache, InvalidSetting, Replan, RunConfig, TrainConfig};
pub use lock::{lock_holder, LockError, RunLock};
pub use lookahead::LookaheadConfig;
pub use loss::Loss;
pub use optim::{OptimConfig, OptimizerKind, Schedule};
pub use paths::refuse_inside;
pub use progress::{Progress, ProgressMode};
pub use progressive::Progressive;
pub use run::{train, TrainError, TrainRequest};
pub use run_dir::{EvalPlotFiles, FolderError, FolderKind, OwnedDir, RunDir};
pub use summary::Summary;
pub use trainer::Trainer;
