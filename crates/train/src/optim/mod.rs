//! How weights change: optimisers and schedules, the loss they minimise, weight averaging,
//! Lookahead and the whitened first convolution.

pub(crate) mod ema;
pub mod fused_adam;
pub(crate) mod lookahead;
pub mod loss;
pub(crate) mod model_values;
mod optimizer;
pub mod whiten;

pub use optimizer::*;
