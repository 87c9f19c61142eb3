//! `catdog train --config FILE`: a TOML settings file, or a run's `config.json` (its `train`
//! section, with the epoch counts its budget recorded, so that the run repeats exactly).

use std::path::{Path, PathBuf};

use catdog_data::{read_small_text, MAX_CONFIG_BYTES};

use crate::TrainConfig;

/// Why a settings file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TrainConfig {
    /// The settings of `path`: TOML (every key optional, defaults for the rest), or a run's
    /// `config.json`. A TOML file that sets `epochs` and no `budget` means that epoch count,
    /// as `--epochs` does.
    pub fn from_file(path: &Path) -> Result<TrainConfig, ConfigFileError> {
        let text =
            read_small_text(path, MAX_CONFIG_BYTES).map_err(|source| ConfigFileError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let invalid = |source: Box<dyn std::error::Error + Send + Sync>| ConfigFileError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        if text.trim_start().starts_with('{') {
            return run_config_settings(&text).map_err(invalid);
        }
        let mut c = toml::from_str::<TrainConfig>(&text).map_err(|e| invalid(e.into()))?;
        let keys = toml::from_str::<toml::Table>(&text).unwrap_or_default();
        if keys.contains_key("epochs") && !keys.contains_key("budget") {
            c.budget = None;
        }
        Ok(c)
    }
}

/// The `train` section of a run's `config.json`.
fn run_config_settings(
    text: &str,
) -> Result<TrainConfig, Box<dyn std::error::Error + Send + Sync>> {
    let mut run: serde_json::Value = serde_json::from_str(text)?;
    let train = run
        .get_mut("train")
        .map(serde_json::Value::take)
        .ok_or("a run's config.json with a `train` section was expected")?;
    Ok(serde_json::from_value(train)?)
}
