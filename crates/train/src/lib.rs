//! Training, evaluation and export for catdog models.
//!
//! A run folder holds `config.json` (model, classes, preprocessing, training settings),
//! `model.bpk` (the best epoch's weights), `best.bpk`, `metrics.csv`, `summary.json` and
//! `checkpoints/` (model and optimiser after the last epoch, committed by `latest.json`).

mod backend;
mod config;
pub mod evaluate;
pub mod export;
mod lock;
pub mod loss;
pub mod metrics;
pub mod model_io;
mod optim;
pub mod plots;
mod progress;
pub mod run_dir;
mod trainer;

pub use backend::{Backend, BackendError, OpenDevice};
pub use config::{pixel_cache, InvalidSetting, RunConfig, RunConfigError, TrainConfig};
pub use lock::{lock_holder, LockError, RunLock};
pub use loss::Loss;
pub use optim::{OptimConfig, OptimizerKind, Schedule};
pub use progress::{Progress, ProgressMode};
pub use run_dir::{FolderError, FolderKind, OwnedDir, RunDir};
pub use trainer::{load_folder, report_skipped, train, Summary, TrainError, TrainRequest};
