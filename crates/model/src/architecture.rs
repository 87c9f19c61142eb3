//! What a user chooses about a network: its kind and hyperparameters. The input size and the
//! class count are not part of it: they come from the run's `image_size` and from the data, so
//! each is set in exactly one place ([`Architecture::with_shape`] joins them into a
//! [`ModelConfig`]).

use serde::{Deserialize, Serialize};

use crate::{CnnConfig, MlpConfig, ModelConfig, ResNetConfig};

/// Side of the square input images when nothing else is said: what the default CNN is tuned
/// for, and the default of every config that has an image size.
pub const DEFAULT_IMAGE_SIZE: usize = 48;

/// The `[model]` section of a training config.
///
/// Unknown keys are refused, `image_size` and `num_classes` among them: a training config sets
/// `image_size` at its top level and the classes are those found in the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum Architecture {
    Mlp(MlpArch),
    Cnn(CnnArch),
    ResNet(ResNetArch),
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture::Cnn(CnnArch::default())
    }
}

/// Multi-layer perceptron hyperparameters (see [`MlpConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpArch {
    /// Widths of the hidden layers, in order.
    pub hidden: Vec<usize>,
    pub dropout: f64,
}

impl Default for MlpArch {
    fn default() -> Self {
        Self {
            hidden: vec![512, 256],
            dropout: 0.0,
        }
    }
}

/// Convolutional network hyperparameters (see [`CnnConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnArch {
    /// Output channels of each block; every block halves the resolution.
    pub channels: Vec<usize>,
    /// Convolutions per block before its pooling (each Conv -> BatchNorm -> ReLU).
    pub convs_per_block: usize,
    /// Width of an optional hidden layer between pooling and the logits.
    pub hidden: Option<usize>,
    pub dropout: f64,
}

impl Default for CnnArch {
    fn default() -> Self {
        Self {
            channels: vec![32, 64, 128, 256],
            convs_per_block: 1,
            hidden: None,
            dropout: 0.2,
        }
    }
}

/// Residual network hyperparameters (see [`ResNetConfig`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetArch {
    /// Channels of the full-resolution stem convolution.
    pub stem: usize,
    /// Output channels of each stage; every stage halves the resolution.
    pub channels: Vec<usize>,
    /// Residual blocks (two convolutions each) after each stage's pooling block.
    pub residual: Vec<usize>,
    pub dropout: f64,
}

impl Default for ResNetArch {
    /// ResNet-9's shape (residual blocks after the first and last stages) at half its width,
    /// for CPU budgets.
    fn default() -> Self {
        Self {
            stem: 32,
            channels: vec![64, 128, 256],
            residual: vec![1, 0, 1],
            dropout: 0.0,
        }
    }
}

impl Architecture {
    /// Whether `other` is the same kind of network (MLP, CNN or ResNet), whatever its widths.
    pub fn same_kind(&self, other: &Architecture) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Mlp(_) => "mlp",
            Architecture::Cnn(_) => "cnn",
            Architecture::ResNet(_) => "resnet",
        }
    }

    /// The full model description for `image_size x image_size` inputs and `num_classes`
    /// outputs.
    pub fn with_shape(&self, image_size: usize, num_classes: usize) -> ModelConfig {
        match self.clone() {
            Architecture::Mlp(a) => ModelConfig::Mlp(MlpConfig {
                num_classes,
                image_size,
                hidden: a.hidden,
                dropout: a.dropout,
            }),
            Architecture::Cnn(a) => ModelConfig::Cnn(CnnConfig {
                num_classes,
                image_size,
                channels: a.channels,
                convs_per_block: a.convs_per_block,
                hidden: a.hidden,
                dropout: a.dropout,
            }),
            Architecture::ResNet(a) => ModelConfig::ResNet(ResNetConfig {
                num_classes,
                image_size,
                stem: a.stem,
                channels: a.channels,
                residual: a.residual,
                dropout: a.dropout,
            }),
        }
    }
}

impl ModelConfig {
    /// The user's choices in this config, without its input size and class count.
    pub fn architecture(&self) -> Architecture {
        match self.clone() {
            ModelConfig::Mlp(c) => Architecture::Mlp(MlpArch {
                hidden: c.hidden,
                dropout: c.dropout,
            }),
            ModelConfig::Cnn(c) => Architecture::Cnn(CnnArch {
                channels: c.channels,
                convs_per_block: c.convs_per_block,
                hidden: c.hidden,
                dropout: c.dropout,
            }),
            ModelConfig::ResNet(c) => Architecture::ResNet(ResNetArch {
                stem: c.stem,
                channels: c.channels,
                residual: c.residual,
                dropout: c.dropout,
            }),
        }
    }
}

impl Default for MlpConfig {
    fn default() -> Self {
        match Architecture::Mlp(MlpArch::default()).with_shape(DEFAULT_IMAGE_SIZE, 2) {
            ModelConfig::Mlp(c) => c,
            _ => unreachable!("an MLP architecture gives an MLP config"),
        }
    }
}

impl Default for CnnConfig {
    fn default() -> Self {
        match Architecture::Cnn(CnnArch::default()).with_shape(DEFAULT_IMAGE_SIZE, 2) {
            ModelConfig::Cnn(c) => c,
            _ => unreachable!("a CNN architecture gives a CNN config"),
        }
    }
}

impl Default for ResNetConfig {
    fn default() -> Self {
        match Architecture::ResNet(ResNetArch::default()).with_shape(DEFAULT_IMAGE_SIZE, 2) {
            ModelConfig::ResNet(c) => c,
            _ => unreachable!("a ResNet architecture gives a ResNet config"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_architecture_round_trip() {
        for arch in [
            Architecture::Mlp(MlpArch::default()),
            Architecture::Cnn(CnnArch::default()),
            Architecture::ResNet(ResNetArch::default()),
        ] {
            let config = arch.with_shape(32, 5);
            assert_eq!(config.image_size(), 32);
            assert_eq!(config.num_classes(), 5);
            assert_eq!(config.name(), arch.name());
            assert_eq!(config.architecture(), arch);
        }
    }

    #[test]
    fn a_training_model_section_refuses_shape_keys() {
        let e = serde_json::from_str::<Architecture>(r#"{"arch": "mlp", "image_size": 64}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `image_size`"), "{e}");
        let e = serde_json::from_str::<Architecture>(r#"{"arch": "cnn", "num_classes": 3}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `num_classes`"), "{e}");
        let ok: Architecture =
            serde_json::from_str(r#"{"arch": "cnn", "channels": [8, 16]}"#).unwrap();
        assert_eq!(
            ok,
            Architecture::Cnn(CnnArch {
                channels: vec![8, 16],
                ..CnnArch::default()
            })
        );
    }
}
