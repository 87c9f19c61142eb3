//! `catdog train` from start to finish: settle the settings, claim the run folder, load the
//! data, train epoch by epoch with a checkpoint after each, then evaluate the best epoch.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use burn::tensor::Device;
use catdog_data::printable;
use catdog_data::Normalization;
use catdog_infer::{ModelSpec, OpenDevice, Tta};

use crate::{
    budget::{
        planning::{plan_budget, replan, Probe},
        BudgetClock,
    },
    checkpoint::TrainState,
    dataset::RunData,
    distributed::Collective,
    error::TrainError,
    folder::{
        paths::refuse_inside,
        run_dir::{Resumed, RunDir},
    },
    report::{
        calibrate::fit_temperature,
        evaluate::{evaluate, evaluate_plain_and_flip_tta, EVAL_BATCH},
        files::Report,
        metrics::{metrics_csv, timing_csv, Evaluation},
        mistakes::GALLERY_TILES,
        plots::learning_curves,
        summary::Summary,
    },
    trainer::Trainer,
    InvalidSetting, Progress, ProgressMode, RunConfig, TrainConfig,
};

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
    /// The ranks of a data-parallel run (see [`crate::distributed`]); `None` for one process.
    /// Each rank calls `train`; only rank 0's `out` should be the user's run folder.
    pub world: Option<Arc<dyn Collective>>,
}

/// Trains a model end to end and writes the run folder (see [`RunDir`] for its layout).
pub fn train(req: TrainRequest) -> Result<Summary, TrainError> {
    let started = Instant::now();
    let mut progress = Progress::new(req.progress);
    let mut run = Prepared::new(&req, &progress)?;
    let ad = run.opened.device.clone().autodiff();
    let model_config = run.record.spec.model.clone();
    let mut trainer = Trainer::new(
        &run.config,
        &model_config,
        run.data.train.clone(),
        &run.norm,
        &ad,
    )?
    .with_world(req.world.clone());
    let mut state = match &run.resumed {
        Some(resumed) => restore(&mut trainer, &run.folder, resumed, &progress)?,
        None => TrainState::new(),
    };
    let probe = Probe {
        trainer: &trainer,
        data: &run.data,
        norm: &run.norm,
        device: &run.opened.device,
    };
    let resumed = run.resumed.is_some();
    // Under a budget rank 0 times the steps and decides; the others follow its epoch count.
    let mut clock = match run.world.as_ref().map_or(0, |w| w.rank()) {
        0 => plan_budget(&mut run.config, probe, started, resumed, &progress)?,
        _ => None,
    };
    run.follow_root_epochs(0);
    // Written once the count is known, so that a resume goes on with it.
    run.follow_plan(&mut trainer)?;
    run.describe(&trainer, &progress);
    let throughput = run.train_epochs(
        &mut trainer,
        &mut state,
        clock.as_mut(),
        started,
        &mut progress,
    )?;

    let (validation, test, test_flip_tta) = evaluate_best(
        &run.folder,
        &mut run.record,
        &run.data,
        &run.opened,
        &state,
        &progress,
    )?;
    let summary = Summary {
        run_dir: run.folder.path().to_path_buf(),
        device: run.opened.name.clone(),
        parameters: trainer.parameters(),
        epochs_run: state.epoch,
        best_epoch: state.best_epoch,
        stopped_early: state.epoch < run.config.epochs,
        wall_seconds: started.elapsed().as_secs_f64(),
        // 0 (not the -0 of an empty float sum) when a resumed run had no epoch left.
        train_images_per_sec: match throughput.len() {
            0 => 0.0,
            n => throughput.iter().sum::<f64>() / n as f64,
        },
        train_images: run.data.train.len(),
        validation,
        test,
        test_flip_tta,
        skipped_count: run.data.skipped.len(),
        skipped: run.data.skipped,
    };
    run.folder.write_summary(&summary)?;
    Ok(summary)
}

/// A run ready to train: its settings, device, data and normalisation checked, its folder
/// claimed and its `config.json` record.
struct Prepared {
    config: TrainConfig,
    opened: OpenDevice,
    data: RunData,
    norm: Normalization,
    record: RunConfig,
    folder: RunDir,
    resumed: Option<Resumed>,
    world: Option<Arc<dyn Collective>>,
}

impl Prepared {
    /// Every input is checked before the folder is claimed, so a refused command writes
    /// nothing: the settings, the device, the data, the split and the held-out folder.
    fn new(req: &TrainRequest, progress: &Progress) -> Result<Self, TrainError> {
        let (config, stored) = settle_settings(req)?;
        let opened = open_device(&config, progress)?;
        let data = RunData::load(&config, progress)?;
        // Normalised with training statistics only (a resumed run keeps its own).
        let norm = match &stored {
            Some(stored) => stored.spec.normalization,
            None => Normalization::from_images(&data.train),
        };
        progress.say(&format!(
            "split (seed {}): {} training, {} validation images",
            config.seed,
            data.train.len(),
            data.valid.len()
        ));
        let record = settle_run_config(&req.out, &config, &data, norm, stored.as_ref())?;
        let (folder, resumed) = open_run(req)?;
        if folder.swept > 0 {
            progress.say(&format!(
                "removed {} partial file(s) left by an interrupted run",
                folder.swept
            ));
        }
        Ok(Prepared {
            config,
            opened,
            data,
            norm,
            record,
            folder,
            resumed,
            world: req.world.clone().filter(|w| w.size() > 1),
        })
    }

    /// With several ranks, takes rank 0's epoch count (recorded as a re-plan at `step` where it
    /// differs): the ranks must run the same steps.
    fn follow_root_epochs(&mut self, step: usize) -> bool {
        let Some(world) = &self.world else {
            return false;
        };
        let mut epochs = [self.config.epochs as f64];
        world.broadcast_f64(&mut epochs);
        let epochs = epochs[0] as usize;
        if epochs == self.config.epochs {
            return false;
        }
        self.config.replan(step, epochs);
        true
    }

    /// Hands the epoch count in force to the trainer and records it in `config.json`.
    fn follow_plan(&mut self, trainer: &mut Trainer) -> Result<(), TrainError> {
        trainer.follow_plan(&self.config);
        self.record.train = Some(self.config.clone());
        Ok(self.folder.write_config(&self.record)?)
    }

    /// Says what trains: the model, its size and input, the classes, the image sizes.
    fn describe(&self, trainer: &Trainer, progress: &Progress) {
        progress.say(&format!(
            "model: {} with {} parameters, {s}x{s} input, classes: {}",
            self.record.spec.model.name(),
            trainer.parameters(),
            printable(&self.data.classes.join(", ")),
            s = self.config.image_size,
        ));
        if self.config.progressive.is_some() {
            progress.say(&format!(
                "progressive resizing: {}",
                size_schedule(&self.config, trainer.steps_per_epoch())
            ));
        }
    }

    /// Trains epoch after epoch until the count in force (re-planned after each epoch under a
    /// budget) or early stopping; returns each epoch's training images/s.
    fn train_epochs(
        &mut self,
        trainer: &mut Trainer,
        state: &mut TrainState,
        mut clock: Option<&mut BudgetClock>,
        started: Instant,
        progress: &mut Progress,
    ) -> Result<Vec<f64>, TrainError> {
        let mut throughput = Vec::new();
        let steps_per_epoch = trainer.steps_per_epoch();
        while state.epoch < self.config.epochs_at(state.epoch * steps_per_epoch)
            && !state.patience_ran_out(self.config.patience)
        {
            let epoch_started = Instant::now();
            let epoch = Epoch {
                run: &self.folder,
                data: &self.data,
                norm: &self.norm,
                device: &self.opened.device,
            };
            throughput.push(epoch.run(trainer, state, &self.config, progress)?);
            let mut replanned = false;
            if let Some(clock) = clock.as_deref_mut() {
                let times = [started.elapsed(), epoch_started.elapsed()];
                let (config, done) = (&mut self.config, state.epoch);
                replanned = replan(clock, config, done, steps_per_epoch, times, progress);
            }
            if self.follow_root_epochs(state.epoch * steps_per_epoch) || replanned {
                self.follow_plan(trainer)?;
            }
        }
        if state.epoch < self.config.epochs {
            progress.say(&format!(
                "early stop: no better validation loss for {} epochs",
                state.epochs_since_best
            ));
        }
        Ok(throughput)
    }
}

/// Continues a resumed run from its last checkpoint.
fn restore(
    trainer: &mut Trainer,
    run: &RunDir,
    resumed: &Resumed,
    progress: &Progress,
) -> Result<TrainState, TrainError> {
    let state = trainer.restore(
        |device, optim| run.load_checkpoint(resumed, device, optim),
        resumed.state.as_ref(),
    )?;
    let path = run.path().display();
    progress.say(&match state.epoch {
        0 => format!("{path}: no checkpoint yet, starting over"),
        e => format!("resumed {path} after epoch {e}"),
    });
    Ok(state)
}

/// What one epoch reads and writes besides the trainer and its progress.
struct Epoch<'a> {
    run: &'a RunDir,
    data: &'a RunData,
    norm: &'a Normalization,
    /// The plain (inference) device.
    device: &'a Device,
}

impl Epoch<'_> {
    /// Trains one epoch, validates, keeps the best weights, writes the history and a
    /// checkpoint, redraws the curves; returns the epoch's training images/s.
    fn run(
        &self,
        trainer: &mut Trainer,
        state: &mut TrainState,
        config: &TrainConfig,
        progress: &mut Progress,
    ) -> Result<f64, TrainError> {
        let stats = trainer.train_epoch(state.epoch + 1, progress)?;
        let val = trainer.validate(self.data.valid.clone(), self.norm, self.device)?;
        let metrics = stats.with_validation(&val);
        progress.end_epoch(&metrics, config.epochs);
        // Weights that give a non-finite validation loss have diverged: they are never kept.
        if !val.loss.is_finite() {
            return Err(TrainError::NonFiniteValidation {
                epoch: stats.epoch,
                loss: val.loss,
                lr: stats.lr,
            });
        }
        if state.record(metrics) {
            self.run.save_best(&trainer.kept_model())?;
        }
        self.run
            .write_history(&metrics_csv(&state.history), &timing_csv(&state.history))?;
        trainer.checkpoint(self.run, state)?;
        // The curves are a view of metrics.csv: a failure to draw them is reported, not fatal.
        let curves = learning_curves(&state.history, &train_note(config), &self.run.curves_file());
        if let Err(e) = curves {
            progress.warn(&e.to_string());
        }
        Ok(stats.images_per_sec())
    }
}

/// The best epoch's weights become the run's model; its temperature is fitted on the
/// validation split and stored in `config.json`; it is evaluated on the validation split and
/// the held-out folder (plain and with flip TTA), and the held-out evaluation (else the
/// validation) is drawn.
fn evaluate_best(
    run: &RunDir,
    run_config: &mut RunConfig,
    data: &RunData,
    opened: &OpenDevice,
    state: &TrainState,
    progress: &Progress,
) -> Result<(Evaluation, Option<Evaluation>, Option<Evaluation>), TrainError> {
    let norm = run_config.spec.normalization;
    let (device, norm) = (&opened.device, &norm);
    let best = run.load_best(&run_config.spec.model, device)?;
    run_config.spec.weights_crc32 = Some(run.save_model(&best)?);
    let raw = evaluate(
        &best,
        data.valid.clone(),
        norm,
        device,
        EVAL_BATCH,
        Tta::Off,
        1.0,
    )?;
    // Temperature scaling: the probabilities the run reports and ships say how often the model
    // is right (label smoothing alone leaves them under-confident).
    let temperature = fit_temperature(&raw.images).unwrap_or(1.0);
    run_config.spec.temperature = temperature;
    run.write_config(run_config)?;
    let validation = raw.at_temperature(&data.valid, temperature)?;
    let v = &validation.evaluation;
    progress.say(&format!(
        "best epoch {}: validation accuracy {:.2}% ({} images), loss {:.4}; temperature {:.3} \
         fitted on it: calibration error {:.2}% -> {:.2}%",
        state.best_epoch,
        100.0 * v.accuracy,
        v.images,
        v.loss,
        temperature,
        100.0 * raw.evaluation.calibration.ece,
        100.0 * v.calibration.ece
    ));
    let (test, test_flip_tta) = match &data.test {
        Some((dir, set)) => {
            let (e, tta) = evaluate_plain_and_flip_tta(
                &best,
                set.clone(),
                norm,
                device,
                EVAL_BATCH,
                temperature,
            )?;
            let calibration = match &e.evaluation.uncalibrated {
                Some(raw) => format!(
                    "calibration error {:.2}% ({:.2}% uncalibrated)",
                    100.0 * e.evaluation.calibration.ece,
                    100.0 * raw.ece
                ),
                None => format!(
                    "calibration error {:.2}%",
                    100.0 * e.evaluation.calibration.ece
                ),
            };
            progress.say(&format!(
                "held-out test {}: accuracy {:.2}% ({} images), loss {:.4}, {calibration}; \
                 with flip TTA {:.2}%, calibration error {:.2}%",
                dir.display(),
                100.0 * e.evaluation.accuracy,
                e.evaluation.images,
                e.evaluation.loss,
                100.0 * tta.evaluation.accuracy,
                100.0 * tta.evaluation.calibration.ece
            ));
            (Some(e), Some(tta))
        }
        None => (None, None),
    };
    // The held-out set's files (else the validation split's): plots, per-image results and the
    // galleries of its worst mistakes; with flip TTA, as `catdog eval` writes them by default.
    let (shown, skipped, set_name) = match &test_flip_tta {
        Some(e) => (e, &data.test_skipped[..], "held-out test set, flip TTA"),
        None => (&validation, &[][..], "validation split"),
    };
    let report = Report {
        evaluation: &shown.evaluation,
        images: &shown.images,
        skipped,
        classes: &run_config.spec.classes,
        title: format!("{set_name}, best epoch {}", state.best_epoch),
        gallery_tiles: GALLERY_TILES,
    };
    let written = report
        .write(&run.report_files())
        .map_err(TrainError::Report)?;
    for warning in &written.warnings {
        progress.warn(warning);
    }
    Ok((
        validation.evaluation,
        test.map(|e| e.evaluation),
        test_flip_tta.map(|e| e.evaluation),
    ))
}

fn open_device(config: &TrainConfig, progress: &Progress) -> Result<OpenDevice, TrainError> {
    let opened = config.backend.open(config.device_index)?;
    progress.say(&format!("device: {}", opened.name));
    if opened.software {
        progress.warn(&format!(
            "{} is a software GPU adapter; --backend flex will be much faster",
            opened.name
        ));
    }
    Ok(opened)
}

/// The run's `config.json`: the model for the data's classes; a resumed run's must be the one
/// it was trained with.
pub(crate) fn settle_run_config(
    out: &Path,
    config: &TrainConfig,
    data: &RunData,
    norm: Normalization,
    stored: Option<&RunConfig>,
) -> Result<RunConfig, TrainError> {
    let mut spec = ModelSpec::new(
        config.model_for(data.classes.len()),
        data.classes.clone(),
        norm,
    );
    if let Some(previous) = stored {
        if previous.spec.model != spec.model || previous.spec.classes != spec.classes {
            return Err(TrainError::Resume {
                path: out.to_path_buf(),
                reason: "the data's classes no longer match the run's model",
            });
        }
        // The run's model.bpk stays the one this temperature was fitted to (and this checksum
        // names) until the resumed run's final evaluation replaces all three.
        spec.temperature = previous.spec.temperature;
        spec.weights_crc32 = previous.spec.weights_crc32;
    }
    spec.validate().map_err(|e| InvalidSetting {
        field: "model",
        value: e.to_string(),
        fix: "change the architecture settings",
    })?;
    Ok(RunConfig {
        spec,
        train: Some(config.clone()),
        export: None,
    })
}

/// The training image sizes by epoch, e.g. `32x32 for epochs 1-12, 40x40 for 13-15, 48x48 for
/// 16-20`.
fn size_schedule(config: &TrainConfig, steps_per_epoch: usize) -> String {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for epoch in 1..=config.epochs {
        let size = config.train_size(epoch, steps_per_epoch);
        match runs.last_mut() {
            Some((s, _, last)) if *s == size => *last = epoch,
            _ => runs.push((size, epoch, epoch)),
        }
    }
    runs.iter()
        .enumerate()
        .map(|(i, (size, first, last))| {
            let epochs = match (i, first == last) {
                (0, true) => format!("epoch {first}"),
                (0, false) => format!("epochs {first}-{last}"),
                (_, true) => format!("{first}"),
                (_, false) => format!("{first}-{last}"),
            };
            format!("{size}x{size} for {epochs}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How the training numbers of the curves were measured: not comparable with validation's
/// when smoothed or augmented.
fn train_note(config: &TrainConfig) -> String {
    let mut parts = Vec::new();
    if config.label_smoothing > 0.0 {
        parts.push(format!("label smoothing {}", config.label_smoothing));
    }
    if config.augment.is_some() {
        parts.push("augmented".to_string());
    }
    if let Some(mix) = config.mix {
        parts.push(format!(
            "{} on {}% of batches",
            mix.kind,
            mix.probability * 100.0
        ));
    }
    if parts.is_empty() {
        "running mean over the epoch".to_string()
    } else {
        parts.join(", ")
    }
}

/// The run's settings, checked without writing anything: the request's for a new run (whose
/// folder must be free, or catdog's with `force`); on resume the stored ones, with a raised
/// epoch count or a new held-out folder from the request, and the stored `config.json`.
fn settle_settings(req: &TrainRequest) -> Result<(TrainConfig, Option<RunConfig>), TrainError> {
    if !req.resume {
        req.config.validate()?;
        check_out_outside_data(&req.out, &req.config)?;
        check_test_apart_from_data(&req.config)?;
        RunDir::may_create(&req.out, req.force)?;
        return Ok((req.config.clone(), None));
    }
    let stored = RunDir::resumable(&req.out)?;
    let mut config = stored.train.clone().ok_or_else(|| TrainError::Resume {
        path: req.out.clone(),
        reason: "config.json has no training settings",
    })?;
    config.epochs = config.epochs.max(req.config.epochs);
    if req.config.test.is_some() {
        config.test = req.config.test.clone();
    }
    config.validate()?;
    check_out_outside_data(&req.out, &config)?;
    check_test_apart_from_data(&config)?;
    Ok((config, Some(stored)))
}

/// Claims the run folder (new, or resumed: then with its last checkpoint).
fn open_run(req: &TrainRequest) -> Result<(RunDir, Option<Resumed>), TrainError> {
    if req.resume {
        let (run, resumed) = RunDir::resume(&req.out)?;
        Ok((run, Some(resumed)))
    } else {
        Ok((RunDir::create(&req.out, req.force)?, None))
    }
}

/// A held-out folder that is, holds or lies inside the training folder would report accuracy on
/// photos the model trained on as held-out accuracy.
fn check_test_apart_from_data(config: &TrainConfig) -> Result<(), TrainError> {
    let Some(test) = &config.test else {
        return Ok(());
    };
    let fix = "the held-out folder must not overlap the --data folder (its accuracy would be \
               measured on training photos): give photos the run never trains on";
    refuse_inside("test", test, &config.data, fix)?;
    refuse_inside("test", &config.data, test, fix).map_err(|e| InvalidSetting {
        value: test.display().to_string(),
        ..e
    })?;
    Ok(())
}

/// A run folder inside the data folder would become part of the data (its plots a new class).
fn check_out_outside_data(out: &Path, config: &TrainConfig) -> Result<(), TrainError> {
    refuse_inside(
        "out",
        out,
        &config.data,
        "the run folder must not be inside the --data folder: choose another --out",
    )?;
    if let Some(test) = &config.test {
        refuse_inside(
            "out",
            out,
            test,
            "the run folder must not be inside the --test folder: choose another --out",
        )?;
    }
    Ok(())
}
