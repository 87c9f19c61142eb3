//! What a model achieved and how it is shown: metrics and calibration, evaluation on a folder,
//! per-image results, plots, galleries and `summary.json`.

pub mod calibrate;
pub mod evaluate;
pub mod files;
pub mod gallery;
pub mod metrics;
pub mod mistakes;
pub mod plots;
pub(crate) mod summary;
