//! A residual network in the style of ResNet-9 (Page, "How to train your ResNet"; airbench): a
//! full-resolution stem, stages that each widen with a `Conv -> BatchNorm -> ReLU -> MaxPool`
//! block followed by residual blocks `x + relu(bn(conv(relu(bn(conv(x))))))`, global average
//! pooling, dropout and a final `Linear` whose outputs are the raw logits.

use burn::{
    module::Module,
    nn::{
        conv::Conv2d,
        pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2dConfig},
        BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig,
    },
    tensor::{Device, Tensor},
};
use serde::{Deserialize, Serialize};

use crate::{
    cnn::{conv3x3_layer, conv_norm_relu, ConvBlock},
    size::{mul, LayerParams},
};

/// Residual network: stem, stages (each halves the resolution), global average pooling,
/// dropout, the logits `Linear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResNetConfig {
    pub num_classes: usize,
    pub image_size: usize,
    /// Channels of the stem's convolution, at full resolution.
    pub stem: usize,
    /// Output channels of each stage.
    pub channels: Vec<usize>,
    /// Residual blocks after each stage's pooling block (as many entries as `channels`).
    pub residual: Vec<usize>,
    pub dropout: f64,
}

impl ResNetConfig {
    /// Side of the feature map after the last stage (0 means the config is unusable).
    pub fn output_size(&self) -> usize {
        self.channels.iter().fold(self.image_size, |s, _| s / 2)
    }

    /// One 3x3 convolution (no bias) and its BatchNorm (four values per channel).
    fn conv_bn(c_in: usize, c_out: usize) -> usize {
        mul(&[9, c_in, c_out]).saturating_add(mul(&[4, c_out]))
    }

    pub(crate) fn layer_params(&self) -> Vec<LayerParams> {
        let mut layers = vec![LayerParams {
            name: format!("stem ({} channels)", self.stem),
            params: Self::conv_bn(3, self.stem),
        }];
        let mut c_in = self.stem;
        for (i, &c_out) in self.channels.iter().enumerate() {
            let blocks = self.residual.get(i).copied().unwrap_or(0);
            layers.push(LayerParams {
                name: format!("channels[{i}] ({c_out} channels, {blocks} residual block(s))"),
                params: Self::conv_bn(c_in, c_out).saturating_add(mul(&[
                    blocks,
                    2,
                    Self::conv_bn(c_out, c_out),
                ])),
            });
            c_in = c_out;
        }
        layers.push(LayerParams {
            name: format!("the output layer ({c_in} inputs x {})", self.num_classes),
            params: mul(&[c_in, self.num_classes]).saturating_add(self.num_classes),
        });
        layers
    }

    /// Per convolution at side `s`: its unfolded input, its output, BatchNorm and ReLU outputs
    /// (and the residual sum); an estimate for memory bounds, as the CNN's.
    pub(crate) fn activations_per_image(&self) -> usize {
        let side = self.image_size;
        let conv = |s: usize, c_in: usize, c_out: usize| {
            mul(&[s, s, mul(&[9, c_in]).saturating_add(mul(&[3, c_out]))])
        };
        let mut sum = mul(&[3, side, side]).saturating_add(conv(side, 3, self.stem));
        let (mut s, mut c_in) = (side, self.stem);
        for (i, &c_out) in self.channels.iter().enumerate() {
            sum = sum.saturating_add(conv(s, c_in, c_out));
            s /= 2;
            let blocks = self.residual.get(i).copied().unwrap_or(0);
            let block = conv(s, c_out, c_out)
                .saturating_mul(2)
                .saturating_add(mul(&[s, s, c_out]));
            sum = sum
                .saturating_add(mul(&[s, s, c_out]))
                .saturating_add(block.saturating_mul(blocks));
            c_in = c_out;
        }
        sum.saturating_add(c_in).saturating_add(self.num_classes)
    }

    pub fn init(&self, device: &Device) -> ResNet {
        let mut c_in = self.stem;
        let stages = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, &c_out)| {
                let down = ConvBlock {
                    convs: vec![conv3x3_layer(c_in, c_out, device)],
                    norms: vec![BatchNormConfig::new(c_out).init(device)],
                    pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                };
                let residual = (0..self.residual.get(i).copied().unwrap_or(0))
                    .map(|_| Residual {
                        first: ConvBnRelu::new(c_out, c_out, device),
                        second: ConvBnRelu::new(c_out, c_out, device),
                    })
                    .collect();
                c_in = c_out;
                Stage { down, residual }
            })
            .collect();
        ResNet {
            stem: ConvBnRelu::new(3, self.stem, device),
            stages,
            global_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            output: LinearConfig::new(c_in, self.num_classes).init(device),
        }
    }
}

/// `relu(bn(conv3x3(x)))` at the input's resolution.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    pub conv: Conv2d,
    pub norm: BatchNorm,
}

impl ConvBnRelu {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3_layer(c_in, c_out, device),
            norm: BatchNormConfig::new(c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_norm_relu(&self.conv, &self.norm, x, None)
    }
}

/// `x + second(first(x))`.
#[derive(Module, Debug)]
pub struct Residual {
    pub first: ConvBnRelu,
    pub second: ConvBnRelu,
}

/// A pooling block that sets the stage's width, then its residual blocks.
#[derive(Module, Debug)]
pub struct Stage {
    pub down: ConvBlock,
    pub residual: Vec<Residual>,
}

#[derive(Module, Debug)]
pub struct ResNet {
    pub stem: ConvBnRelu,
    pub stages: Vec<Stage>,
    pub global_pool: AdaptiveAvgPool2d,
    pub dropout: Dropout,
    /// The last layer: its output is the logits, untouched.
    pub output: Linear,
}

impl ResNet {
    /// `[batch, 3, H, W]` -> `[batch, num_classes]` logits.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        crate::linear::linear(&self.output, self.features(images))
    }

    /// Everything before the last layer.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(images);
        for stage in &self.stages {
            x = stage.down.forward(x);
            for block in &stage.residual {
                x = x.clone() + block.second.forward(block.first.forward(x));
            }
        }
        let x: Tensor<2> = self.global_pool.forward(x).flatten(1, 3);
        self.dropout.forward(x)
    }
}
