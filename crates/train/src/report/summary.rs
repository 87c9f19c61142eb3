//! `summary.json`: what a finished run achieved.

use std::path::PathBuf;

use catdog_data::Skipped;
use serde::{Deserialize, Serialize};

use crate::report::metrics::Evaluation;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub device: String,
    pub parameters: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub wall_seconds: f64,
    /// Mean training throughput over the epochs of this process.
    pub train_images_per_sec: f64,
    pub train_images: usize,
    pub validation: Evaluation,
    /// The held-out `--test` folder, plain and with flip test-time augmentation (the mean of the
    /// logits of each image and its mirror image).
    pub test: Option<Evaluation>,
    pub test_flip_tta: Option<Evaluation>,
    pub skipped_count: usize,
    pub skipped: Vec<Skipped>,
}
