//! What an export writes: the weights' format and the export's options.

use catdog_infer::model_io::{SAFETENSORS_FILE, WEIGHTS_FILE};
use catdog_onnx::ONNX_FILE;
use serde::{Deserialize, Serialize};

/// What an export writes beside `config.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ExportFormat {
    /// burn's own format (`model.bpk`), module paths as in catdog.
    #[default]
    #[cfg_attr(feature = "clap", value(alias = "bpk"))]
    Burnpack,
    /// `model.safetensors` with PyTorch's tensor names and layouts.
    Safetensors,
    /// `model.onnx`: normalisation, network and (optionally) softmax as one ONNX graph.
    Onnx,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::Burnpack,
        ExportFormat::Safetensors,
        ExportFormat::Onnx,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            ExportFormat::Burnpack => WEIGHTS_FILE,
            ExportFormat::Safetensors => SAFETENSORS_FILE,
            ExportFormat::Onnx => ONNX_FILE,
        }
    }
}

/// How to export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// ONNX only: a second output `probabilities`, the softmax of the logits.
    pub probabilities: bool,
    /// Replace a bundle catdog exported there before (only catdog's own files).
    pub force: bool,
}
