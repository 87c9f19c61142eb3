//! Bundles other tools can load: weights as burnpack or safetensors (PyTorch names and layouts)
//! beside `config.json`, which doubles as the model card; and the way back, `import`.

use std::path::Path;

use burn::tensor::Device;
use catdog_data::write_atomic;
use catdog_infer::model_io::{
    load_model, load_safetensors, read_json, read_spec_file, save_safetensors, save_weights,
    weights_checksum, write_json, Cause, ModelIoError, CONFIG_FILE, WEIGHTS_FILE,
};
use catdog_model::Classifier;
use catdog_onnx::{to_onnx, OnnxError, OnnxInput};

use super::{
    card::{ModelCard, TensorInfo},
    format::{ExportFormat, ExportOptions},
};
use crate::{
    folder::run_dir::{FolderError, FolderKind, OwnedDir, RunDir},
    RunConfig,
};

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    ModelIo(#[from] ModelIoError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("--probabilities adds an output to an ONNX graph: use it with --format onnx")]
    ProbabilitiesNeedOnnx,
}

/// What an export writes: bytes ready to store, or a model to save in a weights format.
enum Payload {
    Bytes(Vec<u8>),
    Model(Box<Classifier>),
}

/// Writes `out/config.json` (the model card) and the model of `model_dir` in `opts.format`.
///
/// Everything that can fail on the model (reading it, converting it) happens before `out` is
/// touched. `device` holds the model while it is converted; burnpack weights are copied byte
/// for byte.
///
/// `out` must be new, empty, or a bundle catdog exported before (replaced only with
/// `opts.force`, and then only catdog's own files).
pub fn export(
    model_dir: &Path,
    out: &Path,
    opts: &ExportOptions,
    device: &Device,
) -> Result<ModelCard, ExportError> {
    if opts.probabilities && opts.format != ExportFormat::Onnx {
        return Err(ExportError::ProbabilitiesNeedOnnx);
    }
    let mut config = RunConfig::read(model_dir)?;
    let burnpack = model_dir.join(WEIGHTS_FILE);
    let payload = match opts.format {
        ExportFormat::Burnpack if burnpack.is_file() => Payload::Bytes(
            std::fs::read(&burnpack).map_err(|e| ModelIoError::BadWeights {
                path: burnpack.clone(),
                source: e.into(),
            })?,
        ),
        // Any model folder: a run (burnpack) or a safetensors bundle.
        ExportFormat::Burnpack | ExportFormat::Safetensors => {
            Payload::Model(Box::new(load_model(model_dir, device)?.model))
        }
        ExportFormat::Onnx => {
            let model = load_model(model_dir, device)?.model;
            let spec = &config.spec;
            Payload::Bytes(to_onnx(&OnnxInput {
                model: &model,
                config: &spec.model,
                classes: &spec.classes,
                mean: spec.normalization.mean,
                std: spec.normalization.std,
                image_size: spec.image_size,
                probabilities: opts.probabilities,
                temperature: spec.temperature,
                producer_version: env!("CARGO_PKG_VERSION"),
            })?)
        }
    };

    let out = OwnedDir::claim(out, FolderKind::Bundle, opts.force)?;
    // A model file of another format would outlive this export and be read instead of it.
    for format in ExportFormat::ALL {
        out.remove_own_file(format.file_name())?;
    }
    let target = out.path().join(opts.format.file_name());
    let tensors = match payload {
        Payload::Bytes(bytes) => {
            write_atomic(&target, &bytes).map_err(|e| ModelIoError::Write {
                path: target.clone(),
                source: e.into(),
            })?;
            Vec::new()
        }
        Payload::Model(model) if opts.format == ExportFormat::Safetensors => {
            save_safetensors(&model, &target)?;
            safetensors_tensors(&target)?
        }
        Payload::Model(model) => {
            save_weights(&model, &target)?;
            Vec::new()
        }
    };
    // The weights are written first, the config that names their checksum last: a bundle
    // whose export was interrupted between the two is refused on load, never run mixed.
    config.spec.weights_crc32 = Some(weights_checksum(&target)?);
    // A bundle being re-exported keeps the metrics its card carried.
    let previous = config.export.take();
    let card = ModelCard::new(
        &config.spec,
        config.train.as_ref().and_then(|t| t.test.clone()),
        opts,
        tensors,
        RunDir::read_summary(model_dir).as_ref(),
        previous,
    );
    config.export = Some(card.clone());
    write_json(&out.path().join(CONFIG_FILE), &config)?;
    Ok(card)
}

/// Names, dtypes and shapes of the tensors of a safetensors file, sorted by name.
pub fn safetensors_tensors(path: &Path) -> Result<Vec<TensorInfo>, ModelIoError> {
    let bad = |source: Cause| ModelIoError::BadWeights {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.into()))?;
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.into()))?;
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
) -> Result<RunConfig, ExportError> {
    let config_path = match config {
        Some(p) => p.to_path_buf(),
        None => weights.parent().unwrap_or(Path::new(".")).join(CONFIG_FILE),
    };
    if !weights.is_file() {
        return Err(ModelIoError::BadWeights {
            path: weights.to_path_buf(),
            source: "no such file".into(),
        }
        .into());
    }
    read_spec_file(&config_path)?;
    let mut run_config: RunConfig = read_json(&config_path)?;
    let model = load_safetensors(&run_config.spec.model, weights, device)?;
    let out = OwnedDir::claim(out, FolderKind::Model, force)?;
    let out = out.path();
    save_weights(&model, &out.join(WEIGHTS_FILE))?;
    run_config.spec.weights_crc32 = Some(weights_checksum(&out.join(WEIGHTS_FILE))?);
    // The card described the exported file; the imported folder holds burnpack weights.
    run_config.export = None;
    write_json(&out.join(CONFIG_FILE), &run_config)?;
    Ok(run_config)
}
