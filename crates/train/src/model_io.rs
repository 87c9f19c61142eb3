//! Reading and writing model folders: `config.json` plus `model.bpk` (burnpack weights).

use std::path::{Path, PathBuf};

use burn::{module::Module, tensor::Device};
use catdog_data::write_atomic;
use catdog_model::Classifier;
use serde::Serialize;

use crate::RunConfig;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.bpk";

#[derive(Debug, thiserror::Error)]
pub enum ModelIoError {
    #[error("model folder {0} does not exist")]
    NotFound(PathBuf),
    #[error("{dir} is not a catdog model folder: {file} is missing")]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("{path} is not a valid catdog config: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("cannot load weights {path}: {reason} (were they written by another architecture or class count?)")]
    BadWeights { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// A model folder loaded for inference.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    pub config: RunConfig,
    pub model: Classifier,
}

pub fn read_config(dir: &Path) -> Result<RunConfig, ModelIoError> {
    if !dir.is_dir() {
        return Err(ModelIoError::NotFound(dir.to_path_buf()));
    }
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|_| ModelIoError::MissingFile {
        dir: dir.to_path_buf(),
        file: CONFIG_FILE,
    })?;
    let mut json = serde_json::Deserializer::from_str(&text);
    let config: RunConfig =
        serde_path_to_error::deserialize(&mut json).map_err(|e| ModelIoError::BadConfig {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    config
        .model
        .validate()
        .map_err(|e| ModelIoError::BadConfig {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if config.classes.len() != config.model.num_classes() {
        return Err(ModelIoError::BadConfig {
            path,
            reason: format!(
                "{} class names but the model has {} outputs",
                config.classes.len(),
                config.model.num_classes()
            ),
        });
    }
    Ok(config)
}

/// Loads `dir/config.json` and `dir/model.bpk` onto `device`, in inference mode.
pub fn load_model(dir: &Path, device: &Device) -> Result<TrainedModel, ModelIoError> {
    let config = read_config(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        return Err(ModelIoError::MissingFile {
            dir: dir.to_path_buf(),
            file: WEIGHTS_FILE,
        });
    }
    let model = load_weights(&config, &path, device)?;
    Ok(TrainedModel {
        config,
        model: model.valid(),
    })
}

/// Builds the configured model and loads weights into it, refusing any mismatch.
pub fn load_weights(
    config: &RunConfig,
    path: &Path,
    device: &Device,
) -> Result<Classifier, ModelIoError> {
    let bad = |reason: String| ModelIoError::BadWeights {
        path: path.to_path_buf(),
        reason,
    };
    let model = Classifier::new(&config.model, device).map_err(|e| bad(e.to_string()))?;
    // A malformed file must be an error, never a crash: contain any panic in the decoder.
    let loaded =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.try_load_file(path)));
    match loaded {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(bad(e.to_string())),
        Err(_) => Err(bad("malformed weights file".into())),
    }
}

/// Saves weights atomically: a temporary file in the same folder, then a rename.
pub fn save_weights(model: &Classifier, path: &Path) -> Result<(), ModelIoError> {
    let err = |reason: String| ModelIoError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}.bpk", std::process::id()));
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| err(e.to_string()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
}

/// Writes pretty JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ModelIoError> {
    let err = |reason: String| ModelIoError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut text = serde_json::to_string_pretty(value).map_err(|e| err(e.to_string()))?;
    text.push('\n');
    write_atomic(path, text.as_bytes()).map_err(|e| err(e.to_string()))
}

/// Copies a model folder's config and weights into a self-contained bundle at `out`.
pub fn export(model_dir: &Path, out: &Path) -> Result<(), ModelIoError> {
    let config = read_config(model_dir)?;
    let weights = model_dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|_| ModelIoError::MissingFile {
        dir: model_dir.to_path_buf(),
        file: WEIGHTS_FILE,
    })?;
    let target = out.join(WEIGHTS_FILE);
    write_atomic(&target, &bytes).map_err(|e| ModelIoError::Write {
        path: target,
        reason: e.to_string(),
    })?;
    write_json(&out.join(CONFIG_FILE), &config)
}
