//! Why a training run stopped.

use std::path::PathBuf;

use catdog_data::DataError;
use catdog_infer::{BackendError, ModelIoError};

use crate::{
    budget::BudgetTooShort, folder::run_dir::FolderError, report::evaluate::EvalError,
    InvalidSetting,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Setting(#[from] InvalidSetting),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    ModelIo(#[from] ModelIoError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    BudgetTooShort(#[from] BudgetTooShort),
    #[error(
        "loss became {loss} at epoch {epoch}, batch {batch} (learning rate {lr:.3e}); training \
         stopped and the last good checkpoint was kept: try a lower --lr"
    )]
    NonFinite {
        epoch: usize,
        batch: usize,
        loss: f32,
        lr: f64,
    },
    #[error(
        "validation loss became {loss} after epoch {epoch} (learning rate {lr:.3e}); training \
         stopped and the last good checkpoint was kept: try a lower --lr"
    )]
    NonFiniteValidation { epoch: usize, loss: f64, lr: f64 },
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: PathBuf, reason: &'static str },
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// The final evaluation's `predictions.csv` could not be written.
    #[error(transparent)]
    Report(std::io::Error),
    #[error("cannot start a worker thread")]
    Thread(#[source] std::io::Error),
    /// The ranks of a data-parallel run no longer hold the same model.
    #[error(transparent)]
    Diverged(crate::distributed::Diverged),
}
