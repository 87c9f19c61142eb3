//! What a model folder's `config.json` must say to rebuild the model and preprocess an image
//! exactly as in training. A run's or bundle's config holds more (training settings, a model
//! card); inference reads only this part.

use catdog_data::printable;
use catdog_data::Normalization;
use catdog_model::{ConfigError, ModelConfig};
use serde::{Deserialize, Serialize};

/// The inference part of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub catdog_version: String,
    pub model: ModelConfig,
    /// Class names, in the order of the model's outputs.
    pub classes: Vec<String>,
    /// Images are resized to `image_size x image_size` (equal to the model's own).
    pub image_size: usize,
    pub normalization: Normalization,
    /// Probabilities are read as `softmax(logits / temperature)`. Training fits it on the
    /// validation split (temperature scaling); 1 reads the raw logits' softmax. The model's
    /// outputs stay raw logits either way.
    #[serde(default = "unit_temperature")]
    pub temperature: f32,
    /// The CRC-32 of the weights file beside this config (`model.bpk` or `model.safetensors`):
    /// weights that do not match (a damaged file, or a folder half replaced by an interrupted
    /// export) are refused instead of being run with another model's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_crc32: Option<u32>,
}

fn unit_temperature() -> f32 {
    1.0
}

/// Why a `config.json` cannot rebuild its model or preprocess an image.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
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
    #[error("temperature is {0}: it must be a positive, finite number (1 for no calibration)")]
    Temperature(f32),
    #[error("normalization.{field}[{channel}] = {value}: {fix}")]
    Normalization {
        field: &'static str,
        channel: usize,
        value: f32,
        fix: &'static str,
    },
}

impl ModelSpec {
    /// A spec for a freshly built model: this version of catdog, the model's own image size.
    pub fn new(model: ModelConfig, classes: Vec<String>, normalization: Normalization) -> Self {
        Self {
            catdog_version: env!("CARGO_PKG_VERSION").into(),
            image_size: model.image_size(),
            model,
            classes,
            normalization,
            temperature: 1.0,
            weights_crc32: None,
        }
    }

    /// The temperature to read probabilities at: the fitted one, or 1 (the raw softmax) when
    /// `calibrated` is false (`--no-calibration`).
    pub fn probability_temperature(&self, calibrated: bool) -> f32 {
        if calibrated {
            self.temperature
        } else {
            1.0
        }
    }

    /// Refuses a spec that cannot rebuild its model or preprocess an image exactly: the model
    /// section (through the same validator as training: image-size range, memory bounds), a
    /// top-level image size that disagrees with it, class names that do not match the outputs
    /// one to one, a temperature that is not positive, and a normalisation that would turn pixels into NaN or infinity.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.model.validate()?;
        if self.image_size != self.model.image_size() {
            return Err(SpecError::ImageSizeMismatch {
                image_size: self.image_size,
                model: self.model.image_size(),
            });
        }
        if self.classes.len() != self.model.num_classes() {
            return Err(SpecError::ClassCount {
                names: self.classes.len(),
                outputs: self.model.num_classes(),
            });
        }
        for (index, name) in self.classes.iter().enumerate() {
            if name.is_empty() {
                return Err(SpecError::EmptyClass { index });
            }
            if self.classes[..index].contains(name) {
                return Err(SpecError::DuplicateClass {
                    index,
                    name: name.clone(),
                });
            }
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(SpecError::Temperature(self.temperature));
        }
        let norm = &self.normalization;
        let bad = |field, channel, value, fix| {
            Err(SpecError::Normalization {
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
