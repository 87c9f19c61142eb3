//! Reading and making burn-flex tensors in the hand-written kernels ([`super::conv3x3`],
//! [`super::linear`], [`super::norm_relu_pool`]).

use std::borrow::Cow;

use burn::{
    backend::flex::FlexTensor,
    tensor::{Shape, TensorData},
};

/// The f32 values of a tensor in logical order: borrowed when contiguous, else copied once
/// (incoming gradients may be strided views).
pub(crate) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

/// A tensor of `values` in row-major order.
pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// The `[rows, cols]` of a matrix.
pub(crate) fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape();
    [s[0], s[1]]
}

/// The shape of a `[N, C, H, W]` tensor.
pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}
