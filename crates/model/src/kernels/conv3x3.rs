//! The CNN's 3x3, stride-1, padding-1 convolution on burn-flex: forward, input gradient and
//! weight gradient as gemms over im2col columns.
//!
//! burn computes a convolution's weight gradient as another convolution whose gemm is only 9
//! columns wide and re-reads the whole output gradient once per input channel (most of a conv
//! layer's time in `examples/op_profile.rs`; measurements in docs/performance.md). Here, with
//! the batch split into chunks ([`super::workspace::chunking`]), one rayon task per chunk, each
//! keeping its buffers for its next chunk (the `gemm` crate, as burn-flex uses):
//!
//! - forward: the chunk's columns `im2col(X) [in*9, pixels]` once, then per image
//!   `Y [out, pixels] = W [out, in*9] x columns`, written straight into the output;
//! - weight gradient: per image `dW^T [in*9, out] += columns x dY^T [pixels, out]`, read in
//!   place from the output gradient, into the task's own accumulator, the accumulators added
//!   and transposed at the end (this way round the `gemm` crate repacks the small output
//!   gradient instead of the columns, 9 x in/out times larger);
//! - input gradient: per image `W^T [in*9, out] x dY [out, pixels]`, added back onto the
//!   shifted input positions (col2im).
//!
//! Below [`GROUP_BELOW_PIXELS`] pixels per image, each gemm covers the task's whole chunk
//! instead of one image. Forward and input gradient of the layers where it measured faster
//! (planes of 12x12 and up, 32 channels and up) go through Winograd's F(2x2, 3x3) instead
//! ([`super::winograd`]).
//!
//! Values and both gradients equal burn's convolution to float rounding (tested in
//! `tests/conv3x3.rs`). Other backends never come here ([`applies`]).

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
    nn::{conv::Conv2d, BatchNorm, PaddingConfig2d},
    tensor::{DType, Device, Tensor},
};
use rayon::prelude::*;
use std::sync::Mutex;

use super::{
    epilogue::Epilogue,
    flex_data::{dims4, tensor, values},
    matrix::{assume_written, gemm_into, gemm_overwrite, spare_slots, View},
    winograd,
    workspace::{chunking, gemm_threads, kernel_threads, side_by_side, with_columns, with_grouped},
};

/// Below this many pixels per image, a task multiplies its whole chunk in one gemm (its output
/// or output gradient gathered into, or scattered from, a `[out, images*pixels]` buffer)
/// instead of one gemm per image. A ResNet's 6x6 and 12x12 stages made per-image gemms of 36
/// or 144 columns (or a depth of 36 for the weight gradient): the `gemm` crate repacked the
/// whole weight for every such sliver and ran mostly its edge kernels.
pub const GROUP_BELOW_PIXELS: usize = 256;

#[backend_extension(Flex, Autodiff)]
pub trait Conv3x3Ops: Backend {
    /// `[N, in, H, W]` convolved with `[out, in, 3, 3]`, stride 1, padding 1, no bias.
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether `conv` applied to `x` may take this path: f32 on burn-flex, a 3x3, stride-1,
/// padding-1, undilated, ungrouped convolution without bias.
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    x.dtype() == DType::F32
        && x.device() == Device::flex()
        && conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.padding == PaddingConfig2d::Explicit(1, 1, 1, 1)
        && conv.bias.is_none()
}

/// `conv.forward(x)` for a convolution that [`applies`].
pub fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as Conv3x3Ops>::conv3x3(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
    ))
}

impl Conv3x3Ops for Flex {
    fn conv3x3(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let dims = dims4(&x);
        let w = dims4(&weight);
        assert!(
            w[1] == dims[1] && w[2] == 3 && w[3] == 3,
            "conv3x3: an input of shape {dims:?} needs a weight of shape [out, {}, 3, 3], not \
             {w:?}",
            dims[1]
        );
        let cout = w[0];
        let y = forward(&values(&x), &values(&weight), dims, cout);
        tensor(y, [dims[0], cout, dims[2], dims[3]])
    }
}

#[backend_extension(Flex)]
pub trait Conv3x3InferenceOps: Backend {
    /// `relu(conv3x3(x, weight) * scale + shift)`, 2x2-max-pooled when `pool`: `[N, in, H, W]`,
    /// `[out, in, 3, 3]`, `[out]`, `[out]` -> `[N, out, H, W]` (or `[N, out, H/2, W/2]`).
    fn conv3x3_affine_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        pool: bool,
    ) -> FloatTensor<Self>;
}

/// Whether `relu(norm(conv(x)))` (pooled 2x2 when `pool`) may take [`conv3x3_norm_relu`]: a
/// convolution that [`applies`] on the plain (not autodiff) burn-flex device, where BatchNorm
/// normalises with its running statistics.
pub fn inference_applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    !x.device().is_autodiff() && applies(conv, x)
}

/// `relu(norm(conv(x)))`, max-pooled 2x2/stride 2 when `pool`, for a convolution that
/// [`inference_applies`]: the BatchNorm's running statistics become a per-channel scale and
/// shift applied, with the ReLU and the pool, to each chunk of the convolution's output as it
/// is written ([`forward_inference`]).
pub fn conv3x3_norm_relu(conv: &Conv2d, norm: &BatchNorm, x: Tensor<4>, pool: bool) -> Tensor<4> {
    // scale = gamma / sqrt(var + eps), shift = beta - mean * scale: `[out]` each, so cheap to
    // derive on every call.
    let scale = norm.gamma.val() / (norm.running_var.value() + norm.epsilon).sqrt();
    let shift = norm.beta.val() - norm.running_mean.value() * scale.clone();
    Tensor::from_dispatch(<Dispatch as Conv3x3InferenceOps>::conv3x3_affine_relu(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        pool,
    ))
}

impl Conv3x3InferenceOps for Flex {
    fn conv3x3_affine_relu(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        pool: bool,
    ) -> FlexTensor {
        let dims @ [n, cin, h, w] = dims4(&x);
        let wd = dims4(&weight);
        let cout = wd[0];
        let (scale, shift) = (values(&scale), values(&shift));
        assert!(
            wd[1] == cin && wd[2] == 3 && wd[3] == 3 && scale.len() == cout && shift.len() == cout,
            "conv3x3_affine_relu: an input of shape {dims:?} needs a weight of shape [out, {cin}, \
             3, 3] and [out] scale and shift, not {wd:?}, [{}] and [{}]",
            scale.len(),
            shift.len()
        );
        let epilogue = Epilogue {
            scale: &scale,
            shift: &shift,
            pool,
        };
        let y = forward_inference(&values(&x), &values(&weight), dims, cout, &epilogue);
        let f = if pool { 2 } else { 1 };
        tensor(y, [n, cout, h / f, w / f])
    }
}

/// Output channels per part of a convolution split by output channel instead of by image: for a
/// single image (a batch cannot keep the threads busy), a part per thread of at least
/// [`MIN_PART_CHANNELS`] channels; `None` where the split by image applies.
fn channel_parts(n: usize, cout: usize) -> Option<usize> {
    let threads = kernel_threads();
    let per_part = cout.div_ceil(threads).next_multiple_of(MIN_PART_CHANNELS);
    (n == 1 && threads > 1 && per_part < cout).then_some(per_part)
}

/// The smallest part of a split by output channel (a multiple of the gemm's row blocks).
const MIN_PART_CHANNELS: usize = 8;

/// [`forward_inference`] of one image split into parts of `per_part` output channels, each a
/// convolution of its own on one thread (the input's transform is repeated per part; the
/// weights, the epilogue's factors and the output are split). With one image the output of a
/// channel range is one contiguous block, pooled or not.
fn by_channel_parts(
    x: &[f32],
    weight: &[f32],
    dims @ [_, cin, h, w]: [usize; 4],
    cout: usize,
    epilogue: &Epilogue,
    per_part: usize,
) -> Vec<f32> {
    let per_channel = epilogue.output_len([1, h, w]);
    let mut out = vec![0f32; cout * per_channel];
    out.par_chunks_mut(per_part * per_channel)
        .enumerate()
        .for_each(|(part, out)| {
            let channels = part * per_part..(part * per_part + out.len() / per_channel.max(1));
            let part_epilogue = Epilogue {
                scale: &epilogue.scale[channels.clone()],
                shift: &epilogue.shift[channels.clone()],
                pool: epilogue.pool,
            };
            let part_weight = &weight[channels.start * cin * 9..channels.end * cin * 9];
            let y = side_by_side(|| {
                forward_inference(x, part_weight, dims, channels.len(), &part_epilogue)
            });
            out.copy_from_slice(&y);
        });
    out
}

/// Writes `plane [h, w]` shifted by `(dy, dx)` in -1..=1 into `dst [h, w]` (element `(y, x)`
/// is `plane[y + dy, x + dx]`), zero where that falls outside.
///
/// Row-major, the shift is one offset `dy * w + dx` of the whole plane: one contiguous copy
/// (rows that fall outside land in the zeroed ends), then the column that wrapped round from
/// the neighbouring row is zeroed. Row-by-row copies cost a call per row, most of the time
/// for rows of 6 to 24 pixels.
#[inline]
fn shifted_plane(dst: &mut [f32], plane: &[f32], w: usize, dy: isize, dx: isize) {
    let hw = plane.len();
    let shift = dy * w as isize + dx;
    let lo = (-shift).clamp(0, hw as isize) as usize;
    let hi = (hw as isize - shift).clamp(lo as isize, hw as isize) as usize;
    dst[..lo].fill(0.0);
    if lo < hi {
        let from = (lo as isize + shift) as usize;
        dst[lo..hi].copy_from_slice(&plane[from..from + (hi - lo)]);
    }
    dst[hi..].fill(0.0);
    match dx {
        -1 => dst.iter_mut().step_by(w).for_each(|v| *v = 0.0),
        1 => dst[w - 1..].iter_mut().step_by(w).for_each(|v| *v = 0.0),
        _ => {}
    }
}

/// Lays out `images` of `x [n, in, h, w]` as the columns of a 3x3, padding-1 convolution:
/// `columns [in*9, images*h*w]`, row `(c, ky, kx)` holding channel `c` shifted by
/// `(ky-1, kx-1)`, zero where that falls outside, the images side by side. Every element is
/// written, so a reused buffer is never cleared first.
fn im2col(
    x: &[f32],
    [_, cin, h, w]: [usize; 4],
    images: std::ops::Range<usize>,
    columns: &mut Vec<f32>,
) {
    let hw = h * w;
    let len = cin * 9 * images.len() * hw;
    if columns.len() < len {
        columns.resize(len, 0.0);
    }
    let mut blocks = columns[..len].chunks_exact_mut(hw);
    for c in 0..cin {
        for ky in 0..3isize {
            for kx in 0..3isize {
                for image in images.clone() {
                    let plane = &x[(image * cin + c) * hw..(image * cin + c + 1) * hw];
                    if let Some(dst) = blocks.next() {
                        shifted_plane(dst, plane, w, ky - 1, kx - 1);
                    }
                }
            }
        }
    }
}

/// Whether images of `pixels` pixels are multiplied a whole chunk at a time.
fn grouped(pixels: usize) -> bool {
    pixels < GROUP_BELOW_PIXELS
}

/// Copies the `[out, pixels]` blocks of `images` consecutive images of `g` (starting at
/// `g[0]`) side by side into `dst [out, images*pixels]`.
fn gather(g: &[f32], images: usize, cout: usize, hw: usize, dst: &mut Vec<f32>) {
    let k = images * hw;
    dst.clear();
    dst.reserve(cout * k);
    for co in 0..cout {
        for j in 0..images {
            let start = (j * cout + co) * hw;
            dst.extend_from_slice(&g[start..start + hw]);
        }
    }
}

/// Whether a convolution of an input `[n, in, h, w]` into `out` channels has nothing to sum:
/// every result (output, input gradient, weight gradient) is then all zeros, and the kernels,
/// whose chunks are sized by these dimensions, are not called.
fn is_empty([n, cin, h, w]: [usize; 4], cout: usize) -> bool {
    n == 0 || cin == 0 || h == 0 || w == 0 || cout == 0
}

/// `y [n, out, h, w]` of a 3x3, stride-1, padding-1 convolution of `x [n, in, h, w]` by
/// `weight [out, in, 3, 3]`: by Winograd's F(2x2, 3x3) where that measured faster
/// ([`winograd::pays`]), else as gemms over im2col columns.
pub fn forward(
    x: &[f32],
    weight: &[f32],
    dims @ [n, cin, h, w]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    if is_empty(dims, cout) {
        return vec![0.0; n * cout * h * w];
    }
    if winograd::pays(cin, [h, w]) {
        winograd::forward(x, weight, dims, cout, &|_, _| {})
    } else {
        im2col_forward(x, weight, dims, cout, &|_, _| {})
    }
}

/// What a convolution does with each chunk of its output once the chunk is written: called
/// with the chunk's first image and its `[images, out, h, w]` values, while they are in cache.
pub type ChunkFinish<'a> = dyn Fn(usize, &mut [f32]) + Sync + 'a;

/// `epilogue(conv(x))` for inference: [`forward`]'s convolution, each chunk of its output
/// passed through `epilogue` (affine, ReLU, optional pool) as soon as it is written.
pub fn forward_inference(
    x: &[f32],
    weight: &[f32],
    dims @ [n, cin, h, w]: [usize; 4],
    cout: usize,
    epilogue: &Epilogue,
) -> Vec<f32> {
    let per_image = epilogue.output_len([cout, h, w]);
    if is_empty(dims, cout) {
        return vec![0.0; n * per_image];
    }
    if let Some(parts) = channel_parts(n, cout) {
        return by_channel_parts(x, weight, dims, cout, epilogue, parts);
    }
    // With the pool the result is a buffer of its own, one part per chunk of the convolution.
    let (per_chunk, _) = chunking(n);
    let mut pooled = if epilogue.pool {
        vec![0f32; n * per_image]
    } else {
        Vec::new()
    };
    let parts: Vec<Mutex<&mut [f32]>> = pooled
        .chunks_mut((per_chunk * per_image).max(1))
        .map(Mutex::new)
        .collect();
    let finish = |first: usize, y: &mut [f32]| match parts.get(first / per_chunk) {
        Some(part) => {
            let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
            epilogue.apply(y, [cout, h, w], &mut part);
        }
        None => epilogue.apply(y, [cout, h, w], &mut []),
    };
    let y = if winograd::pays(cin, [h, w]) {
        winograd::forward(x, weight, dims, cout, &finish)
    } else {
        im2col_forward(x, weight, dims, cout, &finish)
    };
    drop(parts);
    if epilogue.pool {
        pooled
    } else {
        y
    }
}

/// [`forward`] through im2col: per task, the chunk's columns once, then one gemm per image
/// written straight into its output.
pub fn im2col_forward(
    x: &[f32],
    weight: &[f32],
    [n, cin, h, w]: [usize; 4],
    cout: usize,
    finish: &ChunkFinish,
) -> Vec<f32> {
    let hw = h * w;
    let rows = cin * 9;
    let (per_chunk, chunks) = chunking(n);
    let len = n * cout * hw;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    spare_slots(&mut y, len)
        .par_chunks_mut(per_chunk * cout * hw)
        .enumerate()
        .for_each(|(chunk, out)| {
            with_columns(|columns| {
                let first = chunk * per_chunk;
                let images = out.len() / (cout * hw);
                let k = images * hw;
                im2col(x, [n, cin, h, w], first..first + images, columns);
                let weight = View::row_major(weight, cout, rows, rows);
                if grouped(hw) {
                    with_grouped(|product| {
                        // product [out, images*hw] = weight [out, rows] x columns, then each
                        // image's columns to its own [out, hw] block.
                        product.clear();
                        gemm_overwrite(
                            spare_slots(product, cout * k),
                            k,
                            weight,
                            View::row_major(columns, rows, k, k),
                            gemm_threads(chunks),
                        );
                        // SAFETY: the gemm wrote all `cout * k` elements.
                        unsafe { product.set_len(cout * k) };
                        for (j, y) in out.chunks_mut(cout * hw).enumerate() {
                            for (co, y) in y.chunks_mut(hw).enumerate() {
                                let src = &product[co * k + j * hw..co * k + (j + 1) * hw];
                                for (d, s) in y.iter_mut().zip(src) {
                                    d.write(*s);
                                }
                            }
                        }
                    });
                } else {
                    for (j, y) in out.chunks_mut(cout * hw).enumerate() {
                        // y_j [out, hw] = weight [out, rows] x columns[:, j*hw..(j+1)*hw].
                        gemm_overwrite(
                            y,
                            hw,
                            weight,
                            View::row_major(&columns[j * hw..], rows, hw, k),
                            gemm_threads(chunks),
                        );
                    }
                }
                // SAFETY: each image's `[out, hw]` block was written whole, by its gemm or from
                // the chunk's product.
                finish(first, unsafe { assume_written(out) });
            })
        });
    // SAFETY: the chunks cover all `len` elements, and each image's `[out, hw]` block was
    // written whole, by its gemm or from the chunk's product.
    unsafe { y.set_len(len) };
    y
}

/// Adds row `src` into `dst` shifted by `dx` in -1..=1 (`dst[x + dx] += src[x]` where that is
/// inside): the transpose of [`shifted_row`].
#[inline]
fn add_shifted_row(dst: &mut [f32], src: &[f32], dx: isize) {
    let w = dst.len();
    let pairs: (&mut [f32], &[f32]) = match dx {
        -1 => (&mut dst[..w - 1], &src[1..]),
        0 => (dst, src),
        _ => (&mut dst[1..], &src[..w - 1]),
    };
    for (d, s) in pairs.0.iter_mut().zip(pairs.1) {
        *d += s;
    }
}

/// Adds the columns' gradient `columns [in*9, k]` of one image, whose pixels start at column
/// `offset`, back onto the shifted input positions of its `dx [in, h, w]` (col2im).
fn col2im(columns: &[f32], k: usize, offset: usize, dx: &mut [f32], [cin, h, w]: [usize; 3]) {
    let hw = h * w;
    for c in 0..cin {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for ky in 0..3isize {
            for kx in 0..3isize {
                let row = (c * 9 + (ky * 3 + kx) as usize) * k + offset;
                for y in 0..h {
                    let sy = y as isize + ky - 1;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let sy = sy as usize;
                    add_shifted_row(
                        &mut plane[sy * w..(sy + 1) * w],
                        &columns[row + y * w..row + (y + 1) * w],
                        kx - 1,
                    );
                }
            }
        }
    }
}

/// `dx [n, in, h, w]` of a 3x3, stride-1, padding-1 convolution from its output gradient
/// `g [n, out, h, w]` and `weight [out, in, 3, 3]`: the convolution of `g` by the transposed
/// filters by Winograd's F(2x2, 3x3) where that measured faster ([`winograd::pays`], whose
/// gemms are `out` deep here), else through im2col.
pub fn input_grad(
    g: &[f32],
    weight: &[f32],
    dims @ [n, cin, h, w]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    if is_empty(dims, cout) {
        return vec![0.0; n * cin * h * w];
    }
    if winograd::pays(cout, [h, w]) {
        winograd::input_grad(g, weight, dims, cout)
    } else {
        im2col_input_grad(g, weight, dims, cout)
    }
}

/// [`input_grad`] through im2col: per image (or per chunk, gathered, below
/// [`GROUP_BELOW_PIXELS`]), the columns' gradient `weight^T [in*9, out] x g [out, pixels]` as
/// one gemm into a buffer the task reuses, then added back onto the shifted input positions
/// (col2im).
pub fn im2col_input_grad(
    g: &[f32],
    weight: &[f32],
    [n, cin, h, w]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let hw = h * w;
    let rows = cin * 9;
    let (per_chunk, chunks) = chunking(n);
    let weight_t = View::row_major(weight, cout, rows, rows).transposed();
    let mut dx = vec![0f32; n * cin * hw];
    dx.par_chunks_mut(per_chunk * cin * hw)
        .enumerate()
        .for_each(|(chunk, dx)| {
            with_columns(|columns| {
                let first = chunk * per_chunk;
                let images = dx.len() / (cin * hw);
                if grouped(hw) {
                    let k = images * hw;
                    if columns.len() < rows * k {
                        columns.resize(rows * k, 0.0);
                    }
                    with_grouped(|g_chunk| {
                        gather(&g[first * cout * hw..], images, cout, hw, g_chunk);
                        // columns [rows, images*hw] = weight^T [rows, out] x g_chunk.
                        gemm_into(
                            columns,
                            k,
                            weight_t,
                            View::row_major(g_chunk, cout, k, k),
                            false,
                            gemm_threads(chunks),
                        );
                    });
                    for (j, dx) in dx.chunks_mut(cin * hw).enumerate() {
                        col2im(columns, k, j * hw, dx, [cin, h, w]);
                    }
                    return;
                }
                if columns.len() < rows * hw {
                    columns.resize(rows * hw, 0.0);
                }
                for (j, dx) in dx.chunks_mut(cin * hw).enumerate() {
                    let image = first + j;
                    let g = &g[image * cout * hw..(image + 1) * cout * hw];
                    // columns [rows, hw] = weight^T [rows, out] x g [out, hw].
                    gemm_into(
                        columns,
                        hw,
                        weight_t,
                        View::row_major(g, cout, hw, hw),
                        false,
                        gemm_threads(chunks),
                    );
                    col2im(columns, hw, 0, dx, [cin, h, w]);
                }
            })
        });
    dx
}

/// `dW [out, in, 3, 3]` of a 3x3, stride-1, padding-1 convolution from its input `x
/// [n, in, h, w]` and output gradient `g [n, out, h, w]`: per task, the chunk's columns once,
/// then per image `dW^T += columns_j x g_j^T [pixels, out]` straight from the output gradient
/// (each image's `[out, pixels]` block is already contiguous there), or below
/// [`GROUP_BELOW_PIXELS`] one gemm over the chunk's gathered output gradient.
pub fn weight_grad(x: &[f32], g: &[f32], [n, cin, h, w]: [usize; 4], cout: usize) -> Vec<f32> {
    if is_empty([n, cin, h, w], cout) {
        return vec![0.0; cout * cin * 9];
    }
    let hw = h * w;
    let rows = cin * 9;
    let (per_chunk, chunks) = chunking(n);
    // Each chunk sums into an accumulator of its own, and the accumulators are added in chunk
    // order: the grouping of the sum never depends on which thread ran which chunk (a rayon
    // fold's grouping does: work stealing decides it).
    let size = cout * rows;
    let mut partials = vec![0f32; chunks * size];
    partials
        .par_chunks_mut(size)
        .enumerate()
        .for_each(|(chunk, grad_w)| {
            with_columns(|columns| {
                let first = chunk * per_chunk;
                let images = per_chunk.min(n - first);
                let k = images * hw;
                im2col(x, [n, cin, h, w], first..first + images, columns);
                if grouped(hw) {
                    with_grouped(|g_chunk| {
                        gather(&g[first * cout * hw..], images, cout, hw, g_chunk);
                        // grad_w [in*9, out] += columns [in*9, k] x g_chunk^T [k, out].
                        gemm_into(
                            grad_w,
                            cout,
                            View::row_major(columns, rows, k, k),
                            View::row_major(g_chunk, cout, k, k).transposed(),
                            true,
                            gemm_threads(chunks),
                        );
                    });
                    return;
                }
                for j in 0..images {
                    let image = first + j;
                    let g = &g[image * cout * hw..(image + 1) * cout * hw];
                    // grad_w [in*9, out] += columns_j [in*9, hw] x g_j^T [hw, out].
                    gemm_into(
                        grad_w,
                        cout,
                        View::row_major(&columns[j * hw..], rows, hw, k),
                        View::row_major(g, cout, hw, hw).transposed(),
                        true,
                        gemm_threads(chunks),
                    );
                }
            });
        });
    // The partials are `dW^T [in*9, out]`: summed, then transposed.
    let mut sum = vec![0f32; rows * cout];
    for p in partials.chunks_exact(size) {
        for (t, v) in sum.iter_mut().zip(p) {
            *t += v;
        }
    }
    let mut total = vec![0f32; cout * rows];
    for (r, row) in sum.chunks_exact(cout).enumerate() {
        for (co, v) in row.iter().enumerate() {
            total[co * rows + r] = *v;
        }
    }
    total
}

#[derive(Debug)]
struct Conv3x3Backward;

impl Backward<Flex, 2> for Conv3x3Backward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let dims = dims4(&x);
        let cout = weight.layout().shape()[0];
        if let Some(node) = node_w {
            let dw = weight_grad(&values(&x), &values(&grad), dims, cout);
            grads.register::<Flex>(node.id, tensor(dw, [cout, dims[1], 3, 3]));
        }
        if let Some(node) = node_x {
            let dx = input_grad(&values(&grad), &values(&weight), dims, cout);
            grads.register::<Flex>(node.id, tensor(dx, dims));
        }
    }
}

impl<C: CheckpointStrategy> Conv3x3Ops for Autodiff<Flex, C> {
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match Conv3x3Backward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let out = Flex::conv3x3(x.clone(), weight.clone());
                prep.finish((x, weight), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::conv3x3(x.into_primitive(), weight.into_primitive()))
            }
        }
    }
}
