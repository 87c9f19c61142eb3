//! A `Linear` layer on burn-flex: `y = x W + b` as one gemm whose output starts as the bias,
//! split into one block per thread ([`super::matrix::gemm_split`]), and a backward of the same
//! gemms (`dx = dy W^T`, `dW = x^T dy`, `db` the column sums of `dy`).
//!
//! burn-flex hands such products to the `gemm` crate's own threading, which keeps the MLP's
//! `[64, 12288] x [12288, 512]` first layer mostly on one core, and adds the bias in a second
//! pass. Values and gradients equal burn's `Linear` to float rounding (tested in
//! `tests/linear.rs`). Other backends never come here ([`applies`]).

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
            Autodiff,
        },
        backend_extension,
        flex::FlexTensor,
        tensor::FloatTensor,
        Backend, Dispatch, Flex,
    },
    nn::Linear,
    tensor::{DType, Device, Tensor},
};

use super::{
    flex_data::{dims2, tensor, values},
    matrix::{gemm_split, View},
};

#[backend_extension(Flex, Autodiff)]
pub trait LinearOps: Backend {
    /// `x [m, k] x weight [k, n] + bias [n]`.
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Whether `layer` applied to `x` may take this path: f32 on burn-flex, with a bias.
pub fn applies(layer: &Linear, x: &Tensor<2>) -> bool {
    x.dtype() == DType::F32 && x.device() == Device::flex() && layer.bias.is_some()
}

/// `layer.forward(x)` by the fastest path with its values: catdog's op where it [`applies`],
/// burn's elsewhere.
pub fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    match &layer.bias {
        Some(bias) if applies(layer, &x) => Tensor::from_dispatch(<Dispatch as LinearOps>::linear(
            x.into_dispatch(),
            layer.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
        )),
        _ => layer.forward(x),
    }
}

impl LinearOps for Flex {
    fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let ([m, k], [rows, n]) = (dims2(&x), dims2(&weight));
        let bias = values(&bias);
        assert!(
            rows == k && bias.len() == n,
            "linear: an input of shape [{m}, {k}] needs a weight of shape [{k}, out] and a bias of \
             [out], not [{rows}, {n}] and [{}]",
            bias.len()
        );
        let mut y = Vec::with_capacity(m * n);
        for _ in 0..m {
            y.extend_from_slice(&bias);
        }
        gemm_split(
            &mut y,
            n,
            View::row_major(&values(&x), m, k, k),
            View::row_major(&values(&weight), k, n, n),
            true,
        );
        tensor(y, [m, n])
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let ([m, k], [_, n]) = (dims2(&x), dims2(&weight));
        let g_values = values(&grad);
        let g = View::row_major(&g_values, m, n, n);
        if let Some(node) = node_w {
            let mut dw = vec![0f32; k * n];
            gemm_split(
                &mut dw,
                n,
                View::row_major(&values(&x), m, k, k).transposed(),
                g,
                false,
            );
            grads.register::<Flex>(node.id, tensor(dw, [k, n]));
        }
        if let Some(node) = node_x {
            let mut dx = vec![0f32; m * k];
            gemm_split(
                &mut dx,
                k,
                g,
                View::row_major(&values(&weight), k, n, n).transposed(),
                false,
            );
            grads.register::<Flex>(node.id, tensor(dx, [m, k]));
        }
        if let Some(node) = node_b {
            let mut db = vec![0f32; n];
            for row in g_values.chunks_exact(n) {
                for (d, v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
            grads.register::<Flex>(node.id, tensor(db, [n]));
        }
    }
}

impl<C: CheckpointStrategy> LinearOps for Autodiff<Flex, C> {
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let out = Flex::linear(x.clone(), weight.clone(), bias.into_primitive());
                prep.finish((x, weight), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::linear(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}
