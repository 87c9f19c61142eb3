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
    optim::GradientsParams,
    tensor::{Int, Tensor},
};
use catdog_data::{
    discover, epoch_plan, load, stratified_split, DataError, ImageBatcher, LoadOptions, Loaded,
    Normalization, Prefetcher, Skipped, SplitMix64,
};
use catdog_model::{printable, Classifier};
use serde::{Deserialize, Serialize};

use crate::{
    evaluate::{evaluate, evaluate_plain_and_flip_tta},
    metrics::{metrics_csv, timing_csv, EpochMetrics, Evaluation},
    model_io::{self, save_weights, write_json, ModelIoError},
    plots::{evaluation_plots, learning_curves},
    progress::Progress,
    run_dir::{FolderError, Resumed, RunDir, TrainState},
    BackendError, InvalidSetting, Loss, ProgressMode, RunConfig, TrainConfig,
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
    #[error(
        "validation loss became {loss} after epoch {epoch} (learning rate {lr:.3e}); training \
         stopped and the last good checkpoint was kept: try a lower --lr"
    )]
    NonFiniteValidation { epoch: usize, loss: f64, lr: f64 },
    #[error("cannot resume from {path}: {reason}")]
    Resume { path: PathBuf, reason: String },
    #[error(transparent)]
    Folder(#[from] FolderError),
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

/// What to run and where.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TrainConfig,
    /// The run folder.
    pub out: PathBuf,
    /// Continue from `out`'s last checkpoint (its `config.json` wins over `config`, except
    /// `epochs`, which may be raised, and `test`, which replaces the stored one when given).
    pub resume: bool,
    /// Start over in a folder that holds one of catdog's runs (only its own files are replaced).
    pub force: bool,
    pub progress: ProgressMode,
}

/// Trains a model end to end and writes the run folder. See the crate docs for its layout.
pub fn train(req: TrainRequest) -> Result<Summary, TrainError> {
    let started = Instant::now();
    let mut progress = Progress::new(req.progress);
    let (run, config, resumed) = open_run(&req)?;
    if run.swept > 0 {
        progress.say(&format!(
            "removed {} partial file(s) left by an interrupted run",
            run.swept
        ));
    }
    let out = run.path().to_path_buf();

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

    // Every input is checked before the first step: the data, the split and the held-out folder.
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
    if train_idx.is_empty() || valid_idx.is_empty() {
        return Err(TrainError::Data(DataError::Invalid(format!(
            "{} usable images in {} are too few to train on {} and hold out {} for validation \
             (--validation-fraction {}): add images",
            loaded.set.len(),
            config.data.display(),
            train_idx.len(),
            valid_idx.len(),
            config.validation_fraction
        ))));
    }
    let train_set = Arc::new(loaded.set.subset(&train_idx));
    let valid_set = Arc::new(loaded.set.subset(&valid_idx));
    let mut skipped = loaded.skipped;
    drop(loaded.set);
    let test_set = match &config.test {
        Some(dir) => {
            let loaded = load_folder(dir, config.image_size, config.pixel_cache(), &progress)?;
            if loaded.set.classes != classes {
                return Err(TrainError::Data(DataError::Invalid(format!(
                    "test folder {} has classes [{}] but the training data has [{}]",
                    dir.display(),
                    loaded.set.classes.join(", "),
                    classes.join(", ")
                ))));
            }
            skipped.extend(loaded.skipped);
            Some((dir.clone(), Arc::new(loaded.set)))
        }
        None => None,
    };
    let norm = match &resumed {
        Some(r) => r.config.normalization,
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
    if let Some(previous) = &resumed {
        if previous.config.model != model_config || previous.config.classes != classes {
            return Err(TrainError::Resume {
                path: out.clone(),
                reason: "the data's classes no longer match the run's model".into(),
            });
        }
    }
    run_config.validate().map_err(|e| InvalidSetting {
        field: "model",
        value: e.to_string(),
        fix: "change the architecture settings",
    })?;
    write_json(&run.config_file(), &run_config)?;

    ad.seed(config.seed);
    let mut model = Classifier::new(&model_config, &ad).map_err(|e| InvalidSetting {
        field: "model",
        value: e.to_string(),
        fix: "change the architecture settings",
    })?;
    let mut optim = config.optim.build();
    let mut state = TrainState::new();
    if let Some(resumed) = &resumed {
        match run.load_checkpoint(resumed, &ad, optim)? {
            Some((m, o)) => {
                (model, optim) = (m, o);
                state = resumed.state.clone().unwrap_or_default();
                progress.say(&format!(
                    "resumed {} after epoch {}",
                    out.display(),
                    state.epoch
                ));
            }
            None => {
                optim = config.optim.build();
                progress.say(&format!(
                    "{}: no checkpoint yet, starting over",
                    out.display()
                ));
            }
        }
    }
    let parameters = model.num_params();
    progress.say(&format!(
        "model: {} with {} parameters, {}x{} input, classes: {}",
        model_config.name(),
        parameters,
        config.image_size,
        config.image_size,
        printable(&classes.join(", "))
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
        // Weights that give a non-finite validation loss have diverged: they are never kept.
        if !val.loss.is_finite() {
            return Err(TrainError::NonFiniteValidation {
                epoch,
                loss: val.loss,
                lr,
            });
        }
        state.epoch = epoch;
        state.history.push(metrics);
        if state.best_val_loss.is_none_or(|best| val.loss < best) {
            state.best_val_loss = Some(val.loss);
            state.best_epoch = epoch;
            state.epochs_since_best = 0;
            save_weights(&model, &run.best_file())?;
        } else {
            state.epochs_since_best += 1;
        }
        run.write_text(&run.metrics_file(), &metrics_csv(&state.history))?;
        run.write_text(&run.timing_file(), &timing_csv(&state.history))?;
        run.save_checkpoint(&model, &optim, &state)?;
        // The curves are a view of metrics.csv: a failure to draw them is reported, not fatal.
        if let Err(e) = learning_curves(&state.history, &train_note, &run.curves_file()) {
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
    let best = model_io::load_weights(&run_config, &run.best_file(), &device)?.valid();
    save_weights(&best, &run.weights_file())?;
    let validation = evaluate(&best, valid_set, &norm, &device, 128, false)?;
    progress.say(&format!(
        "best epoch {}: validation accuracy {:.2}% ({} images), loss {:.4}",
        state.best_epoch,
        100.0 * validation.accuracy,
        validation.images,
        validation.loss
    ));
    let (test, test_flip_tta) = match test_set {
        Some((dir, set)) => {
            let (e, tta) = evaluate_plain_and_flip_tta(&best, set, &norm, &device, 128)?;
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
    write_json(&run.summary_file(), &summary)?;
    Ok(summary)
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
        .map(|(c, n)| format!("{n} {}", printable(c)))
        .collect();
    progress.say(&format!(
        "data: {} ({}): {} images, {}",
        printable(&found.root.to_string_lossy()),
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
        eprintln!(
            "  {}: {}",
            printable(&s.path.to_string_lossy()),
            printable(&s.reason)
        );
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

/// Opens the run folder (new, or resumed) and settles the run's settings: on resume the stored
/// ones, with a raised epoch count or a new held-out folder from the request.
fn open_run(req: &TrainRequest) -> Result<(RunDir, TrainConfig, Option<Resumed>), TrainError> {
    if !req.resume {
        req.config.validate()?;
        check_out_outside_data(&req.out, &req.config)?;
        return Ok((
            RunDir::create(&req.out, req.force)?,
            req.config.clone(),
            None,
        ));
    }
    let (run, resumed) = RunDir::resume(&req.out)?;
    let mut config = resumed
        .config
        .train
        .clone()
        .ok_or_else(|| TrainError::Resume {
            path: req.out.clone(),
            reason: "config.json has no training settings".into(),
        })?;
    config.epochs = config.epochs.max(req.config.epochs);
    if req.config.test.is_some() {
        config.test = req.config.test.clone();
    }
    config.validate()?;
    check_out_outside_data(&req.out, &config)?;
    Ok((run, config, Some(resumed)))
}

/// A run folder inside the data folder would become part of the data (its plots a new class).
fn check_out_outside_data(out: &Path, config: &TrainConfig) -> Result<(), TrainError> {
    let out_abs = absolute(out);
    for (flag, data) in [
        ("--data", Some(&config.data)),
        ("--test", config.test.as_ref()),
    ] {
        let Some(data) = data else { continue };
        let data_abs = absolute(data);
        if out_abs.starts_with(&data_abs) {
            return Err(TrainError::Setting(InvalidSetting {
                field: "out",
                value: out.display().to_string(),
                fix: if flag == "--data" {
                    "the run folder must not be inside the --data folder: choose another --out"
                } else {
                    "the run folder must not be inside the --test folder: choose another --out"
                },
            }));
        }
    }
    Ok(())
}

/// `path` made absolute and resolved through symlinks as far as it exists.
fn absolute(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    loop {
        if let Ok(real) = p.canonicalize() {
            return missing
                .into_iter()
                .rev()
                .fold(real, |acc, part| acc.join(part));
        }
        match (p.file_name().map(|n| n.to_os_string()), p.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                p = parent.to_path_buf();
            }
            _ => return p,
        }
    }
}
