//! BatchNorm -> ReLU -> 2x2/stride-2 max-pool (or BatchNorm -> ReLU alone) as one burn-flex op
//! with its own backward.
//!
//! Composed from burn's ops, the end of every `ConvBlock` made about ten passes over the
//! convolution's output in each direction (statistics, centring, scaling, the pool's window
//! search and index tensor, the ReLU mask, and as many for the gradients), most of them
//! single-threaded. Here:
//!
//! - forward: one pass for the per-channel statistics (accumulated in f64) and one that
//!   normalises, pools and applies the ReLU, keeping one byte per pooled value (which of the four
//!   inputs won, and whether the ReLU let it through);
//! - backward: one pass over the pooled gradients for the two per-channel sums of the BatchNorm
//!   gradient, and one dense pass that writes the input gradient;
//!
//! both split over the rayon pool by `(image, channel)` plane. Values and gradients (input, gamma,
//! beta) and the running statistics are those of `batch_norm` -> `max_pool2d` -> `relu` to float
//! rounding, with burn's rules: the first of equal values wins the pool window, a NaN wins it and
//! passes the ReLU (tested in `tests/norm_relu_pool.rs`).
//!
//! Without the pool (`norm_relu`: the ResNet's residual blocks, the inner convolutions of a
//! CNN block) the same passes run with one mask byte per value.
//!
//! Other backends (ndarray, wgpu) never come here: the model picks this path only for tensors on
//! burn-flex ([`applies`]).

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
    nn::{pool::MaxPool2d, BatchNorm, PaddingConfig2d},
    tensor::{DType, Device, Tensor},
};
use rayon::prelude::*;

use super::flex_data::{dims4, tensor, values};

#[backend_extension(Flex, Autodiff)]
pub trait NormReluPoolOps: Backend {
    /// Per-channel mean and biased variance of `[N, C, H, W]` (never differentiated).
    fn channel_stats(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `relu(max_pool_2x2(gamma * (x - mean) / sqrt(var + epsilon) + beta))` (without the
    /// pool when `pool` is false) with the statistics given: the batch's own in training
    /// (`batch_stats`: the gradient then includes their dependence on `x`), else the running
    /// ones (constants, also on an autodiff device when the layer is frozen).
    #[allow(clippy::too_many_arguments)]
    fn norm_relu_pool(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        pool: bool,
        batch_stats: bool,
    ) -> FloatTensor<Self>;
}

/// Whether a block may take this path: f32 on burn-flex, a 2x2, stride-2 pool without padding,
/// and an input at least 2x2.
pub fn applies(x: &Tensor<4>, pool: &MaxPool2d) -> bool {
    let [_, _, h, w] = x.dims();
    applies_without_pool(x) && applies_to(pool, [h, w])
}

/// Whether `pool` is the 2x2, stride-2 pool without padding that the fused ops compute, on a
/// plane of at least 2x2.
pub fn applies_to(pool: &MaxPool2d, [h, w]: [usize; 2]) -> bool {
    pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && pool.padding == PaddingConfig2d::Valid
        && !pool.ceil_mode
        && h >= 2
        && w >= 2
}

/// Whether `relu(batch_norm(x))` may take this path: f32 on burn-flex.
pub fn applies_without_pool(x: &Tensor<4>) -> bool {
    x.dtype() == DType::F32 && x.device() == Device::flex()
}

/// `relu(pool.forward(batch_norm(norm, x)))` for a `[batch, channels, H, W]` input on burn-flex
/// (see [`applies`]). In training mode the batch statistics normalise and the running
/// statistics are updated as `BatchNorm` does (biased variance, `momentum`); otherwise the
/// running statistics normalise.
pub fn norm_relu_pool(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    fused(norm, x, true)
}

/// `relu(batch_norm(norm, x))` on burn-flex (see [`applies_without_pool`]), as
/// [`norm_relu_pool`] without the pool.
pub fn norm_relu(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    fused(norm, x, false)
}

fn fused(norm: &BatchNorm, x: Tensor<4>, pool: bool) -> Tensor<4> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    let (mean, var) = if training {
        // The statistics are read from the plain tensor: they are constants of the op, whose
        // backward accounts for their dependence on `x` itself.
        let (mean, var) =
            <Dispatch as NormReluPoolOps>::channel_stats(x.clone().inner().into_dispatch());
        let (mean, var) = (
            Tensor::<1>::from_dispatch(mean),
            Tensor::<1>::from_dispatch(var),
        );
        let m = norm.momentum;
        let device = x.device();
        let keep = |running: Tensor<1>, batch: Tensor<1>| {
            running
                .mul_scalar(1.0 - m)
                .add(Tensor::from_inner(batch).mul_scalar(m))
                .detach()
        };
        // An empty batch has no statistics (0 / 0) to fold into the running ones.
        if x.shape().num_elements() > 0 {
            norm.running_mean.update(keep(
                norm.running_mean.value_sync().to_device(&device),
                mean.clone(),
            ));
            norm.running_var.update(keep(
                norm.running_var.value_sync().to_device(&device),
                var.clone(),
            ));
        }
        (Tensor::from_inner(mean), Tensor::from_inner(var))
    } else {
        (norm.running_mean.value(), norm.running_var.value())
    };
    Tensor::from_dispatch(<Dispatch as NormReluPoolOps>::norm_relu_pool(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        norm.epsilon,
        pool,
        training,
    ))
}

/// Per-channel mean and biased variance, accumulated in f64 per plane.
fn stats(x: &[f32], [n, c, h, w]: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
    let plane = h * w;
    let sums: Vec<(f64, f64)> = x.par_chunks(plane.max(1)).map(plane_sums).collect();
    let count = (n * plane) as f64;
    let mut mean = vec![0f32; c];
    let mut var = vec![0f32; c];
    for ch in 0..c {
        let (s, q) = (0..n).fold((0.0, 0.0), |(s, q), i| {
            let (ps, pq) = sums[i * c + ch];
            (s + ps, q + pq)
        });
        let m = s / count;
        mean[ch] = m as f32;
        // Rounding can leave E[x^2] - E[x]^2 a little below 0; a NaN stays NaN (as burn's).
        let v = q / count - m * m;
        var[ch] = if v < 0.0 { 0.0 } else { v as f32 };
    }
    (mean, var)
}

/// The sum and the sum of squares of one plane, in f64 over eight independent lanes (one
/// running sum would make every addition wait for the previous one).
fn plane_sums(p: &[f32]) -> (f64, f64) {
    const LANES: usize = 8;
    let mut s = [0f64; LANES];
    let mut q = [0f64; LANES];
    let chunks = p.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            let v = f64::from(chunk[i]);
            s[i] += v;
            q[i] += v * v;
        }
    }
    let (mut sum, mut squares) = (s.iter().sum::<f64>(), q.iter().sum::<f64>());
    for &v in rest {
        let v = f64::from(v);
        sum += v;
        squares += v * v;
    }
    (sum, squares)
}

/// The per-channel factors: `(mean, gamma / sqrt(var + eps), beta)`.
struct Affine {
    mean: Vec<f32>,
    scale: Vec<f32>,
    beta: Vec<f32>,
}

impl Affine {
    fn new(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], epsilon: f64) -> Self {
        let eps = epsilon as f32;
        Self {
            mean: mean.to_vec(),
            scale: gamma
                .iter()
                .zip(var)
                .map(|(&g, &v)| g / (v + eps).sqrt())
                .collect(),
            beta: beta.to_vec(),
        }
    }
}

/// Bit 2 of a mask byte: the ReLU let the window's maximum through (bits 0-1: which input).
const ACTIVE: u8 = 4;

// The kernels below are written without data-dependent branches: which input wins a window and
// whether the ReLU passes it are coin flips on real activations, and a mispredicted branch per
// value made these passes several times slower than their memory traffic. Selects compile to
// blends, and the loops vectorise.

/// burn's ReLU: NaN passes (and so does its gradient).
#[inline(always)]
fn passes(y: f32) -> bool {
    y > 0.0 || y.is_nan()
}

/// The 2x2 window `[top-left, top-right, bottom-left, bottom-right]`'s maximum and which of the
/// four it is, by burn's pool rules: the first of equal values wins, a NaN always does.
#[inline(always)]
fn window_max(window: [f32; 4]) -> (f32, u8) {
    let (mut best, mut at) = (window[0], 0u8);
    for (k, &y) in window.iter().enumerate().skip(1) {
        let wins = y > best || y.is_nan();
        best = if wins { y } else { best };
        at = if wins { k as u8 } else { at };
    }
    (best, at)
}

/// What the forward pass hands the backward: per output, which input won the window and whether
/// the ReLU let it through, and (with the pool) that input's raw value.
struct Pooled {
    out: Vec<f32>,
    mask: Vec<u8>,
    /// Each window's winning input as it came in (empty without the pool: the input itself).
    winners: Vec<f32>,
}

/// Normalises, pools (2x2 windows when `f` is 2, none when 1) and applies the ReLU:
/// `[N, C, H/f, W/f]` values, one mask byte each and, with the pool, the winning inputs.
fn forward(x: &[f32], [n, c, h, w]: [usize; 4], a: &Affine, f: usize) -> Pooled {
    let (h2, w2) = (h / f, w / f);
    let pooled = (h2 * w2).max(1);
    let mut out = vec![0f32; n * c * h2 * w2];
    let mut mask = vec![0u8; n * c * h2 * w2];
    let norm = |p: usize| {
        let ch = p % c;
        let (mean, scale, beta) = (a.mean[ch], a.scale[ch], a.beta[ch]);
        move |v: f32| (v - mean) * scale + beta
    };
    let planes = out.par_chunks_mut(pooled).zip(mask.par_chunks_mut(pooled));
    if f == 1 {
        planes.enumerate().for_each(|(p, (out, mask))| {
            let norm = norm(p);
            let plane = &x[p * h * w..(p + 1) * h * w];
            for ((out, mask), &v) in out.iter_mut().zip(mask.iter_mut()).zip(plane) {
                let y = norm(v);
                let on = passes(y);
                *out = if on { y } else { 0.0 };
                *mask = if on { ACTIVE } else { 0 };
            }
        });
        let winners = Vec::new();
        return Pooled { out, mask, winners };
    }
    let mut winners = vec![0f32; n * c * h2 * w2];
    planes
        .zip(winners.par_chunks_mut(pooled))
        .enumerate()
        .for_each(|(p, ((out, mask), winners))| {
            let norm = norm(p);
            let plane = &x[p * h * w..(p + 1) * h * w];
            let rows = out
                .chunks_mut(w2)
                .zip(mask.chunks_mut(w2))
                .zip(winners.chunks_mut(w2));
            for (oh, ((out, mask), winners)) in rows.enumerate() {
                let top = &plane[2 * oh * w..][..2 * w2];
                let bottom = &plane[(2 * oh + 1) * w..][..2 * w2];
                let outputs = out.iter_mut().zip(mask.iter_mut()).zip(winners.iter_mut());
                for (ow, ((out, mask), winner)) in outputs.enumerate() {
                    let raw = [
                        top[2 * ow],
                        top[2 * ow + 1],
                        bottom[2 * ow],
                        bottom[2 * ow + 1],
                    ];
                    let (best, at) = window_max(raw.map(norm));
                    let on = passes(best);
                    *out = if on { best } else { 0.0 };
                    *mask = at | if on { ACTIVE } else { 0 };
                    *winner = select(raw, at);
                }
            }
        });
    Pooled { out, mask, winners }
}

/// `window[at]` without a branch on `at` (0..4).
#[inline(always)]
fn select(window: [f32; 4], at: u8) -> f32 {
    let right = at & 1 != 0;
    let upper = if right { window[1] } else { window[0] };
    let lower = if right { window[3] } else { window[2] };
    if at & 2 == 0 {
        upper
    } else {
        lower
    }
}

/// The output gradient where the ReLU let the value through, zero elsewhere.
#[inline(always)]
fn gated(g: f32, mask: u8) -> f32 {
    if mask & ACTIVE != 0 {
        g
    } else {
        0.0
    }
}

/// `(sum dy, sum dy * x_hat)` over one plane's outputs that the ReLU let through, where
/// `x_hat = (v - mean) * inv_std` of each output's input `v` (its window's winner), in f64 over
/// eight independent lanes (one running sum would make every addition wait for the last).
fn gradient_sums(g: &[f32], mask: &[u8], v: &[f32], [mean, inv_std]: [f32; 2]) -> (f64, f64) {
    const LANES: usize = 8;
    let mut s = [0f64; LANES];
    let mut q = [0f64; LANES];
    let (gc, mc, vc) = (
        g.chunks_exact(LANES),
        mask.chunks_exact(LANES),
        v.chunks_exact(LANES),
    );
    let rest = (gc.remainder(), mc.remainder(), vc.remainder());
    for ((g, m), v) in gc.zip(mc).zip(vc) {
        for i in 0..LANES {
            let g = f64::from(gated(g[i], m[i]));
            s[i] += g;
            q[i] += g * f64::from((v[i] - mean) * inv_std);
        }
    }
    let (mut sum, mut dot) = (s.iter().sum::<f64>(), q.iter().sum::<f64>());
    for ((&g, &m), &v) in rest.0.iter().zip(rest.1).zip(rest.2) {
        let g = f64::from(gated(g, m));
        sum += g;
        dot += g * f64::from((v - mean) * inv_std);
    }
    (sum, dot)
}

/// One plane's input gradient, written over the plane's input `x`: `x * slope + offset`
/// everywhere (the statistics' share), plus `k * dy` on each window's winner where the ReLU let
/// it through.
fn input_gradient(
    x: &mut [f32],
    g: &[f32],
    mask: &[u8],
    [w2, w]: [usize; 2],
    f: usize,
    [slope, offset, k]: [f32; 3],
) {
    let share = |v: f32| v * slope + offset;
    if f == 1 {
        for ((x, &g), &m) in x.iter_mut().zip(g).zip(mask) {
            *x = share(*x) + gated(k * g, m);
        }
        return;
    }
    let h2 = g.len() / w2.max(1);
    let (windows, rest) = x.split_at_mut(2 * h2 * w);
    for (rows, (g, mask)) in windows
        .chunks_mut(2 * w)
        .zip(g.chunks(w2).zip(mask.chunks(w2)))
    {
        let (upper, lower) = rows.split_at_mut(w);
        let (upper_pairs, lower_pairs) = (upper.chunks_exact_mut(2), lower.chunks_exact_mut(2));
        for ((up, low), (&g, &m)) in upper_pairs.zip(lower_pairs).zip(g.iter().zip(mask)) {
            let kg = gated(k * g, m);
            let at = m & 3;
            let add = |k: u8| if at == k { kg } else { 0.0 };
            up[0] = share(up[0]) + add(0);
            up[1] = share(up[1]) + add(1);
            low[0] = share(low[0]) + add(2);
            low[1] = share(low[1]) + add(3);
        }
        // An odd width's last column belongs to no window: the statistics' share only.
        for v in upper[2 * w2..].iter_mut().chain(&mut lower[2 * w2..]) {
            *v = share(*v);
        }
    }
    // So does an odd height's last row.
    for v in rest {
        *v = share(*v);
    }
}

/// `t` as a contiguous tensor that owns its storage alone, starting at its first element: `t`
/// itself when it already is one, else a copy.
fn into_unique_contiguous(t: FlexTensor) -> FlexTensor {
    let whole = t
        .as_slice::<f32>()
        .is_some_and(|v| v.len() == t.storage::<f32>().len());
    if whole && t.is_unique() {
        t
    } else {
        let dims = t.layout().shape().clone();
        tensor(values(&t).into_owned(), dims)
    }
}

/// The pool factor: 2 with the pool, 1 without.
fn factor(pool: bool) -> usize {
    if pool {
        2
    } else {
        1
    }
}

impl NormReluPoolOps for Flex {
    fn channel_stats(x: FlexTensor) -> (FlexTensor, FlexTensor) {
        let dims = dims4(&x);
        let (mean, var) = stats(&values(&x), dims);
        (tensor(mean, [dims[1]]), tensor(var, [dims[1]]))
    }

    fn norm_relu_pool(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
        pool: bool,
        _batch_stats: bool,
    ) -> FlexTensor {
        let f = factor(pool);
        let dims = dims4(&x);
        let affine = Affine::new(
            &values(&gamma),
            &values(&beta),
            &values(&mean),
            &values(&var),
            epsilon,
        );
        let out = forward(&values(&x), dims, &affine, f).out;
        tensor(out, [dims[0], dims[1], dims[2] / f, dims[3] / f])
    }
}

/// What the backward pass needs: the input, the statistics and gamma, and the pool's mask.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    dims: [usize; 4],
    gamma: Vec<f32>,
    mean: Vec<f32>,
    /// `1 / sqrt(var + eps)` per channel.
    inv_std: Vec<f32>,
    mask: Vec<u8>,
    /// With the pool: each window's winning input (see [`Pooled`]).
    winners: Vec<f32>,
    /// The pool factor (1: no pool).
    factor: usize,
    /// The statistics are the batch's own (they then depend on `x`), not constants.
    batch_stats: bool,
}

#[derive(Debug)]
struct NormReluPoolBackward;

impl Backward<Flex, 3> for NormReluPoolBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let [n, c, h, w] = s.dims;
        let f = s.factor;
        let (h2, w2) = (h / f, w / f);
        let pooled = h2 * w2;
        let g = values(&grad);
        let x = values(&s.x);

        // Per plane: the sums of dy and dy * x_hat over the values that reached the output.
        let winners = if f == 1 { &x[..] } else { &s.winners[..] };
        let sums: Vec<(f64, f64)> = g
            .par_chunks(pooled.max(1))
            .zip(s.mask.par_chunks(pooled.max(1)))
            .zip(winners.par_chunks(pooled.max(1)))
            .enumerate()
            .map(|(p, ((g, mask), v))| {
                let ch = p % c;
                gradient_sums(g, mask, v, [s.mean[ch], s.inv_std[ch]])
            })
            .collect();
        let mut d_beta = vec![0f64; c];
        let mut d_gamma = vec![0f64; c];
        for (p, (b, gm)) in sums.iter().enumerate() {
            d_beta[p % c] += b;
            d_gamma[p % c] += gm;
        }

        if let Some(node) = node_x {
            let count = (n * h * w) as f64;
            let mean_dy: Vec<f32> = d_beta.iter().map(|v| (v / count) as f32).collect();
            let mean_dy_xhat: Vec<f32> = d_gamma.iter().map(|v| (v / count) as f32).collect();
            // The input gradient overwrites the saved input, which nothing else reads once this
            // backward runs (a copy when something still shares it).
            drop(x);
            let mut dx = into_unique_contiguous(s.x);
            dx.storage_mut::<f32>()
                .par_chunks_mut((h * w).max(1))
                .enumerate()
                .for_each(|(p, plane)| {
                    let ch = p % c;
                    let k = s.gamma[ch] * s.inv_std[ch];
                    // Every input gets the statistics' share, k * (-mean_dy - x_hat *
                    // mean_dy_xhat), an affine function of x; the pool's winners also get k * dy.
                    // With constant (running) statistics there is no such share.
                    let (mean, inv_std) = (s.mean[ch], s.inv_std[ch]);
                    let (slope, offset) = if s.batch_stats {
                        (
                            -k * inv_std * mean_dy_xhat[ch],
                            k * (mean * inv_std * mean_dy_xhat[ch] - mean_dy[ch]),
                        )
                    } else {
                        (0.0, 0.0)
                    };
                    let g = &g[p * pooled..(p + 1) * pooled];
                    let mask = &s.mask[p * pooled..(p + 1) * pooled];
                    input_gradient(plane, g, mask, [w2, w], f, [slope, offset, k]);
                });
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            let v = d_gamma.iter().map(|&v| v as f32).collect();
            grads.register::<Flex>(node.id, tensor(v, [c]));
        }
        if let Some(node) = node_beta {
            let v = d_beta.iter().map(|&v| v as f32).collect();
            grads.register::<Flex>(node.id, tensor(v, [c]));
        }
    }
}

impl<C: CheckpointStrategy> NormReluPoolOps for Autodiff<Flex, C> {
    fn channel_stats(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (mean, var) = Flex::channel_stats(x.into_primitive());
        (
            FloatTensor::<Self>::new(mean),
            FloatTensor::<Self>::new(var),
        )
    }

    fn norm_relu_pool(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        pool: bool,
        batch_stats: bool,
    ) -> FloatTensor<Self> {
        let f = factor(pool);
        match NormReluPoolBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let xp = x.primitive().clone();
                let dims = dims4(&xp);
                let gamma = values(gamma.primitive()).into_owned();
                let (mean, var) = (
                    values(mean.primitive()).into_owned(),
                    values(var.primitive()).into_owned(),
                );
                let affine = Affine::new(&gamma, &values(beta.primitive()), &mean, &var, epsilon);
                let Pooled { out, mask, winners } = forward(&values(&xp), dims, &affine, f);
                let eps = epsilon as f32;
                let inv_std = var.iter().map(|&v| 1.0 / (v + eps).sqrt()).collect();
                let saved = Saved {
                    x: xp,
                    dims,
                    gamma,
                    mean,
                    inv_std,
                    mask,
                    winners,
                    factor: f,
                    batch_stats,
                };
                prep.finish(
                    saved,
                    tensor(out, [dims[0], dims[1], dims[2] / f, dims[3] / f]),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::norm_relu_pool(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                mean.into_primitive(),
                var.into_primitive(),
                epsilon,
                pool,
                batch_stats,
            )),
        }
    }
}
