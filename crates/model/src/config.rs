use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::{size::LayerParams, CnnConfig, MlpConfig, ResNetConfig};

/// Image sides (pixels) that every model, training run and loaded `config.json` accepts: the
/// one rule, used wherever an image size is checked.
///
/// 8 is the smallest input the models are tested with; above 1024 a single decoded image is no
/// longer a thumbnail (4 MiB as f32 per channel) and no catdog model trains at such sizes.
pub const IMAGE_SIZE: RangeInclusive<usize> = 8..=1024;

/// Most trainable parameters (f32) a model may have: 2^28, 1 GiB of weights. Training holds
/// about four times that (weights, gradients, two Adam moments), so a bigger model cannot train
/// on the machines catdog targets and is nearly always a typo (`hidden = [1000000000]`, an MLP
/// on 1024x1024 inputs).
pub const MAX_PARAMETERS: usize = 1 << 28;

/// Most activation values (f32) one batch's forward pass may hold, as estimated by
/// [`ModelConfig::activations_per_image`] times the batch size: 2^30, 4 GiB.
pub const MAX_BATCH_ACTIVATIONS: usize = 1 << 30;

/// Most activation values one image may need: a batch of at least 16 images must fit in
/// [`MAX_BATCH_ACTIVATIONS`].
pub const MAX_IMAGE_ACTIVATIONS: usize = MAX_BATCH_ACTIVATIONS / 16;

/// Which network to build, and the shape of its input and output.
///
/// Serialised into every run folder's `config.json`, so a model can be rebuilt from it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum ModelConfig {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
    ResNet(ResNetConfig),
}

/// A model configuration that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("num_classes must be at least 2, got {0}")]
    TooFewClasses(usize),
    #[error(
        "image_size must be between {min} and {max} pixels, got {0}",
        min = IMAGE_SIZE.start(),
        max = IMAGE_SIZE.end()
    )]
    ImageSize(usize),
    #[error("{what} must not contain 0 (got {values:?})")]
    ZeroWidth {
        what: &'static str,
        values: Vec<usize>,
    },
    #[error("dropout must be in [0, 1), got {0}")]
    Dropout(f64),
    #[error("the network needs at least one block (channels is empty)")]
    NoBlocks,
    #[error(
        "residual has {residual} entries but channels has {channels}: give one residual block \
         count per stage"
    )]
    ResidualCount { residual: usize, channels: usize },
    #[error("{blocks} pooling blocks shrink a {image_size}x{image_size} image below 1 pixel")]
    TooManyBlocks { blocks: usize, image_size: usize },
    #[error(
        "the {arch} would have {} parameters ({}), more than the limit of {} ({}); {layer} alone \
         has {}: use a smaller image_size or narrower layers",
        count(.params),
        size_of_floats(.params),
        count(&MAX_PARAMETERS),
        size_of_floats(&MAX_PARAMETERS),
        count(.layer_params)
    )]
    TooManyParameters {
        arch: &'static str,
        params: usize,
        /// The largest layer, named by its config field (`hidden[0]`, `channels[3]`, ...).
        layer: String,
        layer_params: usize,
    },
    #[error(
        "one {image_size}x{image_size} image would need about {} of activations in the {arch} \
         (limit {} per image, so that a batch of 16 fits in {}): use a smaller image_size or \
         fewer, narrower layers",
        size_of_floats(.per_image),
        size_of_floats(&MAX_IMAGE_ACTIVATIONS),
        size_of_floats(&MAX_BATCH_ACTIVATIONS)
    )]
    TooManyActivations {
        arch: &'static str,
        image_size: usize,
        per_image: usize,
    },
}

/// `1234567` -> `1,234,567`; saturated counts read as "more than 10^19".
fn count(n: &usize) -> String {
    let n = *n;
    if n == usize::MAX {
        return "more than 10^19".into();
    }
    let digits = n.to_string();
    let mut s = String::with_capacity(digits.len() + digits.len() / 3);
    // A comma before each digit with a multiple of 3 digits after it.
    let phase = digits.len() % 3;
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == phase {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// The size of `n` f32 values, in MiB, GiB or TiB.
pub(crate) fn size_of_floats(n: &usize) -> String {
    let bytes = *n as f64 * 4.0;
    let (value, unit) = [(1u64 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB")]
        .into_iter()
        .map(|(scale, unit)| (bytes / scale as f64, unit))
        .find(|(v, _)| *v >= 1.0)
        .unwrap_or((bytes / (1 << 20) as f64, "MiB"));
    format!("{value:.1} {unit}")
}

impl ModelConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::Cnn(_) => "cnn",
            ModelConfig::ResNet(_) => "resnet",
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.num_classes,
            ModelConfig::Cnn(c) => c.num_classes,
            ModelConfig::ResNet(c) => c.num_classes,
        }
    }

    pub fn image_size(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.image_size,
            ModelConfig::Cnn(c) => c.image_size,
            ModelConfig::ResNet(c) => c.image_size,
        }
    }

    /// Trainable parameters of the model this config builds (burn's `num_params`), computed
    /// without building it; saturates at `usize::MAX` for absurd configs.
    pub fn parameter_count(&self) -> usize {
        self.layer_params()
            .iter()
            .fold(0usize, |sum, l| sum.saturating_add(l.params))
    }

    fn layer_params(&self) -> Vec<LayerParams> {
        match self {
            ModelConfig::Mlp(c) => c.layer_params(),
            ModelConfig::Cnn(c) => c.layer_params(),
            ModelConfig::ResNet(c) => c.layer_params(),
        }
    }

    /// An estimate of the f32 values one image's forward pass holds: every layer's input and
    /// output (and the CNN's 3x3 unfolded inputs). Saturates at `usize::MAX`.
    pub fn activations_per_image(&self) -> usize {
        match self {
            ModelConfig::Mlp(c) => c.activations_per_image(),
            ModelConfig::Cnn(c) => c.activations_per_image(),
            ModelConfig::ResNet(c) => c.activations_per_image(),
        }
    }

    /// The largest batch whose estimated activations fit in [`MAX_BATCH_ACTIVATIONS`] (at
    /// least 1).
    pub fn max_batch_size(&self) -> usize {
        (MAX_BATCH_ACTIVATIONS / self.activations_per_image().max(1)).max(1)
    }

    /// Checks every value a user can get wrong, so building never panics inside burn and never
    /// asks for more memory than a machine has.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (classes, size, dropout) = match self {
            ModelConfig::Mlp(c) => (c.num_classes, c.image_size, c.dropout),
            ModelConfig::Cnn(c) => (c.num_classes, c.image_size, c.dropout),
            ModelConfig::ResNet(c) => (c.num_classes, c.image_size, c.dropout),
        };
        if classes < 2 {
            return Err(ConfigError::TooFewClasses(classes));
        }
        if !IMAGE_SIZE.contains(&size) {
            return Err(ConfigError::ImageSize(size));
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
            ModelConfig::ResNet(c) => {
                if c.channels.is_empty() {
                    return Err(ConfigError::NoBlocks);
                }
                if c.stem == 0 || c.channels.contains(&0) {
                    return Err(ConfigError::ZeroWidth {
                        what: "stem and channels",
                        values: [c.stem].into_iter().chain(c.channels.clone()).collect(),
                    });
                }
                if c.residual.len() != c.channels.len() {
                    return Err(ConfigError::ResidualCount {
                        residual: c.residual.len(),
                        channels: c.channels.len(),
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
        // Memory bounds last: they are only meaningful for an otherwise buildable model.
        let layers = self.layer_params();
        let params = self.parameter_count();
        if params > MAX_PARAMETERS {
            // The first of the largest layers: the one to shrink.
            let largest = layers
                .iter()
                .reduce(|a, b| if b.params > a.params { b } else { a });
            return Err(ConfigError::TooManyParameters {
                arch: self.name(),
                params,
                layer: largest.map_or_else(String::new, |l| l.name.clone()),
                layer_params: largest.map_or(0, |l| l.params),
            });
        }
        let per_image = self.activations_per_image();
        if per_image > MAX_IMAGE_ACTIVATIONS {
            return Err(ConfigError::TooManyActivations {
                arch: self.name(),
                image_size: size,
                per_image,
            });
        }
        Ok(())
    }
}
