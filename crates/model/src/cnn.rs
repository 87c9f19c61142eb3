use burn::{
    module::Module,
    nn::{
        conv::{Conv2d, Conv2dConfig},
        pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig},
        BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
    },
    tensor::{activation::relu, Device, Tensor},
};

use crate::{
    conv3x3,
    fast_ops::{batch_norm, conv3x3_as_matmul, MATMUL_CONV_MAX_CHANNELS},
    norm_relu_pool,
    size::{mul, LayerParams},
};
use serde::{Deserialize, Serialize};

/// Convolutional classifier: blocks of `Conv3x3 -> BatchNorm -> ReLU -> MaxPool2`, global
/// average pooling, an optional hidden `Linear -> ReLU`, dropout, then the logits `Linear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CnnConfig {
    pub num_classes: usize,
    pub image_size: usize,
    /// Output channels of each block; every block halves the resolution.
    pub channels: Vec<usize>,
    /// Convolutions per block before its pooling (each Conv -> BatchNorm -> ReLU).
    pub convs_per_block: usize,
    /// Width of an optional hidden layer between pooling and the logits.
    pub hidden: Option<usize>,
    pub dropout: f64,
}

impl CnnConfig {
    /// Side of the feature map after the last block (0 means the config is unusable).
    pub fn output_size(&self) -> usize {
        self.channels.iter().fold(self.image_size, |s, _| s / 2)
    }

    /// Each block's convolutions and BatchNorms, the hidden and the output layer, named by the
    /// field that sizes them. Saturating, like every size computed from a config file.
    pub(crate) fn layer_params(&self) -> Vec<LayerParams> {
        let convs = self.convs_per_block.max(1);
        let mut layers = Vec::with_capacity(self.channels.len() + 2);
        let mut c_in = 3;
        for (i, &c_out) in self.channels.iter().enumerate() {
            // First conv from c_in, the others from c_out, no conv bias; each BatchNorm's gamma,
            // beta and running mean and variance (burn's `num_params` counts all four).
            let weights = mul(&[9, c_in, c_out])
                .saturating_add(mul(&[convs - 1, 9, c_out, c_out]))
                .saturating_add(mul(&[convs, 4, c_out]));
            layers.push(LayerParams {
                name: format!("channels[{i}] ({convs} conv(s) of {c_out} channels)"),
                params: weights,
            });
            c_in = c_out;
        }
        if let Some(h) = self.hidden {
            layers.push(LayerParams {
                name: format!("hidden ({c_in} inputs x {h})"),
                params: mul(&[c_in, h]).saturating_add(h),
            });
            c_in = h;
        }
        layers.push(LayerParams {
            name: format!("the output layer ({c_in} inputs x {})", self.num_classes),
            params: mul(&[c_in, self.num_classes]).saturating_add(self.num_classes),
        });
        layers
    }

    /// Per block and side `s`: each conv's nine shifted (unfolded) inputs, its output, the
    /// BatchNorm and ReLU outputs, then the pooled map; then the pooled features, the hidden
    /// layer and the logits. An estimate for memory bounds, not an exact count.
    pub(crate) fn activations_per_image(&self) -> usize {
        let convs = self.convs_per_block.max(1);
        let mut side = self.image_size;
        let mut sum = mul(&[3, side, side]);
        let mut c_in = 3;
        for &c_out in &self.channels {
            let per_pixel = mul(&[9, c_in])
                .saturating_add(mul(&[3, c_out]))
                .saturating_add(mul(&[convs - 1, 12, c_out]));
            sum = sum.saturating_add(mul(&[side, side, per_pixel]));
            side /= 2;
            sum = sum.saturating_add(mul(&[side, side, c_out]));
            c_in = c_out;
        }
        let hidden = self.hidden.map_or(0, |h| mul(&[2, h]));
        sum.saturating_add(c_in)
            .saturating_add(hidden)
            .saturating_add(self.num_classes)
    }

    pub fn init(&self, device: &Device) -> Cnn {
        let mut blocks = Vec::with_capacity(self.channels.len());
        let mut c_in = 3;
        for &c_out in &self.channels {
            let mut convs = Vec::new();
            let mut norms = Vec::new();
            for i in 0..self.convs_per_block.max(1) {
                let from = if i == 0 { c_in } else { c_out };
                convs.push(conv3x3_layer(from, c_out, device));
                norms.push(BatchNormConfig::new(c_out).init(device));
            }
            blocks.push(ConvBlock {
                convs,
                norms,
                pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            });
            c_in = c_out;
        }
        let (hidden, last_width) = match self.hidden {
            Some(h) => (Some(LinearConfig::new(c_in, h).init(device)), h),
            None => (None, c_in),
        };
        Cnn {
            blocks,
            global_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            hidden,
            dropout: DropoutConfig::new(self.dropout).init(),
            output: LinearConfig::new(last_width, self.num_classes).init(device),
        }
    }
}

/// A 3x3, stride-1, padding-1 convolution without bias, as every block of the CNN and the ResNet
/// builds it.
pub(crate) fn conv3x3_layer(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        // BatchNorm's beta makes a conv bias redundant.
        .with_bias(false)
        .init(device)
}

/// `conv.forward(x)` by the fastest path with its values: catdog's op on burn-flex (the RGB input
/// layer included: 6.9 against 25.9 ms forward per 64x64 batch of 64 for the matmul form,
/// `examples/op_profile.rs`), elsewhere the matmul form for the RGB input and burn's convolution
/// for the rest.
pub(crate) fn conv_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if conv3x3::applies(conv, &x) {
        conv3x3::conv3x3(conv, x)
    } else if x.dims()[1] <= MATMUL_CONV_MAX_CHANNELS {
        conv3x3_as_matmul(conv, x)
    } else {
        conv.forward(x)
    }
}

/// `relu(batch_norm(norm, y))`: one fused op on burn-flex, burn's ops elsewhere.
pub(crate) fn norm_relu(norm: &BatchNorm, y: Tensor<4>) -> Tensor<4> {
    if norm_relu_pool::applies_without_pool(&y) {
        norm_relu_pool::norm_relu(norm, y)
    } else {
        relu(batch_norm(norm, y))
    }
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub convs: Vec<Conv2d>,
    pub norms: Vec<BatchNorm>,
    pub pool: MaxPool2d,
}

impl ConvBlock {
    /// `[Conv -> BatchNorm -> ReLU] x n -> MaxPool`, computed with the last ReLU after the pool:
    /// both are monotone, so `relu(max(x)) == max(relu(x))` exactly, values and gradients, and
    /// the ReLU then runs on a quarter of the elements.
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        let last = self.convs.len().saturating_sub(1);
        if self.convs.is_empty() {
            return relu(self.pool.forward(x));
        }
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            x = conv_norm_relu(conv, norm, x, (i == last).then_some(&self.pool));
        }
        x
    }
}

/// `relu(norm(conv(x)))`, pooled by `pool` when given, by the fastest path with its values: for
/// inference on burn-flex one op that applies the BatchNorm, the ReLU and a 2x2 pool to the
/// convolution's output as it is written; in training on burn-flex the convolution and then one
/// fused BatchNorm-ReLU(-pool) op; burn's ops elsewhere.
pub(crate) fn conv_norm_relu(
    conv: &Conv2d,
    norm: &BatchNorm,
    x: Tensor<4>,
    pool: Option<&MaxPool2d>,
) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let fused_pool = pool.is_some_and(|p| norm_relu_pool::applies_to(p, [h, w]));
    if conv3x3::inference_applies(conv, &x) && (pool.is_none() || fused_pool) {
        return conv3x3::conv3x3_norm_relu(conv, norm, x, pool.is_some());
    }
    let y = conv_forward(conv, x);
    match pool {
        None => norm_relu(norm, y),
        Some(_) if fused_pool && norm_relu_pool::applies_without_pool(&y) => {
            norm_relu_pool::norm_relu_pool(norm, y)
        }
        Some(pool) => relu(pool.forward(batch_norm(norm, y))),
    }
}

#[derive(Module, Debug)]
pub struct Cnn {
    pub blocks: Vec<ConvBlock>,
    pub global_pool: AdaptiveAvgPool2d,
    pub hidden: Option<Linear>,
    pub dropout: Dropout,
    /// The last layer: its output is the logits, untouched.
    pub output: Linear,
}

impl Cnn {
    /// `[batch, 3, H, W]` -> `[batch, num_classes]` logits.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.features(images);
        crate::linear::linear(&self.output, x)
    }

    /// Everything before the last layer: the `h` in `logits = W h + b`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for block in &self.blocks {
            x = block.forward(x);
        }
        let mut x: Tensor<2> = self.global_pool.forward(x).flatten(1, 3);
        if let Some(hidden) = &self.hidden {
            x = relu(crate::linear::linear(hidden, x));
        }
        self.dropout.forward(x)
    }
}
