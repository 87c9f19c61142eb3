use burn::{
    module::Module,
    nn::{Dropout, DropoutConfig, Linear, LinearConfig},
    tensor::{activation::relu, Device, Tensor},
};
use serde::{Deserialize, Serialize};

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

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            num_classes: 2,
            image_size: 64,
            hidden: vec![512, 256],
            dropout: 0.0,
        }
    }
}

impl MlpConfig {
    pub fn input_features(&self) -> usize {
        3 * self.image_size * self.image_size
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
        self.output.forward(x)
    }

    /// Everything before the last layer: the `h` in `logits = W h + b`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        for layer in &self.hidden {
            x = self.dropout.forward(relu(layer.forward(x)));
        }
        x
    }
}
