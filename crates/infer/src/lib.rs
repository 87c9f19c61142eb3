//! Inference for catdog models, without the trainer: open a device, load a model folder or
//! exported bundle (`config.json` + `model.bpk` or `model.safetensors`) as a [`Classifier`],
//! classify photos (logits, calibrated probabilities, class).
//!
//! ```no_run
//! use catdog_infer::{Backend, Classifier, ClassifyOptions, Input};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Backend::Flex.open(None)?.device;
//! let classifier = Classifier::load("runs/cats".as_ref(), &device)?;
//! let photos = [Input::path("cat.jpg"), Input::Bytes(std::fs::read("dog.png")?)];
//! for result in classifier.classify(&photos, ClassifyOptions::default()) {
//!     let p = result?;
//!     println!("{} {:.1}% (logits {:?})", p.class, 100.0 * p.confidence(), p.logits);
//! }
//! # Ok(()) }
//! ```

mod backend;
mod classifier;
mod format;
mod logits;
pub mod model_io;
mod spec;

pub use backend::{Backend, BackendError, OpenDevice};
pub use classifier::{Classifier, ClassifyError, ClassifyOptions, Input, Prediction};
pub use format::{format_percent, format_probability};
pub use logits::{infer_logits, infer_logits_plain_and_flip, InferError, Tta};
pub use model_io::{load_model, read_spec, LoadedModel, ModelIoError};
pub use spec::{ModelSpec, SpecError};
