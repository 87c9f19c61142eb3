//! Bundles other tools can load: weights as burnpack or safetensors (PyTorch names and layouts)
//! beside `config.json`, which doubles as the model card; and the way back, `import`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use catdog_data::write_atomic;
use catdog_model::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::{
    metrics::{ClassMetrics, Evaluation},
    model_io::{
        load_model, load_safetensors, read_config, read_config_file, save_safetensors,
        save_weights, write_json, ModelIoError, CONFIG_FILE, SAFETENSORS_FILE, WEIGHTS_FILE,
    },
    run_dir::{FolderKind, OwnedDir},
    RunConfig, Summary,
};

/// How exported weights are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsFormat {
    /// burn's own format (`model.bpk`), module paths as in catdog.
    #[default]
    Burnpack,
    /// `model.safetensors` with PyTorch's tensor names and layouts.
    Safetensors,
}

impl WeightsFormat {
    pub fn file_name(self) -> &'static str {
        match self {
            WeightsFormat::Burnpack => WEIGHTS_FILE,
            WeightsFormat::Safetensors => SAFETENSORS_FILE,
        }
    }
}

impl std::str::FromStr for WeightsFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "burnpack" | "bpk" => Ok(WeightsFormat::Burnpack),
            "safetensors" => Ok(WeightsFormat::Safetensors),
            other => Err(format!(
                "unknown weights format '{other}' (use burnpack or safetensors)"
            )),
        }
    }
}

/// What an exported `config.json` says beyond the model config: the file, its tensors, the
/// preprocessing a client must repeat, and how well the model did on data it never trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub weights_file: String,
    pub format: WeightsFormat,
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
    /// Expected calibration error of the softmax confidence.
    pub ece: f64,
    pub per_class: Vec<ClassMetrics>,
}

impl HeldOutMetrics {
    fn new(e: &Evaluation, data: Option<PathBuf>) -> Self {
        Self {
            data,
            images: e.images,
            accuracy: e.accuracy,
            loss: e.loss,
            ece: e.calibration.ece,
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
    }
}

fn preprocessing(config: &RunConfig) -> String {
    let n = &config.normalization;
    format!(
        "decode to RGB8; cut out the centre square (the shorter side); resize it to {s}x{s} \
         (triangle filter; images already {s}x{s} are used as they are); scale to [0, 1]; \
         per channel (R, G, B) subtract mean {:?} and divide by std {:?}; \
         lay out as [batch, 3, {s}, {s}] (NCHW) float32",
        n.mean,
        n.std,
        s = config.image_size
    )
}

/// Writes `out/config.json` (the model card) and the weights of `model_dir` in `format`.
///
/// `device` holds the model while it is re-saved as safetensors; burnpack weights are copied
/// byte for byte.
///
/// `out` must be new, empty, or a bundle catdog exported before (replaced only with `force`,
/// and then only catdog's own files).
pub fn export(
    model_dir: &Path,
    out: &Path,
    format: WeightsFormat,
    force: bool,
    device: &Device,
) -> Result<ModelCard, ModelIoError> {
    let mut config = read_config(model_dir)?;
    let out = OwnedDir::claim(out, FolderKind::Bundle, force)?;
    // A weights file of the other format would outlive this export and be read instead of it.
    for format in [WeightsFormat::Burnpack, WeightsFormat::Safetensors] {
        out.remove_own_file(format.file_name())?;
    }
    let out = out.path();
    // A bundle being re-exported keeps the metrics its card carried.
    let previous = config.export.take();
    let burnpack = model_dir.join(WEIGHTS_FILE);
    let target = out.join(format.file_name());
    let tensors = match format {
        WeightsFormat::Burnpack if burnpack.is_file() => {
            let bytes = std::fs::read(&burnpack).map_err(|e| ModelIoError::BadWeights {
                path: burnpack.clone(),
                reason: e.to_string(),
            })?;
            write_atomic(&target, &bytes).map_err(|e| ModelIoError::Write {
                path: target.clone(),
                reason: e.to_string(),
            })?;
            Vec::new()
        }
        // Any model folder: a run (burnpack) or a safetensors bundle.
        _ => {
            let model = load_model(model_dir, device)?.model;
            match format {
                WeightsFormat::Burnpack => {
                    save_weights(&model, &target)?;
                    Vec::new()
                }
                WeightsFormat::Safetensors => {
                    save_safetensors(&model, &target)?;
                    safetensors_tensors(&target)?
                }
            }
        }
    };
    let summary: Option<Summary> = std::fs::read_to_string(model_dir.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let test_dir = config.train.as_ref().and_then(|t| t.test.clone());
    let card = ModelCard {
        weights_file: format.file_name().to_string(),
        format,
        tensors,
        architecture: architecture(&config.model),
        preprocessing: preprocessing(&config),
        output: format!(
            "raw logits [batch, {}], one per class in the order of `classes`; \
             softmax gives probabilities",
            config.classes.len()
        ),
        held_out_test: summary
            .as_ref()
            .and_then(|s| s.test.as_ref())
            .map(|e| HeldOutMetrics::new(e, test_dir))
            .or_else(|| previous.as_ref().and_then(|c| c.held_out_test.clone())),
        validation: summary
            .as_ref()
            .map(|s| HeldOutMetrics::new(&s.validation, None))
            .or_else(|| previous.and_then(|c| c.validation)),
    };
    config.export = Some(card.clone());
    write_json(&out.join(CONFIG_FILE), &config)?;
    Ok(card)
}

/// Names, dtypes and shapes of the tensors of a safetensors file, sorted by name.
pub fn safetensors_tensors(path: &Path) -> Result<Vec<TensorInfo>, ModelIoError> {
    let bad = |reason: String| ModelIoError::BadWeights {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors: Vec<TensorInfo> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| TensorInfo {
            name,
            dtype: format!("{:?}", info.dtype),
            shape: info.shape.clone(),
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tensors)
}

/// Turns a safetensors file in PyTorch convention (with its `config.json`) back into a catdog
/// model folder at `out`: `config.json` and `model.bpk`. Returns the folder's config.
///
/// `config`: the config to build the model from; `None` reads `config.json` beside `weights`.
pub fn import(
    weights: &Path,
    config: Option<&Path>,
    out: &Path,
    force: bool,
    device: &Device,
) -> Result<RunConfig, ModelIoError> {
    let config_path = match config {
        Some(p) => p.to_path_buf(),
        None => weights.parent().unwrap_or(Path::new(".")).join(CONFIG_FILE),
    };
    if !weights.is_file() {
        return Err(ModelIoError::BadWeights {
            path: weights.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let mut run_config = read_config_file(&config_path)?;
    let model = load_safetensors(&run_config, weights, device)?;
    let out = OwnedDir::claim(out, FolderKind::Model, force)?;
    let out = out.path();
    save_weights(&model, &out.join(WEIGHTS_FILE))?;
    // The card described the exported file; the imported folder holds burnpack weights.
    run_config.export = None;
    write_json(&out.join(CONFIG_FILE), &run_config)?;
    Ok(run_config)
}
