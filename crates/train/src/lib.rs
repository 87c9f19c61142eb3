//! Training, evaluation and export for catdog models.
//!
//! `train()` (run.rs) reads top to bottom: the run folder ([`RunDir`], the only code that names
//! its files), the data ([`dataset`]), the [`Trainer`] (step, epoch, validation), the final
//! evaluation and `summary.json`. Loading and running a trained model for inference lives in
//! `catdog-infer`, which this crate builds on.

pub mod audit;
mod budget;
mod checkpoint;
mod config;
mod config_checks;
mod config_file;
pub mod dataset;
pub mod distributed;
mod error;
pub mod exclude;
pub mod export;
pub mod folder;
pub mod lr_find;
pub mod optim;
mod progress;
mod progressive;
mod recipe;
pub mod report;
mod run;
#[cfg(test)]
mod test_models;
mod trainer;

// The modules' old paths, kept for the CLI and other users of the library.
pub use folder::run_dir;
pub use optim::{fused_adam, loss, whiten};
pub use report::{calibrate, evaluate, gallery, metrics, mistakes, plots};

pub use budget::{Budget, BudgetTooShort};
pub use checkpoint::{Checkpoint, CheckpointSink, TrainState};
pub use config::{pixel_cache, InvalidSetting, Replan, RunConfig, TrainConfig, DEFAULT_BUDGET};
pub use config_file::ConfigFileError;
pub use error::TrainError;
pub use export::{HeldOutMetrics, ModelCard, TensorInfo};
pub use folder::lock::{lock_holder, LockError, RunLock};
pub use folder::paths::refuse_inside;
pub use folder::run_dir::{FolderError, FolderKind, OwnedDir, RunDir};
pub use optim::lookahead::LookaheadConfig;
pub use optim::loss::Loss;
pub use optim::{OptimConfig, OptimizerKind, Schedule};
pub use progress::{Progress, ProgressMode};
pub use progressive::Progressive;
pub use recipe::{Recipe, RESNET_FROM, RESNET_IMAGE_SIZE};
pub use report::summary::Summary;
pub use run::{train, TrainRequest};
pub use trainer::Trainer;
