//! One evaluation's files in a folder (a run folder's or `catdog eval`'s): the confusion matrix,
//! the reliability diagram, `predictions.csv` and the two galleries of mistakes; and
//! [`Report::write`], which draws and writes them all for `train` and `eval` alike.

use std::path::{Path, PathBuf};

use catdog_data::{write_atomic, Skipped};

use super::{
    metrics::{Evaluation, ImageResult},
    mistakes::{draw_galleries, predictions_csv},
    plots::evaluation_plots,
};

const CONFUSION_FILE: &str = "confusion.png";
const CALIBRATION_FILE: &str = "calibration.png";
const PREDICTIONS_FILE: &str = "predictions.csv";
const TOP_LOSSES_FILE: &str = "top-losses.png";
const LEAST_CONFIDENT_FILE: &str = "least-confident.png";

/// Where the files of one evaluation go.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub confusion: PathBuf,
    pub calibration: PathBuf,
    /// One row per image: prediction, logits, probabilities, loss (`predictions.csv`).
    pub predictions: PathBuf,
    /// The images with the highest loss (`top-losses.png`).
    pub top_losses: PathBuf,
    /// The images with the lowest top probability (`least-confident.png`).
    pub least_confident: PathBuf,
}

impl ReportFiles {
    /// Every file name a report writes.
    pub const NAMES: [&'static str; 5] = [
        CONFUSION_FILE,
        CALIBRATION_FILE,
        PREDICTIONS_FILE,
        TOP_LOSSES_FILE,
        LEAST_CONFIDENT_FILE,
    ];

    /// The gallery files, for removing those of an earlier evaluation that this one does not
    /// draw.
    pub const GALLERY_NAMES: [&'static str; 2] = [TOP_LOSSES_FILE, LEAST_CONFIDENT_FILE];

    /// The report files in `dir` (a folder catdog owns: a run's or an evaluation's).
    pub fn in_folder(dir: &Path) -> Self {
        ReportFiles {
            confusion: dir.join(CONFUSION_FILE),
            calibration: dir.join(CALIBRATION_FILE),
            predictions: dir.join(PREDICTIONS_FILE),
            top_losses: dir.join(TOP_LOSSES_FILE),
            least_confident: dir.join(LEAST_CONFIDENT_FILE),
        }
    }
}

/// One evaluation to show: its metrics, its per-image results in the data set's order, the
/// files that could not be used, and the model's class names.
pub struct Report<'a> {
    pub evaluation: &'a Evaluation,
    pub images: &'a [ImageResult],
    pub skipped: &'a [Skipped],
    pub classes: &'a [String],
    /// Names the evaluated set in the pictures' titles.
    pub title: String,
    /// Tiles per gallery; 0 draws none.
    pub gallery_tiles: usize,
}

/// What [`Report::write`] wrote, and the pictures it could not draw (the numbers are in
/// `predictions.csv` and the summary, so a picture that fails is reported, not fatal).
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

impl Report<'_> {
    /// Draws the plots and galleries and writes `predictions.csv` into `files`; only a failure
    /// to write `predictions.csv` is an error.
    pub fn write(&self, files: &ReportFiles) -> std::io::Result<Written> {
        let mut written = Written::default();
        match evaluation_plots(self.evaluation, &self.title, files) {
            Ok(()) => written
                .files
                .extend([files.confusion.clone(), files.calibration.clone()]),
            Err(e) => written.warnings.push(e.to_string()),
        }
        let csv = predictions_csv(self.classes, self.images, self.skipped);
        write_atomic(&files.predictions, csv.as_bytes()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", files.predictions.display()),
            )
        })?;
        written.files.push(files.predictions.clone());
        if self.gallery_tiles > 0 {
            let drawn = draw_galleries(
                files,
                self.classes,
                self.images,
                self.gallery_tiles,
                &self.title,
            );
            match drawn {
                Ok(()) => written
                    .files
                    .extend([files.top_losses.clone(), files.least_confident.clone()]),
                Err(e) => written.warnings.push(e.to_string()),
            }
        }
        Ok(written)
    }
}
