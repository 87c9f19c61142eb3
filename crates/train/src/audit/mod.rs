//! `catdog audit`: the training photos whose labels are probably wrong, and the near-duplicates.
//!
//! The photos are split into `folds` stratified folds; for each fold a model is trained (the
//! usual `train`, into the audit folder's `fold-<k>/`) on the other folds, with the fold left
//! out through an exclude list, and then predicts the fold's photos: every photo gets
//! probabilities (at the fold model's fitted temperature) from a model that never saw it.
//! [`confident::label_issues`] picks the photos confidently of another class; [`dhash`] finds
//! photos that look alike. Written into the audit folder: `audit.csv` (path, given label,
//! suggested label, score; `catdog train --exclude audit.csv` leaves them out),
//! `label-issues.png` (the most certain ones) and `duplicates.csv`. The data folder is only read.

pub mod confident;
pub mod dhash;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use catdog_data::{write_atomic, SplitMix64};
use catdog_infer::{format_percent, load_model, Tta};
use catdog_model::softmax_row_at;

use crate::{
    budget::Budget,
    dataset::load_folder,
    folder::run_dir::{FolderKind, OwnedDir},
    mistakes::csv_field,
    report::gallery::{draw_gallery, Tile},
    train, Progress, ProgressMode, TrainConfig, TrainError, TrainRequest,
};

pub use confident::LabelIssue;

/// Near-duplicates: hashes at most this many bits apart (of 64).
const DUPLICATE_BITS: u32 = 4;

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    /// The training settings of each fold's model (`data` is the folder audited; its `test`
    /// and `exclude` are not used).
    pub config: TrainConfig,
    pub folds: usize,
    /// The audit folder.
    pub out: PathBuf,
    pub force: bool,
    /// Photos in `label-issues.png` (0: none drawn).
    pub gallery: usize,
    pub progress: ProgressMode,
}

/// What the audit found.
#[derive(Debug)]
pub struct AuditReport {
    pub out: PathBuf,
    pub photos: usize,
    pub issues: Vec<(PathBuf, LabelIssue)>,
    pub duplicates: Vec<(PathBuf, PathBuf, u32)>,
    pub classes: Vec<String>,
}

/// Runs the audit (see the module's documentation).
pub fn audit(req: AuditRequest) -> Result<AuditReport, TrainError> {
    let started = Instant::now();
    let progress = Progress::new(req.progress);
    let folds = req.folds.max(2);
    let out = OwnedDir::claim(&req.out, FolderKind::Audit, req.force)?;
    let config = TrainConfig {
        test: None,
        exclude: None,
        ..req.config.clone()
    };
    let set = load_folder(
        &config.data,
        config.image_size,
        config.pixel_cache(),
        &progress,
    )?
    .set;
    let classes = set.classes.len();
    let fold_of = stratified_folds(&set.labels, folds, config.seed);
    let mut probs = vec![0f32; set.len() * classes];
    for fold in 0..folds {
        let members: Vec<usize> = (0..set.len()).filter(|&i| fold_of[i] == fold).collect();
        // The fold's photos are the exclude list of the model that will judge them.
        let list = out.path().join(format!("fold-{}-photos.txt", fold + 1));
        let text: String = members
            .iter()
            .map(|&i| format!("{}\n", set.paths[i].display()))
            .collect();
        write_atomic(&list, text.as_bytes()).map_err(TrainError::Report)?;
        let mut fold_config = TrainConfig {
            exclude: Some(list),
            ..config.clone()
        };
        if let Some(budget) = config.budget {
            // What is left of the budget, shared by the folds still to train; 5% kept for
            // judging each fold's photos and writing the audit.
            let left = budget
                .duration()
                .saturating_sub(started.elapsed())
                .mul_f64(0.95);
            fold_config.budget = Some(Budget::from_duration(left / (folds - fold) as u32));
        }
        progress.say(&format!(
            "fold {} of {folds}: training on {} photos, judging {}",
            fold + 1,
            set.len() - members.len(),
            members.len()
        ));
        let run = out.path().join(format!("fold-{}", fold + 1));
        let summary = train(TrainRequest {
            config: fold_config,
            out: run.clone(),
            resume: false,
            force: req.force,
            progress: ProgressMode::Quiet,
            world: None,
        })?;
        progress.say(&format!(
            "fold {}: {} epochs, validation accuracy {:.2}%",
            fold + 1,
            summary.epochs_run,
            100.0 * summary.validation.accuracy
        ));
        let opened = config.backend.open(config.device_index)?;
        let loaded = load_model(&run, &opened.device)?;
        let judged = Arc::new(set.subset(&members));
        let logits = catdog_infer::infer_logits(
            &loaded.model,
            judged,
            &loaded.spec.normalization,
            &opened.device,
            config.batch_size.max(64),
            // As catdog classifies by default: flip TTA, the surer out-of-fold probabilities.
            Tta::default(),
        )
        .map_err(|e| TrainError::Eval(e.into()))?;
        for (k, &i) in members.iter().enumerate() {
            let p = softmax_row_at(
                &logits[k * classes..(k + 1) * classes],
                loaded.spec.temperature,
            );
            probs[i * classes..(i + 1) * classes].copy_from_slice(&p);
        }
    }
    let issues = confident::label_issues(&probs, &set.labels, classes);
    let hashes: Vec<u64> = (0..set.len())
        .map(|i| dhash::dhash(set.image(i), set.image_size))
        .collect();
    let duplicates = dhash::near_pairs(&hashes, DUPLICATE_BITS);
    let report = AuditReport {
        out: out.path().to_path_buf(),
        photos: set.len(),
        issues: issues
            .into_iter()
            .map(|issue| (set.paths[issue.index].clone(), issue))
            .collect(),
        duplicates: duplicates
            .into_iter()
            .map(|(a, b, d)| (set.paths[a].clone(), set.paths[b].clone(), d))
            .collect(),
        classes: set.classes.clone(),
    };
    write_files(&report, out.path(), req.gallery, &probs, classes)?;
    Ok(report)
}

/// Fold (0..folds) of every photo: each class's photos shuffled (seeded) and dealt in turn.
fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    let mut fold_of = vec![0; labels.len()];
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        SplitMix64::derive(seed ^ 0xA0D17, class as u64).shuffle(&mut members);
        for (k, i) in members.into_iter().enumerate() {
            fold_of[i] = k % folds;
        }
    }
    fold_of
}

/// `audit.csv`, `duplicates.csv` and `label-issues.png`.
fn write_files(
    report: &AuditReport,
    dir: &Path,
    gallery: usize,
    probs: &[f32],
    classes: usize,
) -> Result<(), TrainError> {
    let name = |c: usize| report.classes[c].as_str();
    let mut audit = String::from("path,given_label,suggested_label,score\n");
    for (path, issue) in &report.issues {
        audit.push_str(&format!(
            "{},{},{},{:.6}\n",
            csv_field(&path.to_string_lossy()),
            csv_field(name(issue.given)),
            csv_field(name(issue.suggested)),
            issue.score
        ));
    }
    write_atomic(&dir.join("audit.csv"), audit.as_bytes()).map_err(TrainError::Report)?;
    let mut dups = String::from("path_a,path_b,hash_distance\n");
    for (a, b, d) in &report.duplicates {
        dups.push_str(&format!(
            "{},{},{d}\n",
            csv_field(&a.to_string_lossy()),
            csv_field(&b.to_string_lossy())
        ));
    }
    write_atomic(&dir.join("duplicates.csv"), dups.as_bytes()).map_err(TrainError::Report)?;
    if gallery == 0 || report.issues.is_empty() {
        return Ok(());
    }
    let tiles: Vec<Tile> = report
        .issues
        .iter()
        .take(gallery)
        .map(|(path, issue)| {
            let p = &probs[issue.index * classes..(issue.index + 1) * classes];
            Tile {
                path,
                true_class: name(issue.given),
                predicted: name(issue.suggested),
                p_predicted: format_percent(p[issue.suggested]),
                p_true: Some(format_percent(p[issue.given])),
                loss: format!("score {:.3}", issue.score),
                correct: false,
            }
        })
        .collect();
    draw_gallery(
        &dir.join("label-issues.png"),
        &format!(
            "Probable label errors: {} of {} photos",
            report.issues.len(),
            report.photos
        ),
        &format!(
            "out-of-fold predictions; the {} most certain, labelled <given>, predicted <suggested>",
            tiles.len()
        ),
        &tiles,
    )
    .map_err(|e| TrainError::Report(std::io::Error::other(e.to_string())))?;
    Ok(())
}
