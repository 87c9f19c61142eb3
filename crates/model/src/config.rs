use serde::{Deserialize, Serialize};

use crate::{CnnConfig, MlpConfig};

/// Which network to build, and the shape of its input and output.
///
/// Serialised into every run folder's `config.json`, so a model can be rebuilt from it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum ModelConfig {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
}

/// A model configuration that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("num_classes must be at least 2, got {0}")]
    TooFewClasses(usize),
    #[error("image_size must be at least 8 pixels, got {0}")]
    ImageTooSmall(usize),
    #[error("{what} must not contain 0 (got {values:?})")]
    ZeroWidth {
        what: &'static str,
        values: Vec<usize>,
    },
    #[error("dropout must be in [0, 1), got {0}")]
    Dropout(f64),
    #[error("the CNN needs at least one block")]
    NoBlocks,
    #[error("{blocks} pooling blocks shrink a {image_size}x{image_size} image below 1 pixel")]
    TooManyBlocks { blocks: usize, image_size: usize },
}

impl ModelConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::Cnn(_) => "cnn",
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.num_classes,
            ModelConfig::Cnn(c) => c.num_classes,
        }
    }

    pub fn image_size(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.image_size,
            ModelConfig::Cnn(c) => c.image_size,
        }
    }

    /// Checks every value a user can get wrong, so building never panics inside burn.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (classes, size, dropout) = match self {
            ModelConfig::Mlp(c) => (c.num_classes, c.image_size, c.dropout),
            ModelConfig::Cnn(c) => (c.num_classes, c.image_size, c.dropout),
        };
        if classes < 2 {
            return Err(ConfigError::TooFewClasses(classes));
        }
        if size < 8 {
            return Err(ConfigError::ImageTooSmall(size));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(ConfigError::Dropout(dropout));
        }
        match self {
            ModelConfig::Mlp(c) => {
                if c.hidden.contains(&0) {
                    return Err(ConfigError::ZeroWidth {
                        what: "hidden",
                        values: c.hidden.clone(),
                    });
                }
            }
            ModelConfig::Cnn(c) => {
                if c.channels.is_empty() {
                    return Err(ConfigError::NoBlocks);
                }
                if c.channels.contains(&0) {
                    return Err(ConfigError::ZeroWidth {
                        what: "channels",
                        values: c.channels.clone(),
                    });
                }
                if c.hidden == Some(0) {
                    return Err(ConfigError::ZeroWidth {
                        what: "hidden",
                        values: vec![0],
                    });
                }
                if c.output_size() == 0 {
                    return Err(ConfigError::TooManyBlocks {
                        blocks: c.channels.len(),
                        image_size: size,
                    });
                }
            }
        }
        Ok(())
    }
}
