use std::path::{Path, PathBuf};

use catdog_data::{Augment, Mix};
use catdog_infer::{
    model_io::{read_json, ModelIoError, CONFIG_FILE},
    read_spec, Backend, ModelSpec,
};
use catdog_model::{Architecture, ModelConfig, DEFAULT_IMAGE_SIZE, IMAGE_SIZE};
use serde::{Deserialize, Serialize};

use crate::{
    budget::Budget,
    export::ModelCard,
    optim::lookahead::LookaheadConfig,
    progressive::{self, Progressive},
    OptimConfig,
};

/// How long `catdog train` runs when neither an epoch count nor a budget is given.
pub const DEFAULT_BUDGET: Budget = Budget::minutes(15);

/// Everything `catdog train` does, with defaults that train a good cats-vs-dogs CNN on a CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Labelled images (Kaggle or ImageFolder layout).
    pub data: PathBuf,
    /// Optional held-out folder, evaluated once at the end with the best model.
    pub test: Option<PathBuf>,
    /// Architecture; the class count comes from the data and the input size from `image_size`.
    pub model: Architecture,
    /// Images are resized to `image_size x image_size`.
    pub image_size: usize,
    /// Train the first epochs on smaller images (see [`Progressive`]); CNN and ResNet only.
    pub progressive: Option<Progressive>,
    /// The epoch count when there is no `budget`; with one, the count it chose last.
    pub epochs: usize,
    /// A wall-clock budget for the whole run (the default: 15 minutes): the trainer measures a
    /// few steps, then sets `epochs` so that training and the final evaluation end within it
    /// (the chosen count is stored in the run's `config.json`, so `--resume` keeps it).
    pub budget: Option<Budget>,
    /// Every epoch count a budget chose for this run, in order (written by the run, not by
    /// hand): a run started from a `config.json` that holds them follows them instead of timing
    /// the machine again, and so repeats the recorded run exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replans: Vec<Replan>,
    pub batch_size: usize,
    pub optim: OptimConfig,
    /// 0 for plain cross-entropy.
    pub label_smoothing: f32,
    /// Keep an exponential moving average of the weights with this decay per step and
    /// validate, keep and export it instead of the last weights (`None`, or 0 in a config
    /// file: the last weights).
    pub ema: Option<f64>,
    /// Lookahead on top of the optimiser (see [`LookaheadConfig`]; `None`: off).
    pub lookahead: Option<LookaheadConfig>,
    /// Stop after this many epochs without a better validation loss.
    pub patience: Option<usize>,
    /// Share of each class held out for validation.
    pub validation_fraction: f64,
    /// Seeds initialisation, the split, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Training-only augmentation; `None` turns it off.
    pub augment: Option<Augment>,
    /// Mixup or CutMix of training batches (see [`Mix`]; `None`: off).
    pub mix: Option<Mix>,
    /// Start the first convolution from the training patches' whitening filters (see
    /// [`crate::optim::whiten`]); CNN and ResNet only.
    pub whiten: bool,
    pub backend: Backend,
    /// wgpu adapter index when there are several.
    pub device_index: Option<usize>,
    /// Where decoded pixels are cached (default: the user's cache folder).
    pub cache_dir: Option<PathBuf>,
    pub no_cache: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("data/dogs-vs-cats/train"),
            test: None,
            model: Architecture::default(),
            image_size: DEFAULT_IMAGE_SIZE,
            progressive: None,
            epochs: 16,
            budget: Some(DEFAULT_BUDGET),
            replans: Vec::new(),
            batch_size: 64,
            optim: OptimConfig::default(),
            label_smoothing: 0.1,
            ema: None,
            lookahead: None,
            patience: None,
            validation_fraction: 0.1,
            seed: 42,
            augment: Some(Augment::default()),
            mix: None,
            whiten: false,
            backend: Backend::Flex,
            device_index: None,
            cache_dir: None,
            no_cache: false,
        }
    }
}

/// An epoch count chosen by a budget, in force from global step `from_step` (0-based) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replan {
    pub from_step: usize,
    pub epochs: usize,
}

/// The pixel cache folder for a `--cache-dir` / `--no-cache` pair: the given folder, else the
/// user's cache folder; `None` when caching is off.
pub fn pixel_cache(cache_dir: Option<PathBuf>, no_cache: bool) -> Option<PathBuf> {
    if no_cache {
        None
    } else {
        cache_dir.or_else(catdog_data::default_cache_dir)
    }
}

/// A setting that cannot work, named with its value and the fix.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid {field} = {value}: {fix}")]
pub struct InvalidSetting {
    pub field: &'static str,
    pub value: String,
    pub fix: &'static str,
}

impl TrainConfig {
    /// Refuses impossible values before any work is done.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |field, value: String, fix| Err(InvalidSetting { field, value, fix });
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "use at least 1 epoch");
        }
        if let Some(budget) = self.budget {
            if budget.duration().as_secs() < 10 {
                return bad(
                    "budget",
                    budget.to_string(),
                    "use at least 10 seconds (e.g. 15m)",
                );
            }
        }
        // A batch of one makes BatchNorm's variance 0 (and training's last partial batch is
        // dropped only when it is not the only one).
        if self.batch_size < 2 {
            return bad(
                "batch-size",
                self.batch_size.to_string(),
                "use a batch size of at least 2 (e.g. 64)",
            );
        }
        if !(self.optim.lr.is_finite() && self.optim.lr > 0.0) {
            return bad(
                "lr",
                self.optim.lr.to_string(),
                "the learning rate must be positive (e.g. 0.002)",
            );
        }
        if !(self.optim.weight_decay.is_finite() && self.optim.weight_decay >= 0.0) {
            return bad(
                "weight-decay",
                self.optim.weight_decay.to_string(),
                "use a value >= 0",
            );
        }
        if !(0.0..1.0).contains(&self.optim.momentum) {
            return bad(
                "momentum",
                self.optim.momentum.to_string(),
                "use a value in [0, 1)",
            );
        }
        if !(self.optim.warmup_epochs.is_finite() && self.optim.warmup_epochs >= 0.0) {
            return bad(
                "warmup-epochs",
                self.optim.warmup_epochs.to_string(),
                "use a value >= 0",
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label-smoothing",
                self.label_smoothing.to_string(),
                "use a value in [0, 1)",
            );
        }
        if let Some(decay) = self.ema {
            if !(0.0..1.0).contains(&decay) {
                return bad(
                    "ema",
                    decay.to_string(),
                    "use a decay in [0, 1), e.g. 0.999 (0 keeps the last weights)",
                );
            }
        }
        if let Some(look) = self.lookahead {
            if look.steps < 2 {
                return bad(
                    "lookahead.steps",
                    look.steps.to_string(),
                    "use at least 2 steps between synchronisations (e.g. 5)",
                );
            }
            if !(look.alpha > 0.0 && look.alpha <= 1.0) {
                return bad(
                    "lookahead.alpha",
                    look.alpha.to_string(),
                    "use a share in (0, 1], e.g. 0.5",
                );
            }
        }
        if let Some(mix) = self.mix {
            if !(mix.alpha.is_finite() && mix.alpha > 0.0) {
                return bad(
                    "mix.alpha",
                    mix.alpha.to_string(),
                    "use a positive Beta parameter, e.g. 1.0",
                );
            }
            if !(mix.probability > 0.0 && mix.probability <= 1.0) {
                return bad(
                    "mix.probability",
                    mix.probability.to_string(),
                    "use a share of batches in (0, 1], e.g. 0.5",
                );
            }
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 0.9) {
            return bad(
                "validation-fraction",
                self.validation_fraction.to_string(),
                "use a share between 0 and 0.9 (e.g. 0.1)",
            );
        }
        // The one image-size rule (`catdog_model::IMAGE_SIZE`); the text is tied to it below.
        const _: () = assert!(*IMAGE_SIZE.start() == 8 && *IMAGE_SIZE.end() == 1024);
        if !IMAGE_SIZE.contains(&self.image_size) {
            return bad(
                "image-size",
                self.image_size.to_string(),
                "use a size between 8 and 1024 pixels",
            );
        }
        if let Some(p) = &self.progressive {
            if matches!(self.model, Architecture::Mlp(_)) {
                return bad(
                    "progressive",
                    p.start_size.to_string(),
                    "an MLP takes one input size: leave progressive resizing out",
                );
            }
            if !(*IMAGE_SIZE.start()..self.image_size).contains(&p.start_size) {
                return bad(
                    "progressive start size",
                    p.start_size.to_string(),
                    "use a size of at least 8 pixels and below image-size",
                );
            }
            if !(0.0 <= p.ramp_start && p.ramp_start <= p.ramp_end && p.ramp_end <= 1.0) {
                return bad(
                    "progressive ramp",
                    format!("{}..{}", p.ramp_start, p.ramp_end),
                    "use shares of the run with 0 <= ramp_start <= ramp_end <= 1",
                );
            }
        }
        if self.whiten && matches!(self.model, Architecture::Mlp(_)) {
            return bad(
                "whiten",
                "true".into(),
                "an MLP has no convolution to whiten: leave it out",
            );
        }
        if self.patience == Some(0) {
            return bad("patience", "0".into(), "use at least 1, or leave it out");
        }
        if let Some(index) = self.device_index {
            if self.backend != Backend::Wgpu {
                return bad(
                    "device",
                    format!("{index} with --backend {}", self.backend),
                    "--device picks a GPU adapter: use it with --backend wgpu, or leave it out",
                );
            }
        }
        // The model with the final image size: the same validator that checks a loaded model
        // folder, memory bounds included.
        let model = self.model_for(2);
        model
            .validate()
            .or_else(|e| bad("model", e.to_string(), "change the architecture settings"))?;
        let max_batch = model.max_batch_size();
        if self.batch_size > max_batch {
            return bad(
                "batch-size",
                format!(
                    "{} (at most {max_batch} fits for this {} on {s}x{s} images)",
                    self.batch_size,
                    model.name(),
                    s = self.image_size
                ),
                "a batch's activations would need more than 4 GiB; use a smaller batch or image size",
            );
        }
        Ok(())
    }

    /// The pixel cache folder to use, `None` with `no_cache`.
    pub fn pixel_cache(&self) -> Option<PathBuf> {
        pixel_cache(self.cache_dir.clone(), self.no_cache)
    }

    /// The epoch count in force at 0-based global `step`: the last re-plan made by then, and
    /// `epochs` (which `--resume` may raise) from the last re-plan on.
    pub fn epochs_at(&self, step: usize) -> usize {
        match self.replans.iter().rposition(|r| r.from_step <= step) {
            Some(i) if i + 1 < self.replans.len() => self.replans[i].epochs,
            _ => self.epochs,
        }
    }

    /// The learning rate of 0-based global `step`, over the run's planned length.
    pub fn lr_at(&self, step: usize, steps_per_epoch: usize) -> f64 {
        let mut plan: Vec<(usize, usize)> = self
            .replans
            .iter()
            .map(|r| (r.from_step, r.epochs * steps_per_epoch))
            .collect();
        match plan.last_mut() {
            Some(last) => last.1 = self.epochs * steps_per_epoch,
            None => plan.push((0, self.epochs * steps_per_epoch)),
        }
        self.optim.lr_planned(step, &plan, steps_per_epoch)
    }

    /// The side of the training images of 1-based `epoch`: `image_size`, or smaller early in a
    /// run with progressive resizing (as planned when the epoch starts).
    pub fn train_size(&self, epoch: usize, steps_per_epoch: usize) -> usize {
        progressive::train_size(
            self.progressive.as_ref(),
            epoch,
            self.epochs_at((epoch - 1) * steps_per_epoch),
            self.image_size,
        )
    }

    /// Records a budget's new count from global step `from_step` on.
    pub fn replan(&mut self, from_step: usize, epochs: usize) {
        self.replans.push(Replan { from_step, epochs });
        self.epochs = epochs;
    }

    /// The weight average's decay, if the run keeps one (a decay of 0 is the last weights).
    pub fn ema_decay(&self) -> Option<f64> {
        self.ema.filter(|&decay| decay > 0.0)
    }

    /// The model configuration for a data set with `num_classes` classes.
    pub fn model_for(&self, num_classes: usize) -> ModelConfig {
        self.model.with_shape(self.image_size, num_classes)
    }
}

/// `config.json` of a run or exported bundle: the model spec (all that inference needs, at the
/// top level), the training settings and, in a bundle, the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// The training settings (absent in hand-made configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainConfig>,
    /// The model card of an exported bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ModelCard>,
}

impl RunConfig {
    /// Reads and checks `dir/config.json`: the spec as strictly as inference does; the `train`
    /// section is checked when it is used (on resume), so a model trained with settings this
    /// version no longer accepts still loads and exports.
    pub fn read(dir: &Path) -> Result<RunConfig, ModelIoError> {
        let spec = read_spec(dir)?;
        let config: RunConfig = read_json(&dir.join(CONFIG_FILE))?;
        debug_assert_eq!(config.spec, spec);
        Ok(config)
    }
}
