use burn::{
    module::Module,
    nn::conv::Conv2d,
    tensor::{Device, Tensor, TensorData},
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

    /// The first convolution (over the RGB input), of the networks that have one.
    fn first_conv(&mut self) -> Option<&mut Conv2d> {
        match self {
            Classifier::Mlp(_) => None,
            Classifier::Cnn(m) => m.blocks.first_mut()?.convs.first_mut(),
            Classifier::ResNet(m) => Some(&mut m.stem.conv),
        }
    }

    /// The first convolution's weights `[out, 3, kh, kw]` as host values and their shape.
    pub fn first_conv_weights(&mut self) -> Option<(Vec<f32>, [usize; 4])> {
        let weight = self.first_conv()?.weight.val();
        let shape = weight.shape().dims::<4>();
        let values = weight
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .ok()?;
        Some((values, shape))
    }

    /// Replaces the first convolution's weights (same shape, trainable as before); false when
    /// the model has no convolution or `values` has another length.
    pub fn set_first_conv_weights(&mut self, values: Vec<f32>) -> bool {
        let Some(conv) = self.first_conv() else {
            return false;
        };
        let shape = conv.weight.val().shape().dims::<4>();
        if values.len() != shape.iter().product::<usize>() {
            return false;
        }
        let weight = conv.weight.clone().map(|t| {
            let require_grad = t.is_require_grad();
            Tensor::from_data(TensorData::new(values, shape), &t.device())
                .set_require_grad(require_grad)
        });
        conv.weight = weight;
        true
    }
}
