//! A trained model ready to classify photos: load a run folder or exported bundle once, then
//! classify paths or encoded bytes from any number of threads.
//!
//! ```no_run
//! use catdog_infer::{Backend, Classifier, Input};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Backend::Flex.open(None)?.device;
//! let classifier = Classifier::load("runs/cats".as_ref(), &device)?;
//! let prediction = classifier.classify_one(Input::path("photo.jpg"))?;
//! println!("{} {:.1}%", prediction.class, 100.0 * prediction.confidence());
//! # Ok(()) }
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use burn::tensor::Device;
use catdog_data::{decode_image, decode_image_bytes, ImageSet};
use catdog_model::{argmax, softmax_row_at};
use rayon::prelude::*;
use serde::Serialize;

use crate::{infer_logits, load_model, InferError, LoadedModel, ModelIoError, ModelSpec, Tta};

/// Images per forward pass.
const BATCH: usize = 64;

/// One photo to classify: a file, or the bytes of an encoded image (JPEG, PNG, WebP, BMP, GIF,
/// TIFF).
#[derive(Debug, Clone)]
pub enum Input {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl Input {
    pub fn path(path: impl Into<PathBuf>) -> Self {
        Input::Path(path.into())
    }
}

/// How to read the logits.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyOptions {
    /// Flip test-time augmentation: the mean of the logits of each photo and its mirror image.
    pub tta: Tta,
    /// Probabilities at the temperature fitted after training (else plain `softmax(logits)`).
    pub calibrated: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            tta: Tta::default(),
            calibrated: true,
        }
    }
}

/// The model's answer for one photo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The raw scores, one per class in the order of [`Classifier::classes`].
    pub logits: Vec<f32>,
    /// `softmax(logits / temperature)`.
    pub probabilities: Vec<f32>,
    pub temperature: f32,
    /// The class with the highest logit, and its index.
    pub class: String,
    pub index: usize,
}

impl Prediction {
    /// The probability of the predicted class.
    pub fn confidence(&self) -> f32 {
        self.probabilities[self.index]
    }
}

/// Why one photo could not be classified (the others in the same call still are).
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("{0}")]
    Decode(#[from] catdog_data::DecodeError),
    /// The forward pass failed (for every photo of the call).
    #[error("inference failed: {0}")]
    Infer(String),
}

/// A loaded model with its classes, preprocessing and temperature. `Send + Sync`: one instance
/// serves many threads.
pub struct Classifier {
    loaded: LoadedModel,
    device: Device,
}

impl Classifier {
    /// Loads a run folder or exported bundle (`config.json` with `model.bpk` or
    /// `model.safetensors`) onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelIoError> {
        Ok(Classifier {
            loaded: load_model(dir, device)?,
            device: device.clone(),
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.loaded.spec
    }

    pub fn classes(&self) -> &[String] {
        &self.loaded.spec.classes
    }

    /// What the user should know about how the folder was read (e.g. a weights file that was
    /// not used).
    pub fn warnings(&self) -> &[String] {
        &self.loaded.warnings
    }

    /// Classifies every input, in order; an input that cannot be decoded gets its error and
    /// does not stop the others.
    pub fn classify(
        &self,
        inputs: &[Input],
        opts: ClassifyOptions,
    ) -> Vec<Result<Prediction, ClassifyError>> {
        let spec = &self.loaded.spec;
        let size = spec.image_size;
        let mut set = ImageSet {
            image_size: size,
            classes: spec.classes.clone(),
            ..Default::default()
        };
        let mut results: Vec<Option<Result<Prediction, ClassifyError>>> = Vec::new();
        let mut decoded = Vec::new();
        // Decoded side by side (decoding a photo takes about as long as its forward pass).
        let all: Vec<_> = inputs
            .par_iter()
            .map(|input| match input {
                Input::Path(path) => decode_image(path, size as u32),
                Input::Bytes(bytes) => decode_image_bytes(bytes, size as u32),
            })
            .collect();
        for (i, (input, pixels)) in inputs.iter().zip(all).enumerate() {
            match pixels {
                Ok(pixels) => {
                    set.pixels.extend_from_slice(&pixels);
                    set.labels.push(0);
                    set.paths.push(match input {
                        Input::Path(path) => path.clone(),
                        Input::Bytes(_) => PathBuf::new(),
                    });
                    decoded.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e.into()))),
            }
        }
        if !decoded.is_empty() {
            match self.logits(set, opts.tta) {
                Ok(logits) => {
                    let k = spec.classes.len();
                    for (row, &i) in logits.chunks_exact(k).zip(&decoded) {
                        results[i] = Some(Ok(self.read(row, opts.calibrated)));
                    }
                }
                Err(e) => {
                    for &i in &decoded {
                        results[i] = Some(Err(ClassifyError::Infer(e.to_string())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every input has a result"))
            .collect()
    }

    /// [`Self::classify`] of one input with the default options (calibrated, flip TTA).
    pub fn classify_one(&self, input: Input) -> Result<Prediction, ClassifyError> {
        self.classify(&[input], ClassifyOptions::default())
            .pop()
            .expect("one result per input")
    }

    /// The logits of a decoded set, `[n, classes]` row-major.
    fn logits(&self, set: ImageSet, tta: Tta) -> Result<Vec<f32>, InferError> {
        let spec = &self.loaded.spec;
        infer_logits(
            &self.loaded.model,
            Arc::new(set),
            &spec.normalization,
            &self.device,
            BATCH.min(spec.model.max_batch_size()),
            tta,
        )
    }

    /// One row of logits read as a prediction: the only place inference turns logits into
    /// probabilities.
    fn read(&self, logits: &[f32], calibrated: bool) -> Prediction {
        let spec = &self.loaded.spec;
        let temperature = spec.probability_temperature(calibrated);
        let probabilities = softmax_row_at(logits, temperature);
        let index = argmax(&probabilities);
        Prediction {
            logits: logits.to_vec(),
            probabilities,
            temperature,
            class: spec.classes[index].clone(),
            index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classifier_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Classifier>();
    }
}
