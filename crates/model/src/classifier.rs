use burn::{
    module::Module,
    tensor::{Device, Tensor},
};

use crate::{Cnn, ConfigError, Mlp, ModelConfig, ResNet};

/// Any catdog model: one type for the trainer, evaluator and exporter to hold.
// One model per process, moved rarely: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier {
    Mlp(Mlp),
    Cnn(Cnn),
    ResNet(ResNet),
}

impl Classifier {
    /// Builds a freshly initialised model on `device` (seed the device first for reproducibility).
    pub fn new(config: &ModelConfig, device: &Device) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(match config {
            ModelConfig::Mlp(c) => Classifier::Mlp(c.init(device)),
            ModelConfig::Cnn(c) => Classifier::Cnn(c.init(device)),
            ModelConfig::ResNet(c) => Classifier::ResNet(c.init(device)),
        })
    }

    /// `[batch, 3, H, W]` normalised images -> `[batch, num_classes]` raw logits.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::Mlp(m) => m.forward(images),
            Classifier::Cnn(m) => m.forward(images),
            Classifier::ResNet(m) => m.forward(images),
        }
    }
}
