//! Bundles other tools can load (weights beside `config.json`, which doubles as the model
//! card) and the way back, `import`.

mod bundle;
mod card;
mod format;

pub use bundle::*;
pub use card::{HeldOutMetrics, ModelCard, TensorInfo};
pub use format::{ExportFormat, ExportOptions};
