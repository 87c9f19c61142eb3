//! The training loop, top to bottom: data, model, epochs, checkpoints, held-out evaluation.
//!
//! Our own loop rather than burn-train's `Learner`: it gives atomic checkpoints that resume to
//! bit-identical metrics, a NaN guard that never overwrites good weights, pre-flight checks
//! before any work, and plain per-epoch logs, without compiling burn-train.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use burn::{
    module::Module,
    optim::{GradientsParams, ModuleOptimizer},
    tensor::{Device, Int, Tensor},
};
use catdog_data::{
    discover, epoch_plan, is_partial_write, load, stratified_split, write_atomic,
    write_atomic_with, DataError, ImageBatcher, LoadOptions, Loaded, Normalization, Prefetcher,
    Skipped, SplitMix64,
};
use catdog_model::Classifier;
use serde::{Deserialize, Serialize};

use crate::{
    evaluate::{evaluate, evaluate_plain_and_flip_tta},
    lock::RunLock,
    metrics::{metrics_csv, timing_csv, EpochMetrics, Evaluation},
    model_io::{
        self, read_config, save_weights, write_json, ModelIoError, CONFIG_FILE, WEIGHTS_FILE,
    },
    plots::{evaluation_plots, learning_curves, CURVES_FILE},
    progress::Progress,
    BackendError, InvalidSetting, Loss, ProgressMode, RunConfig, TrainConfig,
};

pub const BEST_FILE: &str = "best.bpk";
const CHECKPOINTS: &str = "checkpoints";
const LATEST: &str = "latest.json";

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
    #[error("output folder {path} is not writable: {reason}")]
    NotWritable { path: PathBuf, reason: String },
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
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
}

/// `summary.json`: what a finished run achieved.
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

/// Progress of a run, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    /// Epochs completed.
    epoch: usize,
    best_epoch: usize,
    best_val_loss: f64,
    epochs_since_best: usize,
    history: Vec<EpochMetrics>,
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TrainConfig,
    /// The run folder.
    pub out: PathBuf,
    /// Continue from `out`'s last checkpoint (its `config.json` wins over `config`, except
    /// `epochs`, which may be raised).
    pub resume: bool,
    pub progress: ProgressMode,
}

/// Trains a model end to end and writes the run folder. See the crate docs for its layout.
pub fn train(req: TrainRequest) -> Result<Summary, TrainError> {
    let started = Instant::now();
    let mut config = req.config.clone();
    let out = req.out.clone();
    let mut progress = Progress::new(req.progress);
    let resumed = if req.resume {
        Some(resume_point(&out)?)
    } else {
        None
    };
    if let Some((run, _)) = &resumed {
        let epochs = config.epochs;
        config = run.train.clone().ok_or_else(|| TrainError::Resume {
            path: out.clone(),
            reason: "config.json has no training settings".into(),
        })?;
        config.epochs = config.epochs.max(epochs);
    }
    config.validate()?;
    check_writable(&out)?;
    let _lock = RunLock::acquire(&out)?;
    // Holding the lock, no other process writes here: temporary files are a killed run's leftovers.
    let removed = remove_partial_writes(&out);
    if removed > 0 {
        progress.say(&format!(
            "removed {removed} partial file(s) left by an interrupted run"
        ));
    }

    let opened = config.backend.open(config.device_index)?;
    progress.say(&format!("device: {}", opened.name));
    if opened.software {
        eprintln!(
            "warning: {} is a software GPU adapter; --backend flex will be much faster",
            opened.name
        );
    }
    let device = opened.device;
    let ad = device.clone().autodiff();

    // Data: decode once (cached), split by seed, normalise with training statistics only.
    let loaded = load_folder(
        &config.data,
        config.image_size,
        config.pixel_cache(),
        &progress,
    )?;
    let classes = loaded.set.classes.clone();
    let (train_idx, valid_idx) =
        stratified_split(&loaded.set.labels, config.validation_fraction, config.seed);
    let train_set = Arc::new(loaded.set.subset(&train_idx));
    let valid_set = Arc::new(loaded.set.subset(&valid_idx));
    let mut skipped = loaded.skipped;
    drop(loaded.set);
    let norm = match &resumed {
        Some((run, _)) => run.normalization,
        None => Normalization::from_images(&train_set),
    };
    progress.say(&format!(
        "split (seed {}): {} training, {} validation images",
        config.seed,
        train_set.len(),
        valid_set.len()
    ));

    let model_config = config.model_for(classes.len());
    let run_config = RunConfig {
        catdog_version: env!("CARGO_PKG_VERSION").into(),
        model: model_config.clone(),
        classes: classes.clone(),
        image_size: config.image_size,
        normalization: norm,
        train: Some(config.clone()),
        export: None,
    };
    if let Some((previous, _)) = &resumed {
        if previous.model != model_config || previous.classes != classes {
            return Err(TrainError::Resume {
                path: out.clone(),
                reason: "the data's classes no longer match the run's model".into(),
            });
        }
    }
    write_json(&out.join(CONFIG_FILE), &run_config)?;

    ad.seed(config.seed);
    let mut model = Classifier::new(&model_config, &ad).map_err(|e| InvalidSetting {
        field: "model",
        value: e.to_string(),
        fix: "change the architecture settings",
    })?;
    let mut optim = config.optim.build();
    let mut state = TrainState {
        epoch: 0,
        best_epoch: 0,
        best_val_loss: f64::INFINITY,
        epochs_since_best: 0,
        history: Vec::new(),
    };
    match &resumed {
        Some((_, Some(checkpoint))) => {
            (model, optim, state) = load_checkpoint(&out, checkpoint, &run_config, &ad, optim)?;
            progress.say(&format!(
                "resumed {} after epoch {}",
                out.display(),
                state.epoch
            ));
        }
        Some((_, None)) => progress.say(&format!(
            "{}: no checkpoint yet, starting over",
            out.display()
        )),
        None => {}
    }
    let parameters = model.num_params();
    progress.say(&format!(
        "model: {} with {} parameters, {}x{} input, classes: {}",
        model_config.name(),
        parameters,
        config.image_size,
        config.image_size,
        classes.join(", ")
    ));

    let loss_fn = Loss::new(config.label_smoothing, &ad);
    let train_note = match (config.label_smoothing > 0.0, config.augment.is_some()) {
        (true, true) => format!("label smoothing {}, augmented", config.label_smoothing),
        (true, false) => format!("label smoothing {}", config.label_smoothing),
        (false, true) => "augmented".to_string(),
        (false, false) => "running mean over the epoch".to_string(),
    };
    let batcher = Arc::new(ImageBatcher::new(train_set.clone(), &norm, config.augment));
    let steps_per_epoch = epoch_plan(train_set.len(), config.batch_size, None, true).len();
    let total_steps = steps_per_epoch * config.epochs;
    let mut throughput = Vec::new();

    while state.epoch < config.epochs {
        if config
            .patience
            .is_some_and(|p| state.epochs_since_best >= p)
        {
            break;
        }
        let epoch = state.epoch + 1;
        let epoch_start = Instant::now();
        // Re-seeding per epoch makes dropout draws independent of where a run was resumed.
        ad.seed(SplitMix64::derive(config.seed, epoch as u64).next_u64());
        let plan = epoch_plan(
            train_set.len(),
            config.batch_size,
            Some((config.seed, epoch as u64)),
            true,
        );
        progress.start_epoch(epoch, config.epochs, plan.len());
        let mut wait = Duration::ZERO;
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = config.optim.lr;
        let mut batches = Prefetcher::new(batcher.clone(), plan, 4).map_err(TrainError::Thread)?;
        let mut step_in_epoch = 0;
        loop {
            let t = Instant::now();
            let Some(host) = batches.next() else { break };
            wait += t.elapsed();
            let n = host.len();
            let batch = host.to_device(&ad);
            lr = config.optim.lr_at(
                (epoch - 1) * steps_per_epoch + step_in_epoch,
                total_steps,
                steps_per_epoch,
            );
            let logits = model.forward(batch.images);
            let loss = loss_fn.forward(logits.clone(), batch.targets.clone());
            let loss_value: f32 = loss
                .clone()
                .into_data()
                .iter::<f32>()
                .next()
                .unwrap_or(f32::NAN);
            if !loss_value.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch,
                    batch: step_in_epoch + 1,
                    loss: loss_value,
                    lr,
                });
            }
            correct += count_correct(logits, batch.targets);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            loss_sum += loss_value as f64 * n as f64;
            seen += n;
            step_in_epoch += 1;
            let secs = epoch_start.elapsed().as_secs_f64();
            progress.batch(
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                seen as f64 / secs,
            );
        }
        drop(batches);
        let train_secs = epoch_start.elapsed().as_secs_f64();
        let images_per_sec = seen as f64 / train_secs;
        throughput.push(images_per_sec);

        let val = evaluate(
            &model.valid(),
            valid_set.clone(),
            &norm,
            &device,
            config.batch_size.max(64),
            false,
        )?;
        let metrics = EpochMetrics {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_acc: val.accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_sec,
            data_wait: wait.as_secs_f64() / train_secs,
        };
        progress.end_epoch(&metrics, config.epochs);
        state.epoch = epoch;
        state.history.push(metrics);
        if val.loss < state.best_val_loss {
            state.best_val_loss = val.loss;
            state.best_epoch = epoch;
            state.epochs_since_best = 0;
            save_weights(&model, &out.join(BEST_FILE))?;
        } else {
            state.epochs_since_best += 1;
        }
        for (name, text) in [
            ("metrics.csv", metrics_csv(&state.history)),
            ("timing.csv", timing_csv(&state.history)),
        ] {
            write_atomic(&out.join(name), text.as_bytes())
                .map_err(|e| write_error(&out.join(name), e))?;
        }
        save_checkpoint(&out, &model, &optim, &state)?;
        // The curves are a view of metrics.csv: a failure to draw them is reported, not fatal.
        if let Err(e) = learning_curves(&state.history, &train_note, &out.join(CURVES_FILE)) {
            progress.say(&format!("warning: {e}"));
        }
    }
    let stopped_early = state.epoch < config.epochs;
    if stopped_early {
        progress.say(&format!(
            "early stop: no better validation loss for {} epochs",
            state.epochs_since_best
        ));
    }

    // The best epoch's weights become the run's model.
    let best = model_io::load_weights(&run_config, &out.join(BEST_FILE), &device)?.valid();
    save_weights(&best, &out.join(WEIGHTS_FILE))?;
    let validation = evaluate(&best, valid_set, &norm, &device, 128, false)?;
    progress.say(&format!(
        "best epoch {}: validation accuracy {:.2}% ({} images), loss {:.4}",
        state.best_epoch,
        100.0 * validation.accuracy,
        validation.images,
        validation.loss
    ));
    let (test, test_flip_tta) = match &config.test {
        Some(dir) => {
            let loaded = load_folder(dir, config.image_size, config.pixel_cache(), &progress)?;
            if loaded.set.classes != classes {
                return Err(TrainError::Data(DataError::Invalid(format!(
                    "test folder {} has classes [{}] but training had [{}]",
                    dir.display(),
                    loaded.set.classes.join(", "),
                    classes.join(", ")
                ))));
            }
            skipped.extend(loaded.skipped);
            let (e, tta) =
                evaluate_plain_and_flip_tta(&best, Arc::new(loaded.set), &norm, &device, 128)?;
            progress.say(&format!(
                "held-out test {}: accuracy {:.2}% ({} images), loss {:.4}; with flip TTA {:.2}%",
                dir.display(),
                100.0 * e.accuracy,
                e.images,
                e.loss,
                100.0 * tta.accuracy
            ));
            (Some(e), Some(tta))
        }
        None => (None, None),
    };
    let (shown, set_name) = match &test {
        Some(e) => (e, "held-out test set"),
        None => (&validation, "validation split"),
    };
    let title = format!("{set_name}, best epoch {}", state.best_epoch);
    if let Err(e) = evaluation_plots(shown, &title, &out) {
        progress.say(&format!("warning: {e}"));
    }
    let summary = Summary {
        run_dir: out.clone(),
        device: opened.name,
        parameters,
        epochs_run: state.epoch,
        best_epoch: state.best_epoch,
        stopped_early,
        wall_seconds: started.elapsed().as_secs_f64(),
        train_images_per_sec: throughput.iter().sum::<f64>() / throughput.len().max(1) as f64,
        train_images: train_set.len(),
        validation,
        test,
        test_flip_tta,
        skipped_count: skipped.len(),
        skipped,
    };
    write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Deletes the temporary files of interrupted atomic writes in the run folder and its checkpoint
/// folders; returns how many. Never touches a committed file.
fn remove_partial_writes(out: &Path) -> usize {
    let mut dirs = vec![out.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(out.join(CHECKPOINTS)) {
        dirs.push(out.join(CHECKPOINTS));
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut removed = 0;
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let partial = is_partial_write(&entry.file_name().to_string_lossy());
            if partial && entry.path().is_file() && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

fn write_error(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::ModelIo(ModelIoError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Decodes (or reads from the cache) a labelled folder and reports skipped files.
///
/// `cache_dir`: where decoded pixels are cached; `None` decodes every image.
pub fn load_folder(
    dir: &Path,
    image_size: usize,
    cache_dir: Option<PathBuf>,
    progress: &Progress,
) -> Result<Loaded, TrainError> {
    let found = discover(dir)?;
    let counts = found.class_counts();
    let per_class: Vec<String> = found
        .classes
        .iter()
        .zip(&counts)
        .map(|(c, n)| format!("{n} {c}"))
        .collect();
    progress.say(&format!(
        "data: {} ({}): {} images, {}",
        found.root.display(),
        found.layout,
        found.samples.len(),
        per_class.join(", ")
    ));
    let opts = LoadOptions {
        image_size,
        cache_dir,
        threads: None,
        progress: progress.mode() == ProgressMode::Bars,
    };
    let loaded = load(&found, &opts)?;
    if let catdog_data::CacheStatus::Rebuilt(why) = &loaded.cache {
        eprintln!("warning: image cache was not usable and was rebuilt ({why})");
    }
    report_skipped(&loaded.skipped);
    Ok(loaded)
}

/// Prints how many files were skipped and the first few, with reasons.
pub fn report_skipped(skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    eprintln!("skipped {} unusable image(s):", skipped.len());
    for s in skipped.iter().take(5) {
        eprintln!("  {}: {}", s.path.display(), s.reason);
    }
    if skipped.len() > 5 {
        eprintln!(
            "  ... and {} more (all listed in summary.json)",
            skipped.len() - 5
        );
    }
}

fn count_correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    let predicted: Tensor<1, Int> = logits.argmax(1).flatten(0, 1);
    predicted
        .equal(targets)
        .int()
        .sum()
        .into_data()
        .iter::<i64>()
        .next()
        .unwrap_or(0) as usize
}

fn check_writable(out: &Path) -> Result<(), TrainError> {
    let err = |e: std::io::Error| TrainError::NotWritable {
        path: out.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(out.join(CHECKPOINTS)).map_err(err)?;
    let probe = out.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Latest {
    dir: String,
    state: TrainState,
}

fn save_checkpoint(
    out: &Path,
    model: &Classifier,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<(), TrainError> {
    let root = out.join(CHECKPOINTS);
    let name = format!("epoch-{:04}", state.epoch);
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
    save_weights(model, &dir.join("model.bpk"))?;
    let optim_path = dir.join("optim.bpk");
    write_atomic_with(&optim_path, |tmp| {
        optim
            .save(tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| write_error(&optim_path, e))?;
    // `latest.json` is the commit point: until it names the new folder, the old one is used.
    write_json(
        &root.join(LATEST),
        &Latest {
            dir: name.clone(),
            state: state.clone(),
        },
    )?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("epoch-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

/// The run's config and its last committed checkpoint (`None` when the run was stopped before
/// its first one: it starts over).
fn resume_point(out: &Path) -> Result<(RunConfig, Option<Latest>), TrainError> {
    let fail = |reason: String| TrainError::Resume {
        path: out.to_path_buf(),
        reason,
    };
    let run = read_config(out).map_err(|e| fail(e.to_string()))?;
    let latest = out.join(CHECKPOINTS).join(LATEST);
    let Ok(text) = std::fs::read_to_string(&latest) else {
        return Ok((run, None));
    };
    let latest: Latest =
        serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", latest.display())))?;
    Ok((run, Some(latest)))
}

fn load_checkpoint(
    out: &Path,
    latest: &Latest,
    run: &RunConfig,
    ad: &Device,
    optim: ModuleOptimizer,
) -> Result<(Classifier, ModuleOptimizer, TrainState), TrainError> {
    let dir = out.join(CHECKPOINTS).join(&latest.dir);
    let model = model_io::load_weights(run, &dir.join("model.bpk"), ad)?;
    let optim = optim
        .load(dir.join("optim.bpk"))
        .map_err(|e| TrainError::Resume {
            path: out.to_path_buf(),
            reason: format!("optimiser state: {e}"),
        })?;
    Ok((model, optim, latest.state.clone()))
}
