use burn::{
    module::Module,
    nn::{Dropout, DropoutConfig, Linear, LinearConfig},
    tensor::{activation::relu, Device, Tensor},
};
use serde::{Deserialize, Serialize};

use crate::size::{mul, LayerParams};

/// Multi-layer perceptron on flattened pixels: `[Linear -> ReLU (-> Dropout)] x N -> Linear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MlpConfig {
    pub num_classes: usize,
    /// Input images are `image_size x image_size` RGB.
    pub image_size: usize,
    /// Widths of the hidden layers, in order.
    pub hidden: Vec<usize>,
    pub dropout: f64,
}

impl MlpConfig {
    /// Saturating: the size comes from a config file and is validated after this is called.
    pub fn input_features(&self) -> usize {
        mul(&[3, self.image_size, self.image_size])
    }

    /// Each `Linear`'s weights and biases, named by the field that sizes it.
    pub(crate) fn layer_params(&self) -> Vec<LayerParams> {
        let mut width = self.input_features();
        let mut layers = Vec::with_capacity(self.hidden.len() + 1);
        for (i, &next) in self.hidden.iter().enumerate() {
            layers.push(LayerParams {
                name: format!("hidden[{i}] ({width} inputs x {next})"),
                params: mul(&[width, next]).saturating_add(next),
            });
            width = next;
        }
        layers.push(LayerParams {
            name: format!("the output layer ({width} inputs x {})", self.num_classes),
            params: mul(&[width, self.num_classes]).saturating_add(self.num_classes),
        });
        layers
    }

    /// The input, each hidden layer's output, ReLU and dropout, and the logits.
    pub(crate) fn activations_per_image(&self) -> usize {
        self.hidden
            .iter()
            .fold(self.input_features(), |sum, &h| {
                sum.saturating_add(mul(&[3, h]))
            })
            .saturating_add(self.num_classes)
    }

    pub fn init(&self, device: &Device) -> Mlp {
        let mut width = self.input_features();
        let mut hidden = Vec::with_capacity(self.hidden.len());
        for &next in &self.hidden {
            hidden.push(LinearConfig::new(width, next).init(device));
            width = next;
        }
        Mlp {
            hidden,
            dropout: DropoutConfig::new(self.dropout).init(),
            output: LinearConfig::new(width, self.num_classes).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden: Vec<Linear>,
    pub dropout: Dropout,
    /// The last layer: its output is the logits, untouched.
    pub output: Linear,
}

impl Mlp {
    /// `[batch, 3, H, W]` -> `[batch, num_classes]` logits.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.features(images);
        crate::linear::linear(&self.output, x)
    }

    /// Everything before the last layer: the `h` in `logits = W h + b`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        for layer in &self.hidden {
            x = self.dropout.forward(relu(crate::linear::linear(layer, x)));
        }
        x
    }
}
