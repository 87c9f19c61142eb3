//! Adam and AdamW as one multi-threaded pass over each parameter on burn-flex, as PyTorch's
//! fused Adam does.
//!
//! burn's optimisers update a parameter as a chain of about a dozen tensor ops (scale the
//! moments, square the gradient, two bias corrections, a square root, a division, the weight
//! decay, the update), each one a single-threaded pass that reads and writes the whole tensor.
//! Here the optimiser hands each f32 parameter on burn-flex to one kernel
//! ([`catdog_model::kernels::adam`]): the same arithmetic, in the same order and precision, once
//! per element, in place (tested against burn's optimisers in `tests/fused_adam.rs`).
//!
//! The state is burn's own ([`AdamWState`], [`AdamState`]), so checkpoints keep their format and
//! resume with either implementation. Other backends (wgpu, ndarray) and other dtypes go
//! through burn's optimiser unchanged: one code path, chosen by the tensor's device.

pub use catdog_model::kernels::adam::{update, AdamStep, FusedAdamOps};

use burn::{
    backend::Dispatch,
    optim::{
        AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate,
        Optimizer,
    },
    tensor::{DType, Device, Tensor},
};

/// burn's Adam and AdamW defaults, which catdog uses.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// Whether a tensor takes the fused path: f32 on burn-flex.
fn fusable<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && t.device() == Device::flex()
}

/// One fused step of a parameter through the backend extension, from its stored momentum
/// (none before the first step; amsgrad is never used by catdog): the updated parameter and
/// momentum.
fn fused_step<const D: usize>(
    lr: LearningRate,
    weight_decay: f32,
    decoupled: bool,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: Option<AdaptiveMomentumState<D>>,
) -> (Tensor<D>, AdaptiveMomentumState<D>) {
    // A first step is a step from zero moments: 0 * beta + x is exactly x, as burn's first step.
    let (m, v, time) = match state {
        Some(s) => (s.moment_1, s.moment_2, s.time + 1),
        None => (grad.zeros_like(), grad.zeros_like(), 1),
    };
    let (p, m, v) = <Dispatch as FusedAdamOps>::fused_adam_step(
        tensor.into_dispatch(),
        grad.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        lr,
        BETA_1,
        BETA_2,
        EPSILON,
        weight_decay,
        decoupled,
        time as i32,
    );
    let momentum =
        AdaptiveMomentumState::new(time, Tensor::from_dispatch(m), Tensor::from_dispatch(v));
    (Tensor::from_dispatch(p), momentum)
}

/// AdamW, fused on burn-flex, burn's [`AdamW`] elsewhere.
#[derive(Clone)]
pub struct FusedAdamW {
    weight_decay: f32,
    fallback: AdamW,
}

impl FusedAdamW {
    pub fn new(weight_decay: f32) -> Self {
        Self {
            weight_decay,
            fallback: AdamWConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(EPSILON)
                .with_weight_decay(weight_decay)
                .build(),
        }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fusable(&tensor) {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let momentum = state.map(|s| s.momentum);
        let (p, momentum) = fused_step(lr, self.weight_decay, true, tensor, grad, momentum);
        (p, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

/// Adam (weight decay as an L2 term of the gradient), fused on burn-flex, burn's [`Adam`]
/// elsewhere.
///
/// [`Adam`]: burn::optim::Adam
#[derive(Clone)]
pub struct FusedAdam {
    weight_decay: f32,
    fallback: burn::optim::Adam,
}

impl FusedAdam {
    /// `weight_decay` 0 for none.
    pub fn new(weight_decay: f32) -> Self {
        Self {
            weight_decay,
            fallback: AdamConfig::new()
                .with_beta_1(BETA_1)
                .with_beta_2(BETA_2)
                .with_epsilon(EPSILON)
                .with_weight_decay(
                    (weight_decay > 0.0)
                        .then(|| burn::optim::decay::WeightDecayConfig::new(weight_decay)),
                )
                .build(),
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fusable(&tensor) {
            return self.fallback.step(lr, tensor, grad, state);
        }
        let momentum = state.map(|s| s.momentum);
        let (p, momentum) = fused_step(lr, self.weight_decay, false, tensor, grad, momentum);
        (p, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::Adam::to_device(state, device)
    }
}
