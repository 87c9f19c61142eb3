//! Image classifiers that end in a plain `Linear` layer and return raw **logits**.
//!
//! Nothing follows the last layer: no ReLU, sigmoid or softmax. Turning logits into
//! probabilities is the reader's job ([`probabilities`]), and the loss works on the logits
//! directly (see `catdog-train`'s loss module).

mod architecture;
mod classifier;
mod cnn;
mod config;
mod fast_ops;
pub mod kernels;
mod mlp;
mod probs;
mod resnet;
mod size;

// The kernels' paths as the tests and benchmarks name them.
pub use kernels::{conv3x3, linear, norm_relu_pool, winograd};

pub use architecture::{Architecture, CnnArch, MlpArch, ResNetArch, DEFAULT_IMAGE_SIZE};
pub use classifier::Classifier;
pub use cnn::{Cnn, CnnConfig, ConvBlock};
pub use config::{
    ConfigError, ModelConfig, IMAGE_SIZE, MAX_BATCH_ACTIVATIONS, MAX_IMAGE_ACTIVATIONS,
    MAX_PARAMETERS,
};
pub use fast_ops::{batch_norm, conv3x3_as_matmul, MATMUL_CONV_MAX_CHANNELS};
pub use mlp::{Mlp, MlpConfig};
pub use probs::{argmax, probabilities, softmax_row, softmax_row_at};
pub use resnet::{ConvBnRelu, ResNet, ResNetConfig, Residual, Stage};
