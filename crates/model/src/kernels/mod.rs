//! catdog's CPU kernels on burn-flex: the math on `f32` slices (shapes in each function's
//! comment), each op's backward beside its forward, and the burn backend extension that makes
//! it an autodiff op. Which layer uses a kernel, and when burn's own op runs instead, is
//! decided in the layer files.

pub mod adam;
pub mod conv3x3;
pub mod epilogue;
mod flex_data;
pub mod linear;
pub(crate) mod matrix;
pub mod norm_relu_pool;
pub mod precision;
pub mod winograd;
mod workspace;
