use std::path::{Path, PathBuf};

use catdog_data::{Augment, Mix};
use catdog_infer::{
    model_io::{read_json, ModelIoError, CONFIG_FILE},
    read_spec, Backend, ModelSpec,
};
use catdog_model::{kernels::precision::Precision, Architecture, ModelConfig, DEFAULT_IMAGE_SIZE};
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
    /// Photos of `data` to leave out: a file with one path per line, or a CSV whose first
    /// column is `path` (such as `catdog audit`'s `audit.csv`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<PathBuf>,
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
    /// The arithmetic of the training steps' convolution and linear gemms: `f32`, or `bf16`
    /// (inputs rounded to bfloat16, sums, weights, gradients and optimiser state in `f32`;
    /// CPUs with AVX512-BF16, flex backend). Validation and evaluation always run in `f32`.
    #[serde(skip_serializing_if = "is_f32")]
    pub precision: Precision,
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
            exclude: None,
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
            precision: Precision::F32,
            backend: Backend::Flex,
            device_index: None,
            cache_dir: None,
            no_cache: false,
        }
    }
}

/// Whether `precision` is the default (left out of a run's `config.json`).
fn is_f32(precision: &Precision) -> bool {
    *precision == Precision::F32
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
