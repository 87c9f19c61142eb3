//! Inference for catdog models, without the trainer: open a device, load a model folder or
//! exported bundle (`config.json` + `model.bpk` or `model.safetensors`), compute logits.
//!
//! ```no_run
//! use std::{path::Path, sync::Arc};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = catdog_infer::Backend::Flex.open(None)?.device;
//! let loaded = catdog_infer::load_model(Path::new("runs/cats"), &device)?;
//! # let set = Arc::new(catdog_data::ImageSet::default());
//! let logits = catdog_infer::infer_logits(
//!     &loaded.model, set, &loaded.spec.normalization, &device, 64, catdog_infer::Tta::Off)?;
//! # Ok(()) }
//! ```

mod backend;
mod logits;
pub mod model_io;
mod spec;

pub use backend::{Backend, BackendError, OpenDevice};
pub use logits::{infer_logits, infer_logits_plain_and_flip, InferError, Tta};
pub use model_io::{load_model, read_spec, LoadedModel, ModelIoError};
pub use spec::{ModelSpec, SpecError};
