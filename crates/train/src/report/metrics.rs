use std::path::PathBuf;

use catdog_model::{argmax, softmax_row, softmax_row_at};
use serde::{Deserialize, Serialize};

use crate::optim::loss::cross_entropy_row;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Share of the training step time spent waiting for the next batch.
    pub data_wait: f64,
    /// Share of the training time spent summing gradients across ranks (0 for one process).
    pub all_reduce: f64,
}

/// `metrics.csv`: the learning curves. Deterministic for a seed on a CPU backend, so two runs
/// (or a killed-and-resumed run) can be compared byte for byte.
pub fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut s = String::from("epoch,lr,train_loss,train_acc,val_loss,val_acc\n");
    for m in history {
        s.push_str(&format!(
            "{},{:.6e},{:.6},{:.6},{:.6},{:.6}\n",
            m.epoch, m.lr, m.train_loss, m.train_acc, m.val_loss, m.val_acc
        ));
    }
    s
}

/// `timing.csv`: wall time, throughput, and the shares of data wait and (with several ranks) of
/// the gradient all-reduce per epoch (these vary run to run).
pub fn timing_csv(history: &[EpochMetrics]) -> String {
    let mut s = String::from("epoch,seconds,images_per_sec,data_wait,all_reduce\n");
    for m in history {
        s.push_str(&format!(
            "{},{:.2},{:.1},{:.4},{:.4}\n",
            m.epoch, m.seconds, m.images_per_sec, m.data_wait, m.all_reduce
        ));
    }
    s
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// One image's prediction, for the "least sure" and "confidently wrong" lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageVerdict {
    #[serde(with = "catdog_data::lossy_path")]
    pub path: PathBuf,
    pub label: String,
    pub predicted: String,
    /// Softmax probability of each class, in class order.
    pub probabilities: Vec<f32>,
}

/// Held-out metrics of a model on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f64,
    /// Mean cross-entropy (no label smoothing).
    pub loss: f64,
    pub classes: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
    /// Images whose top probability is lowest (nearest a coin toss).
    pub least_sure: Vec<ImageVerdict>,
    /// Wrong predictions with the highest confidence.
    pub confidently_wrong: Vec<ImageVerdict>,
    /// How far the confidence (the top probability, at `temperature`) can be trusted.
    #[serde(default)]
    pub calibration: Calibration,
    /// Probabilities are `softmax(logits / temperature)`; 1 when not calibrated.
    #[serde(default = "unit_temperature")]
    pub temperature: f32,
    /// The calibration of the raw `softmax(logits)`, when `temperature` is not 1: what
    /// temperature scaling changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated: Option<Calibration>,
}

fn unit_temperature() -> f32 {
    1.0
}

/// Equal-width confidence bins over [0, 1] for the reliability diagram and the ECE.
pub const CALIBRATION_BINS: usize = 15;

/// Reliability of the top-class probability: in each confidence bin, how often the model was
/// right. A calibrated model that says 80% is right 80% of the time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub bins: Vec<CalibrationBin>,
    /// Expected calibration error: the image-weighted mean of |accuracy - confidence| over the
    /// bins (0 = perfectly calibrated).
    pub ece: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub images: usize,
    /// Mean top-class probability of the bin's images (0 when empty).
    pub mean_confidence: f64,
    /// Share of the bin's images predicted correctly (0 when empty).
    pub accuracy: f64,
}

impl Calibration {
    /// From each image's top-class probability and whether that class was right.
    pub fn from_predictions(predictions: impl IntoIterator<Item = (f32, bool)>) -> Self {
        let b = CALIBRATION_BINS;
        let mut count = vec![0usize; b];
        let mut confidence = vec![0.0f64; b];
        let mut correct = vec![0usize; b];
        for (p, right) in predictions {
            let i = ((p as f64 * b as f64) as usize).min(b - 1);
            count[i] += 1;
            confidence[i] += p as f64;
            correct[i] += right as usize;
        }
        let n: usize = count.iter().sum();
        let mut ece = 0.0;
        let bins = (0..b)
            .map(|i| {
                let (mean_confidence, accuracy) = if count[i] > 0 {
                    let c = count[i] as f64;
                    (confidence[i] / c, correct[i] as f64 / c)
                } else {
                    (0.0, 0.0)
                };
                if n > 0 {
                    ece += count[i] as f64 / n as f64 * (accuracy - mean_confidence).abs();
                }
                CalibrationBin {
                    lower: i as f64 / b as f64,
                    upper: (i + 1) as f64 / b as f64,
                    images: count[i],
                    mean_confidence,
                    accuracy,
                }
            })
            .collect();
        Calibration { bins, ece }
    }
}

/// Logits and labels that do not describe one evaluation: rows missing (a pass cut short) or
/// extra, no classes, or a label without a class.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogitsError {
    #[error(
        "{logits} logits for {images} images of {classes} classes: expected {images} x {classes}"
    )]
    Shape {
        logits: usize,
        images: usize,
        classes: usize,
    },
    #[error("no classes to evaluate")]
    NoClasses,
    #[error("image {index} has label {label}, but there are {classes} classes")]
    Label {
        index: usize,
        label: usize,
        classes: usize,
    },
    #[error("temperature {0} is not a positive, finite number")]
    Temperature(f32),
}

/// One image's result: what an [`Evaluation`] sums up, and one row of `predictions.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageResult {
    pub path: PathBuf,
    /// The true class (an index into the classes).
    pub label: usize,
    /// The class with the highest probability (the lowest index on a tie).
    pub predicted: usize,
    /// The model's raw scores, in class order.
    pub logits: Vec<f32>,
    /// `softmax(logits / temperature)` (the evaluation's temperature, 1 when uncalibrated).
    pub probabilities: Vec<f32>,
    /// Cross-entropy of the true class, from the logits with log-sum-exp (no label smoothing).
    pub loss: f64,
}

impl ImageResult {
    pub fn correct(&self) -> bool {
        self.predicted == self.label
    }

    /// The probability of the predicted class (the top probability).
    pub fn confidence(&self) -> f32 {
        self.probabilities[self.predicted]
    }
}

/// Each image's prediction, probabilities (`softmax(logits / temperature)`) and loss from a
/// row-major `[n, classes]` logits matrix and the true labels, `n = labels.len()`, in the set's
/// order: the one place where logits become per-image results ([`Evaluation`] sums these up).
///
/// Refuses logits that are not exactly `n x classes` (a pass that lost rows), an empty class
/// list, labels outside it and a temperature that is not positive. A missing path is left
/// empty.
pub fn image_results(
    logits: &[f32],
    labels: &[usize],
    paths: &[PathBuf],
    classes: &[String],
    temperature: f32,
) -> Result<Vec<ImageResult>, LogitsError> {
    let k = classes.len();
    let n = labels.len();
    if k == 0 {
        return Err(LogitsError::NoClasses);
    }
    if n.checked_mul(k) != Some(logits.len()) {
        return Err(LogitsError::Shape {
            logits: logits.len(),
            images: n,
            classes: k,
        });
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(LogitsError::Temperature(temperature));
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
        return Err(LogitsError::Label {
            index,
            label,
            classes: k,
        });
    }
    Ok(logits
        .chunks_exact(k)
        .zip(labels)
        .enumerate()
        .map(|(i, (row, &label))| {
            let probabilities = softmax_row_at(row, temperature);
            ImageResult {
                path: paths.get(i).cloned().unwrap_or_default(),
                label,
                predicted: argmax(&probabilities),
                logits: row.to_vec(),
                probabilities,
                loss: cross_entropy_row(row, label),
            }
        })
        .collect())
}

impl Evaluation {
    /// From a row-major `[n, classes]` logits matrix and the true labels, `n = labels.len()`,
    /// with probabilities read as the raw `softmax(logits)`.
    ///
    /// Refuses logits that are not exactly `n x classes` (a pass that lost rows is never
    /// averaged over the full count), an empty class list and labels outside it.
    pub fn try_from_logits(
        logits: &[f32],
        labels: &[usize],
        paths: &[PathBuf],
        classes: &[String],
        examples: usize,
    ) -> Result<Self, LogitsError> {
        let images = image_results(logits, labels, paths, classes, 1.0)?;
        Ok(Self::from_images(&images, classes, examples, 1.0))
    }

    /// [`Self::try_from_logits`] for callers that have already checked the shapes.
    ///
    /// # Panics
    ///
    /// With the message of the [`LogitsError`] when `try_from_logits` would refuse.
    pub fn from_logits(
        logits: &[f32],
        labels: &[usize],
        paths: &[PathBuf],
        classes: &[String],
        examples: usize,
    ) -> Self {
        Self::try_from_logits(logits, labels, paths, classes, examples)
            .unwrap_or_else(|e| panic!("Evaluation::from_logits: {e}"))
    }

    /// The summary of per-image results made by [`image_results`] at `temperature` (labels and
    /// predictions are indices into `classes`).
    pub(crate) fn from_images(
        images: &[ImageResult],
        classes: &[String],
        examples: usize,
        temperature: f32,
    ) -> Self {
        let k = classes.len();
        let n = images.len();
        let mut confusion = vec![vec![0usize; k]; k];
        let mut loss = 0.0;
        for image in images {
            confusion[image.label][image.predicted] += 1;
            loss += image.loss;
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let per_class = (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
                let support: usize = confusion[c].iter().sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: classes[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let verdict = |&i: &usize| {
            let image = &images[i];
            ImageVerdict {
                path: image.path.clone(),
                label: classes[image.label].clone(),
                predicted: classes[image.predicted].clone(),
                probabilities: image.probabilities.clone(),
            }
        };
        let calibration = Calibration::from_predictions(
            images
                .iter()
                .map(|image| (image.confidence(), image.correct())),
        );
        let mut wrong: Vec<usize> = (0..n).filter(|&i| !images[i].correct()).collect();
        let top = |i: usize| images[i].confidence();
        wrong.sort_by(|&a, &b| top(b).total_cmp(&top(a)).then(a.cmp(&b)));
        wrong.truncate(examples);
        Evaluation {
            images: n,
            accuracy: if n > 0 {
                correct as f64 / n as f64
            } else {
                0.0
            },
            loss: if n > 0 { loss / n as f64 } else { 0.0 },
            classes: classes.to_vec(),
            confusion,
            per_class,
            least_sure: least_confident(images, examples)
                .iter()
                .map(verdict)
                .collect(),
            confidently_wrong: wrong.iter().map(verdict).collect(),
            calibration,
            temperature,
            uncalibrated: (temperature != 1.0).then(|| {
                Calibration::from_predictions(images.iter().map(|image| {
                    let raw = softmax_row(&image.logits);
                    (raw[image.predicted], image.correct())
                }))
            }),
        }
    }

    /// A human-readable report.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "accuracy {:.2}% on {} images, mean cross-entropy {:.4}",
            100.0 * self.accuracy,
            self.images,
            self.loss
        );
        let w = self
            .classes
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(4)
            .max(9);
        let _ = match &self.uncalibrated {
            Some(raw) => writeln!(
                s,
                "expected calibration error {:.2}% with probabilities softmax(logits / {:.4}) \
                 ({:.2}% for softmax(logits)), {CALIBRATION_BINS} confidence bins",
                100.0 * self.calibration.ece,
                self.temperature,
                100.0 * raw.ece
            ),
            None => writeln!(
                s,
                "expected calibration error {:.2}% ({CALIBRATION_BINS} confidence bins)",
                100.0 * self.calibration.ece
            ),
        };
        let _ = write!(
            s,
            "\nconfusion (rows: true, columns: predicted)\n{:>w$}",
            ""
        );
        for c in &self.classes {
            let _ = write!(s, " {c:>w$}");
        }
        s.push('\n');
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            let _ = write!(s, "{c:>w$}");
            for v in row {
                let _ = write!(s, " {v:>w$}");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\n{:>w$} precision    recall        f1   support",
            "class"
        );
        for m in &self.per_class {
            let _ = writeln!(
                s,
                "{:>w$} {:>9.4} {:>9.4} {:>9.4} {:>9}",
                m.class, m.precision, m.recall, m.f1, m.support
            );
        }
        let list = |s: &mut String, title: &str, items: &[ImageVerdict]| {
            if items.is_empty() {
                return;
            }
            let _ = writeln!(s, "\n{title}");
            for v in items {
                let probs: Vec<String> = self
                    .classes
                    .iter()
                    .zip(&v.probabilities)
                    .map(|(c, p)| format!("{c} {:.1}%", 100.0 * p))
                    .collect();
                let _ = writeln!(
                    s,
                    "  {}  (true {}, predicted {}: {})",
                    v.path.display(),
                    v.label,
                    v.predicted,
                    probs.join(", ")
                );
            }
        };
        list(&mut s, "least sure (nearest 50/50):", &self.least_sure);
        list(&mut s, "most confidently wrong:", &self.confidently_wrong);
        s
    }
}

/// Indices of the `n` images with the highest loss, highest first (ties: data set order).
pub fn top_losses(images: &[ImageResult], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by(|&a, &b| images[b].loss.total_cmp(&images[a].loss).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// Indices of the `n` images whose top probability is lowest (nearest a guess), lowest first
/// (ties: data set order).
pub fn least_confident(images: &[ImageResult], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    let top = |i: usize| images[i].confidence();
    order.sort_by(|&a, &b| top(a).total_cmp(&top(b)).then(a.cmp(&b)));
    order.truncate(n);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(logits: &[f32], labels: &[usize]) -> Vec<ImageResult> {
        let classes = ["cat".to_string(), "dog".to_string()];
        let paths: Vec<std::path::PathBuf> = (0..labels.len())
            .map(|i| format!("{i}.png").into())
            .collect();
        image_results(logits, labels, &paths, &classes, 1.0).unwrap()
    }

    #[test]
    fn top_losses_and_least_confident_select_and_order() {
        // (cat, dog) logits; losses from the true class.
        let images = results(
            &[
                3.0, 0.0, // 0: cat, right, sure
                0.0, 2.0, // 1: cat, wrong
                0.1, 0.0, // 2: dog, wrong, nearly a guess
                0.0, 2.0, // 3: cat, wrong: the same loss as 1
                0.0, 0.1, // 4: dog, right, nearly a guess
                0.0, 5.0, // 5: cat, wrong, sure
            ],
            &[0, 0, 1, 0, 1, 0],
        );
        let ln = |x: f64| x.ln();
        assert!((images[1].loss - (ln(1.0 + 2f64.exp()))).abs() < 1e-9);
        assert!(!images[5].correct() && images[4].correct());
        // Highest loss first; equal losses in data set order.
        assert_eq!(top_losses(&images, 3), vec![5, 1, 3]);
        assert_eq!(top_losses(&images, 100), vec![5, 1, 3, 2, 4, 0]);
        assert_eq!(top_losses(&images, 0), Vec::<usize>::new());
        // Lowest top probability first: 2 and 4 are both 0.1 apart (equal), then 1 and 3.
        assert_eq!(least_confident(&images, 4), vec![2, 4, 1, 3]);
        let loss = |i: usize| images[i].loss;
        let chosen = top_losses(&images, 2);
        assert!(chosen.iter().all(|&i| (0..6)
            .filter(|j| !chosen.contains(j))
            .all(|j| loss(i) >= loss(j))));
    }

    #[test]
    fn confusion_and_f1() {
        let classes = vec!["cat".to_string(), "dog".to_string()];
        // rows: (cat logit, dog logit)
        let logits = [3.0, 0.0, 0.0, 2.0, 1.0, 0.9, 0.0, 5.0];
        let labels = [0, 1, 1, 0];
        let paths: Vec<PathBuf> = (0..4).map(|i| PathBuf::from(format!("{i}.jpg"))).collect();
        let e = Evaluation::from_logits(&logits, &labels, &paths, &classes, 2);
        assert_eq!(e.confusion, vec![vec![1, 1], vec![1, 1]]);
        assert_eq!(e.accuracy, 0.5);
        assert_eq!(e.per_class[0].precision, 0.5);
        assert_eq!(e.least_sure[0].path, PathBuf::from("2.jpg"));
        assert_eq!(e.confidently_wrong[0].path, PathBuf::from("3.jpg"));
        assert_eq!(e.confidently_wrong.len(), 2);
        assert_eq!(e.calibration.bins.len(), CALIBRATION_BINS);
        assert_eq!(
            e.calibration.bins.iter().map(|b| b.images).sum::<usize>(),
            4
        );
    }

    #[test]
    fn logits_that_do_not_match_the_labels_are_refused() {
        let classes = vec!["cat".to_string(), "dog".to_string()];
        let paths: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("{i}.jpg"))).collect();
        let eval = |logits: &[f32], labels: &[usize], classes: &[String]| {
            Evaluation::try_from_logits(logits, labels, &paths, classes, 2)
        };
        // A pass that lost its last row: never averaged over the full count.
        let e = eval(&[3.0, 0.0, 0.0, 2.0], &[0, 1, 1], &classes).unwrap_err();
        assert_eq!(
            e,
            LogitsError::Shape {
                logits: 4,
                images: 3,
                classes: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "4 logits for 3 images of 2 classes: expected 3 x 2"
        );
        // Rows left over, and a row cut in half.
        let e = eval(&[0.0; 8], &[0, 1, 1], &classes).unwrap_err();
        assert!(matches!(e, LogitsError::Shape { logits: 8, .. }), "{e}");
        let e = eval(&[0.0; 5], &[0, 1, 1], &classes).unwrap_err();
        assert!(matches!(e, LogitsError::Shape { logits: 5, .. }), "{e}");
        assert_eq!(
            eval(&[], &[], &[]).unwrap_err().to_string(),
            "no classes to evaluate"
        );
        assert_eq!(
            eval(&[0.0; 6], &[0, 2, 1], &classes)
                .unwrap_err()
                .to_string(),
            "image 1 has label 2, but there are 2 classes"
        );
        // Nothing to evaluate is not an error: zero images of two classes.
        let empty = eval(&[], &[], &classes).unwrap();
        assert_eq!((empty.images, empty.accuracy), (0, 0.0));
        let ok = eval(&[3.0, 0.0, 0.0, 2.0, 1.0, 0.9], &[0, 1, 1], &classes).unwrap();
        assert_eq!(ok.confusion, vec![vec![1, 0], vec![1, 1]]);
        let panic = std::panic::catch_unwind(|| {
            Evaluation::from_logits(&[0.0; 4], &[0, 1, 1], &paths, &classes, 2)
        })
        .unwrap_err();
        assert_eq!(
            panic.downcast_ref::<String>().map(String::as_str),
            Some("Evaluation::from_logits: 4 logits for 3 images of 2 classes: expected 3 x 2")
        );
    }

    #[test]
    fn calibration_error_is_the_weighted_gap() {
        // Ten images at 0.95 confidence, all right; ten at 0.65, half right.
        let preds = (0..10)
            .map(|_| (0.95, true))
            .chain((0..10).map(|i| (0.65, i % 2 == 0)));
        let c = Calibration::from_predictions(preds);
        // Bins of width 1/15: 0.95 lands in bin 14, 0.65 in bin 9.
        assert_eq!(c.bins[14].images, 10);
        assert_eq!(c.bins[9].images, 10);
        assert!((c.bins[9].accuracy - 0.5).abs() < 1e-12);
        let expected = 0.5 * (1.0 - 0.95) + 0.5 * (0.65 - 0.5);
        assert!((c.ece - expected).abs() < 1e-6, "{} vs {expected}", c.ece);
        // A model that is always right with confidence 1 is perfectly calibrated.
        let perfect = Calibration::from_predictions((0..5).map(|_| (1.0, true)));
        assert_eq!(perfect.bins[14].images, 5);
        assert!(perfect.ece.abs() < 1e-12);
    }
}
