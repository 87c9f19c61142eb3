//! The model card: what an exported bundle's `config.json` says beyond the model spec.

use std::path::PathBuf;

use catdog_infer::ModelSpec;
use catdog_model::ModelConfig;
use serde::{Deserialize, Serialize};

use super::format::{ExportFormat, ExportOptions};
use crate::report::{
    metrics::{ClassMetrics, Evaluation},
    summary::Summary,
};

/// What an exported `config.json` says beyond the model config: the file, its tensors, the
/// preprocessing a client must repeat, and how well the model did on data it never trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub weights_file: String,
    pub format: ExportFormat,
    /// Name, dtype and shape of every tensor (safetensors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TensorInfo>,
    /// The forward pass, layer by layer, as a client must rebuild it.
    pub architecture: String,
    pub preprocessing: String,
    pub output: String,
    /// The run's held-out test set, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_test: Option<HeldOutMetrics>,
    /// The validation split (used to pick the best epoch, so slightly optimistic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<HeldOutMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    pub images: usize,
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Expected calibration error of the confidence: of `softmax(logits / temperature)` with
    /// the model's fitted temperature.
    pub ece: f64,
    /// Expected calibration error of the raw `softmax(logits)`, when the model is calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ece_uncalibrated: Option<f64>,
    pub per_class: Vec<ClassMetrics>,
}

impl ModelCard {
    /// The card of a bundle of `config`'s model in `format`: its metrics from the run's
    /// `summary`, else from the `previous` card of a bundle being re-exported.
    pub(crate) fn new(
        spec: &ModelSpec,
        test_dir: Option<PathBuf>,
        opts: &ExportOptions,
        tensors: Vec<TensorInfo>,
        summary: Option<&Summary>,
        previous: Option<ModelCard>,
    ) -> Self {
        ModelCard {
            weights_file: opts.format.file_name().to_string(),
            format: opts.format,
            tensors,
            architecture: architecture(&spec.model),
            preprocessing: preprocessing(spec),
            output: format!(
                "raw logits [batch, {}], one per class in the order of `classes`; \
                 softmax(logits / temperature) gives probabilities, with `temperature` {} \
                 {}{}",
                spec.classes.len(),
                spec.temperature,
                if spec.temperature == 1.0 {
                    "(not calibrated)"
                } else {
                    "(fitted on the validation split: temperature scaling)"
                },
                if opts.probabilities {
                    "; the ONNX graph's second output `probabilities` is that softmax"
                } else {
                    ""
                }
            ),
            held_out_test: summary
                .and_then(|s| s.test.as_ref())
                .map(|e| HeldOutMetrics::new(e, test_dir))
                .or_else(|| previous.as_ref().and_then(|c| c.held_out_test.clone())),
            validation: summary
                .map(|s| HeldOutMetrics::new(&s.validation, None))
                .or_else(|| previous.and_then(|c| c.validation)),
        }
    }
}

impl HeldOutMetrics {
    fn new(e: &Evaluation, data: Option<PathBuf>) -> Self {
        Self {
            data,
            images: e.images,
            accuracy: e.accuracy,
            loss: e.loss,
            ece: e.calibration.ece,
            ece_uncalibrated: e.uncalibrated.as_ref().map(|c| c.ece),
            per_class: e.per_class.clone(),
        }
    }
}

fn architecture(model: &ModelConfig) -> String {
    match model {
        ModelConfig::Mlp(c) => format!(
            "flatten [batch, 3, {s}, {s}] to [batch, {f}] (channel-major, as torch.flatten); \
             hidden.i: Linear -> ReLU for widths {:?}; output: Linear -> logits",
            c.hidden,
            s = c.image_size,
            f = c.input_features()
        ),
        ModelConfig::Cnn(c) => format!(
            "blocks.i for channels {:?}: {} x [convs.j: Conv2d 3x3, stride 1, padding 1, no \
             bias -> norms.j: BatchNorm2d (eps 1e-5, running statistics) -> ReLU] -> MaxPool2d \
             2x2 stride 2; global average pool to [batch, channels]; {}output: Linear -> logits \
             (dropout {} is identity at inference)",
            c.channels,
            c.convs_per_block.max(1),
            match c.hidden {
                Some(h) => format!("hidden: Linear({h}) -> ReLU; "),
                None => String::new(),
            },
            c.dropout
        ),
        ModelConfig::ResNet(c) => format!(
            "stem: [conv: Conv2d 3x3 (3 -> {}), stride 1, padding 1, no bias -> norm: BatchNorm2d \
             (eps 1e-5, running statistics) -> ReLU]; stages.i for channels {:?}: down: \
             [convs.0: the same Conv2d 3x3 -> norms.0: BatchNorm2d -> ReLU -> MaxPool2d 2x2 \
             stride 2], then residual.j ({:?} per stage): x + second(first(x)) where first and \
             second are each [conv: Conv2d 3x3 -> norm: BatchNorm2d -> ReLU]; global average \
             pool to [batch, channels]; output: Linear -> logits (dropout {} is identity at \
             inference)",
            c.stem, c.channels, c.residual, c.dropout
        ),
    }
}

fn preprocessing(spec: &ModelSpec) -> String {
    let n = &spec.normalization;
    format!(
        "decode to RGB8; cut out the centre square (the shorter side); resize it to {s}x{s} \
         (triangle filter; images already {s}x{s} are used as they are); scale to [0, 1]; \
         per channel (R, G, B) subtract mean {:?} and divide by std {:?}; \
         lay out as [batch, 3, {s}, {s}] (NCHW) float32",
        n.mean,
        n.std,
        s = spec.image_size
    )
}
