use burn::{
    module::{Module, ModuleMapper, Param, ParamId, RunningState},
    nn::{conv::Conv2d, BatchNorm},
    tensor::{Bool, Device, Int, Tensor, TensorData},
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
        let model = match config {
            ModelConfig::Mlp(c) => Classifier::Mlp(c.init(device)),
            ModelConfig::Cnn(c) => Classifier::Cnn(c.init(device)),
            ModelConfig::ResNet(c) => Classifier::ResNet(c.init(device)),
        };
        Ok(model.numbered())
    }

    /// The model with its parameter ids numbered in visit order. burn draws each id at random
    /// and stores it in the weights file (and keys optimiser state by it), so two runs with
    /// the same seed wrote different `model.bpk` bytes; numbered ids make them identical.
    fn numbered(self) -> Self {
        let mut model = self.map(&mut NumberParams { next: 0 });
        // A BatchNorm's running statistics hand mappers a copy of their id, so they are
        // renumbered in place, in a range of their own.
        let mut next = RUNNING_STATE_IDS;
        for norm in model.norms_mut() {
            for state in [&mut norm.running_mean, &mut norm.running_var] {
                *state = RunningState::with_id(ParamId::from(next), state.value());
                next += 1;
            }
        }
        model
    }

    /// Every BatchNorm of the model, in a fixed order.
    fn norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        match self {
            Classifier::Mlp(_) => Vec::new(),
            Classifier::Cnn(m) => m.blocks.iter_mut().flat_map(|b| &mut b.norms).collect(),
            Classifier::ResNet(m) => {
                let mut norms = vec![&mut m.stem.norm];
                for stage in &mut m.stages {
                    norms.extend(&mut stage.down.norms);
                    for block in &mut stage.residual {
                        norms.push(&mut block.first.norm);
                        norms.push(&mut block.second.norm);
                    }
                }
                norms
            }
        }
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

/// Where the running statistics' ids start, far above any parameter count.
const RUNNING_STATE_IDS: u64 = 1 << 40;

/// Gives every parameter the next id, in the order the module visits them.
struct NumberParams {
    next: u64,
}

impl NumberParams {
    fn take(&mut self) -> ParamId {
        self.next += 1;
        ParamId::from(self.next - 1)
    }
}

impl ModuleMapper for NumberParams {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = self.take();
        param
    }

    fn map_int<const D: usize>(
        &mut self,
        mut param: Param<Tensor<D, Int>>,
    ) -> Param<Tensor<D, Int>> {
        param.id = self.take();
        param
    }

    fn map_bool<const D: usize>(
        &mut self,
        mut param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        param.id = self.take();
        param
    }
}
