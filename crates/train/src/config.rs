use std::path::PathBuf;

use catdog_data::{Augment, Normalization};
use catdog_model::{printable, CnnConfig, ConfigError, ModelConfig, IMAGE_SIZE};
use serde::{Deserialize, Serialize};

use crate::{Backend, OptimConfig};

/// Everything `catdog train` does, with defaults that train a good cats-vs-dogs CNN on a CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Labelled images (Kaggle or ImageFolder layout).
    pub data: PathBuf,
    /// Optional held-out folder, evaluated once at the end with the best model.
    pub test: Option<PathBuf>,
    /// Architecture; `num_classes` is taken from the data and `image_size` from below.
    pub model: ModelConfig,
    /// Images are resized to `image_size x image_size`.
    pub image_size: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub optim: OptimConfig,
    /// 0 for plain cross-entropy.
    pub label_smoothing: f32,
    /// Stop after this many epochs without a better validation loss.
    pub patience: Option<usize>,
    /// Share of each class held out for validation.
    pub validation_fraction: f64,
    /// Seeds initialisation, the split, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Training-only augmentation; `None` turns it off.
    pub augment: Option<Augment>,
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
            model: ModelConfig::Cnn(CnnConfig::default()),
            image_size: 48,
            epochs: 16,
            batch_size: 64,
            optim: OptimConfig::default(),
            label_smoothing: 0.1,
            patience: None,
            validation_fraction: 0.1,
            seed: 42,
            augment: Some(Augment::default()),
            backend: Backend::Flex,
            device_index: None,
            cache_dir: None,
            no_cache: false,
        }
    }
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
        if self.batch_size == 0 {
            return bad(
                "batch-size",
                "0".into(),
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

    /// The model configuration for a data set with `num_classes` classes.
    pub fn model_for(&self, num_classes: usize) -> ModelConfig {
        let mut model = self.model.clone();
        match &mut model {
            ModelConfig::Mlp(c) => {
                c.num_classes = num_classes;
                c.image_size = self.image_size;
            }
            ModelConfig::Cnn(c) => {
                c.num_classes = num_classes;
                c.image_size = self.image_size;
            }
        }
        model
    }
}

/// Why a run's or export's `config.json` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunConfigError {
    #[error("model: {0}")]
    Model(#[from] ConfigError),
    #[error("image_size is {image_size} but model.image_size is {model}; they must be equal")]
    ImageSizeMismatch { image_size: usize, model: usize },
    #[error("{names} class names but the model has {outputs} outputs")]
    ClassCount { names: usize, outputs: usize },
    #[error("classes[{index}] is an empty name")]
    EmptyClass { index: usize },
    #[error("classes[{index}] repeats \"{}\": class names must be unique", printable(.name))]
    DuplicateClass { index: usize, name: String },
    #[error("normalization.{field}[{channel}] = {value}: {fix}")]
    Normalization {
        field: &'static str,
        channel: usize,
        value: f32,
        fix: &'static str,
    },
}

/// `config.json` of a run or export: all that is needed to rebuild the model and preprocess an
/// image exactly as in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub catdog_version: String,
    pub model: ModelConfig,
    pub classes: Vec<String>,
    pub image_size: usize,
    pub normalization: Normalization,
    /// The training settings (absent in hand-made configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainConfig>,
    /// The model card of an exported bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<crate::export::ModelCard>,
}

impl RunConfig {
    /// Refuses a config that cannot rebuild its model or preprocess an image exactly: the model
    /// section (through the same validator as training: image-size range, memory bounds), a
    /// top-level image size that disagrees with it, class names that do not match the outputs
    /// one to one, and a normalisation that would turn pixels into NaN or infinity.
    ///
    /// The `train` section is checked when it is used (on resume), so a model trained with
    /// settings this version no longer accepts still loads for inference.
    pub fn validate(&self) -> Result<(), RunConfigError> {
        self.model.validate()?;
        if self.image_size != self.model.image_size() {
            return Err(RunConfigError::ImageSizeMismatch {
                image_size: self.image_size,
                model: self.model.image_size(),
            });
        }
        if self.classes.len() != self.model.num_classes() {
            return Err(RunConfigError::ClassCount {
                names: self.classes.len(),
                outputs: self.model.num_classes(),
            });
        }
        for (index, name) in self.classes.iter().enumerate() {
            if name.is_empty() {
                return Err(RunConfigError::EmptyClass { index });
            }
            if self.classes[..index].contains(name) {
                return Err(RunConfigError::DuplicateClass {
                    index,
                    name: name.clone(),
                });
            }
        }
        let norm = &self.normalization;
        let bad = |field, channel, value, fix| {
            Err(RunConfigError::Normalization {
                field,
                channel,
                value,
                fix,
            })
        };
        for c in 0..3 {
            if !norm.mean[c].is_finite() {
                return bad("mean", c, norm.mean[c], "must be a finite number");
            }
            if !(norm.std[c].is_finite() && norm.std[c] > 0.0) {
                return bad("std", c, norm.std[c], "must be a positive, finite number");
            }
        }
        // A positive but tiny std (or a huge mean) can still overflow: check what the model
        // would actually be fed.
        for (c, table) in norm.lookup_table().iter().enumerate() {
            if !table.iter().all(|v| v.is_finite()) {
                return bad(
                    "std",
                    c,
                    norm.std[c],
                    "too small for this mean: normalised pixels overflow to infinity",
                );
            }
        }
        Ok(())
    }
}
