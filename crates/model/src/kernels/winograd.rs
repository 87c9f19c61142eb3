//! The 3x3, stride-1, padding-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin
//! and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), on burn-flex's f32
//! buffers.
//!
//! Each 2x2 output tile comes from a 4x4 input tile: `Y = A^T [(G g G^T) . (B^T d B)] A`. Summed
//! over input channels, the element-wise product becomes 16 gemms, one per tile position `xi`:
//! `M_xi [out, tiles] = U_xi [out, in] x V_xi [in, tiles]`, with 16 multiply-adds per 2x2
//! output and channel pair where im2col's one gemm of depth `in*9` spends 36: 2.25x fewer. The
//! price is three element-wise transforms (filters `U`, input tiles `V`, output tiles from `M`)
//! and gemms of depth `in` instead of `in*9`.
//!
//! The work goes a cache-sized block of tile rows at a time (see [`Block`]). Each input row's
//! even and odd columns are split apart, and even and odd padded rows kept apart, so that tile
//! `(ty, tx)` reads elements `tx` and `tx + 1` of rows `ty` and `ty + 1` of four arrays: with
//! one phantom tile per row, both transforms are single contiguous, vectorisable loops over the
//! block, and each tile position's values land contiguously in `V_xi`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{
    conv3x3::ChunkFinish,
    matrix::{assume_written, gemm_overwrite, spare_slots, View},
    workspace::{chunking, gemm_threads, with_columns, with_grouped, with_rows},
};

/// The gemms' depth (input channels of the forward pass, output channels of the input
/// gradient) from which F(2x2, 3x3) measured faster than im2col's gemm of depth `9 x depth`.
pub const MIN_DEPTH: usize = 32;

/// The plane side from which it measured faster: below it the tiles are few per row, the
/// phantom tile of each row (see [`Block`]) a large share, and the gemms narrow.
pub const MIN_SIDE: usize = 12;

/// Whether a 3x3 convolution whose gemms are `depth` deep, on `h x w` planes, goes through
/// F(2x2, 3x3). `cargo run --release --example op_profile` times both per layer; on the
/// 2-core Intel Xeon (AVX-512, batch 64): forward 1.11-1.47x faster from 12x12 and 32
/// channels up (64->64 channels at 28x28: 17.1 against 11.7 ms), input gradient 0.99-1.37x;
/// at 8x8 and below 0.63-0.77x.
pub fn pays(depth: usize, [h, w]: [usize; 2]) -> bool {
    depth >= MIN_DEPTH && h.min(w) >= MIN_SIDE
}

/// Tile positions of a 4x4 input tile.
const XI: usize = 16;

/// Bytes of transformed tiles and products per block (see [`forward`]): about what a core's
/// L2 cache holds, so a block's gemms read their operands from cache; wider layers gain most
/// from larger blocks (the measured choice is in docs/performance.md).
const BLOCK_BYTES: usize = 3 << 20;

/// `G g G^T` of one 3x3 filter `g` (row-major), as the 16 values of a 4x4 tile.
fn transform_filter(g: &[f32]) -> [f32; XI] {
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    let apply = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let mut columns = [[0f32; 4]; 3];
    for (c, column) in columns.iter_mut().enumerate() {
        *column = apply(g[c], g[3 + c], g[6 + c]);
    }
    let mut u = [0f32; XI];
    for r in 0..4 {
        let row = apply(columns[0][r], columns[1][r], columns[2][r]);
        u[r * 4..r * 4 + 4].copy_from_slice(&row);
    }
    u
}

/// The filters `weight [out, in, 3, 3]` transformed: `U [16, out, in]`.
fn transform_filters(weight: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut u = vec![0f32; XI * cout * cin];
    // Filter `(out, in)`'s 16 values go to element `(out, in)` of each of the 16 matrices.
    let per_xi = cout * cin;
    let transformed: Vec<[f32; XI]> = weight.par_chunks(9).map(transform_filter).collect();
    for (pair, t) in transformed.iter().enumerate() {
        for (xi, v) in t.iter().enumerate() {
            u[xi * per_xi + pair] = *v;
        }
    }
    u
}

/// Splits padded row `p` of `plane [h, w]` (input row `p - 1`, zero outside the plane) into
/// `even` and `odd` halves of `tp = ceil(w / 2) + 1` columns each: `even` holds columns
/// `-1, 1, 3, ...` (column -1 is padding), `odd` columns `0, 2, 4, ...`. Tile `tx` covers
/// columns `2tx - 1 ..= 2tx + 2`, which are `even[tx], odd[tx], even[tx + 1], odd[tx + 1]`.
#[inline(always)]
fn split_row(plane: &[f32], [h, w]: [usize; 2], p: usize, even: &mut [f32], odd: &mut [f32]) {
    let Some(y) = p.checked_sub(1).filter(|y| *y < h) else {
        even.fill(0.0);
        odd.fill(0.0);
        return;
    };
    let src = &plane[y * w..(y + 1) * w];
    let pairs = src.chunks_exact(2);
    let last = pairs.remainder().first().copied();
    let full = w / 2;
    even[0] = 0.0;
    for ((o, e), pair) in odd.iter_mut().zip(&mut even[1..]).zip(pairs) {
        *o = pair[0];
        *e = pair[1];
    }
    odd[full..].fill(0.0);
    even[full + 1..].fill(0.0);
    if let Some(last) = last {
        odd[full] = last;
    }
}

/// Scratch of one block's transforms: the split input rows, the row-transformed tiles and the
/// output tiles, carved from one reused buffer.
struct Scratch<'a> {
    /// The split input rows: even padded rows' even and odd columns, then the odd rows'.
    split: &'a mut [f32],
    /// `B^T d` of each tile row: four rows, even then odd halves, `tiles + 1` values each.
    rows: &'a mut [f32],
    /// `A^T m A` of each tile: four values, `tiles` each.
    out: &'a mut [f32],
}

impl<'a> Scratch<'a> {
    fn new(buffer: &'a mut Vec<f32>, split_len: usize, tiles: usize) -> Self {
        buffer.resize(split_len + 8 * (tiles + 1) + 4 * tiles, 0.0);
        let (split, rest) = buffer.split_at_mut(split_len);
        let (rows, out) = rest.split_at_mut(8 * (tiles + 1));
        Self { split, rows, out }
    }
}

/// A block of tile rows: `(image, ty)` pairs of a chunk, flattened as `image * th + ty`, each
/// row `tp = tw + 1` tiles wide. The last tile of each row is a phantom that reads into the
/// next row: it keeps every transform one contiguous loop over the whole block, and its
/// results are never written out.
#[derive(Clone)]
struct Block {
    rows: std::ops::Range<usize>,
    th: usize,
    tp: usize,
}

impl Block {
    fn tiles(&self) -> usize {
        self.rows.len() * self.tp
    }

    /// The block's rows image by image: `(image, tile rows, index of the first in the block)`.
    fn segments(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>, usize)> + '_ {
        let (first, last) = (self.rows.start / self.th, (self.rows.end - 1) / self.th);
        (first..=last).map(move |image| {
            let from = self.rows.start.max(image * self.th);
            let to = self.rows.end.min((image + 1) * self.th);
            (
                image,
                from - image * self.th..to - image * self.th,
                from - self.rows.start,
            )
        })
    }
}

/// Writes `B^T d B` of the block's tiles of channel `c` into `v [16, in, tiles]` (`plane_of`
/// gives each image's plane of that channel).
#[inline(always)]
fn transform_input<'x>(
    plane_of: impl Fn(usize) -> &'x [f32],
    [h, w]: [usize; 2],
    block: &Block,
    c: usize,
    cin: usize,
    v: &mut [f32],
    scratch: &mut Scratch,
) {
    let (tp, tiles) = (block.tp, block.tiles());
    let stride = tiles + 1;
    for (image, tile_rows, at) in block.segments() {
        // Tile row `ty` reads padded rows `2ty ..= 2ty + 3`. With the even padded rows in one
        // array and the odd ones in another (`tp` values per row), tile row `s` of the segment
        // finds its four at offsets `s * tp` and `(s + 1) * tp` of the two: the row transform
        // is one loop over the segment.
        let plane = plane_of(image);
        let rows = tile_rows.len();
        let len = (rows + 1) * tp;
        let (upper, lower) = scratch.split.split_at_mut(2 * len);
        let (upper_even, upper_odd) = upper.split_at_mut(len);
        let (lower_even, lower_odd) = lower[..2 * len].split_at_mut(len);
        for i in 0..=rows {
            let p = 2 * (tile_rows.start + i);
            let at = i * tp..(i + 1) * tp;
            split_row(
                plane,
                [h, w],
                p,
                &mut upper_even[at.clone()],
                &mut upper_odd[at.clone()],
            );
            split_row(
                plane,
                [h, w],
                p + 1,
                &mut lower_even[at.clone()],
                &mut lower_odd[at],
            );
        }
        // B^T over the rows: t0 = d0 - d2, t1 = d1 + d2, t2 = d2 - d1, t3 = d1 - d3.
        let n = rows * tp;
        let out = at * tp..at * tp + n;
        for (half, (upper, lower)) in [(&*upper_even, &*lower_even), (&*upper_odd, &*lower_odd)]
            .into_iter()
            .enumerate()
        {
            let (d0, d1, d2, d3) = (
                &upper[..n],
                &lower[..n],
                &upper[tp..tp + n],
                &lower[tp..tp + n],
            );
            let block_rows = &mut scratch.rows[half * 4 * stride..(half + 1) * 4 * stride];
            let (t0, rest) = block_rows.split_at_mut(stride);
            let (t1, rest) = rest.split_at_mut(stride);
            let (t2, t3) = rest.split_at_mut(stride);
            let (t0, t1, t2, t3) = (
                &mut t0[out.clone()],
                &mut t1[out.clone()],
                &mut t2[out.clone()],
                &mut t3[out.clone()],
            );
            for k in 0..n {
                t0[k] = d0[k] - d2[k];
                t1[k] = d1[k] + d2[k];
                t2[k] = d2[k] - d1[k];
                t3[k] = d1[k] - d3[k];
            }
        }
    }
    // B^T over the columns: tile k's four values from elements k and k + 1 of each half.
    for i in 0..4 {
        let stride_v = cin * tiles;
        let base = (4 * i * cin + c) * tiles;
        let even = &scratch.rows[i * stride..][..stride];
        let odd = &scratch.rows[(4 + i) * stride..][..stride];
        let region = &mut v[base..base + 3 * stride_v + tiles];
        let (v0, rest) = region.split_at_mut(stride_v);
        let (v1, rest) = rest.split_at_mut(stride_v);
        let (v2, v3) = rest.split_at_mut(stride_v);
        let (v0, v1, v2, v3) = (
            &mut v0[..tiles],
            &mut v1[..tiles],
            &mut v2[..tiles],
            &mut v3[..tiles],
        );
        let (e0, e1, o0, o1) = (
            &even[..tiles],
            &even[1..tiles + 1],
            &odd[..tiles],
            &odd[1..tiles + 1],
        );
        for k in 0..tiles {
            v0[k] = e0[k] - e1[k];
            v1[k] = o0[k] + e1[k];
            v2[k] = e1[k] - o0[k];
            v3[k] = o0[k] - o1[k];
        }
    }
}

/// Writes `A^T m A` of the block's tiles of output channel `co` from `m [16, out, tiles]` into
/// that channel's planes of `out [images, out, h, w]`, skipping phantom tiles.
#[inline(always)]
fn transform_output(
    m: &[f32],
    [h, w]: [usize; 2],
    block: &Block,
    co: usize,
    cout: usize,
    out: &mut [MaybeUninit<f32>],
    scratch: &mut Scratch,
) {
    let (tp, tiles) = (block.tp, block.tiles());
    let s = |xi: usize| &m[(xi * cout + co) * tiles..][..tiles];
    let (m00, m01, m02, m03) = (s(0), s(1), s(2), s(3));
    let (m10, m11, m12, m13) = (s(4), s(5), s(6), s(7));
    let (m20, m21, m22, m23) = (s(8), s(9), s(10), s(11));
    let (m30, m31, m32, m33) = (s(12), s(13), s(14), s(15));
    let (top, bottom) = scratch.out[..4 * tiles].split_at_mut(2 * tiles);
    let (y00, y01) = top.split_at_mut(tiles);
    let (y10, y11) = bottom.split_at_mut(tiles);
    // A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] over the rows (p0, p1), then the columns.
    for k in 0..tiles {
        let p00 = m00[k] + m10[k] + m20[k];
        let p01 = m01[k] + m11[k] + m21[k];
        let p02 = m02[k] + m12[k] + m22[k];
        let p03 = m03[k] + m13[k] + m23[k];
        let p10 = m10[k] - m20[k] - m30[k];
        let p11 = m11[k] - m21[k] - m31[k];
        let p12 = m12[k] - m22[k] - m32[k];
        let p13 = m13[k] - m23[k] - m33[k];
        y00[k] = p00 + p01 + p02;
        y01[k] = p01 - p02 - p03;
        y10[k] = p10 + p11 + p12;
        y11[k] = p11 - p12 - p13;
    }
    for (image, tile_rows, at) in block.segments() {
        let plane = &mut out[(image * cout + co) * h * w..][..h * w];
        for (s, ty) in tile_rows.enumerate() {
            let from = (at + s) * tp;
            for (dy, (left, right)) in [(&*y00, &*y01), (&*y10, &*y11)].into_iter().enumerate() {
                let y = 2 * ty + dy;
                if y >= h {
                    break;
                }
                let row = &mut plane[y * w..(y + 1) * w];
                let (left, right) = (&left[from..from + tp], &right[from..from + tp]);
                let mut pairs = row.chunks_exact_mut(2);
                for ((pair, l), r) in pairs.by_ref().zip(left).zip(right) {
                    pair[0].write(*l);
                    pair[1].write(*r);
                }
                if let [last] = pairs.into_remainder() {
                    last.write(left[w / 2]);
                }
            }
        }
    }
}

/// The transforms of a block: every input channel's tiles into `v`, or every output channel's
/// tiles out of `m`.
#[inline(always)]
fn input_block(
    x: &[f32],
    [cin, h, w]: [usize; 3],
    first: usize,
    block: &Block,
    v: &mut [f32],
    scratch: &mut Scratch,
) {
    let hw = h * w;
    for c in 0..cin {
        let plane = |j: usize| &x[((first + j) * cin + c) * hw..][..hw];
        transform_input(plane, [h, w], block, c, cin, v, scratch);
    }
}

#[inline(always)]
fn output_block(
    m: &[f32],
    [cout, h, w]: [usize; 3],
    block: &Block,
    out: &mut [MaybeUninit<f32>],
    scratch: &mut Scratch,
) {
    for co in 0..cout {
        transform_output(m, [h, w], block, co, cout, out, scratch);
    }
}

/// `$name` calls `$body` compiled for the widest vector instructions this CPU has. The
/// transforms are plain loops, which a build for the x86-64 baseline vectorises only 4 wide
/// (SSE): a third of the convolution's time on AVX-512 went to them.
macro_rules! widest_simd {
    ($name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

widest_simd!(input_transforms(
    x: &[f32],
    dims: [usize; 3],
    first: usize,
    block: &Block,
    v: &mut [f32],
    scratch: &mut Scratch
) => input_block);

widest_simd!(output_transforms(
    m: &[f32],
    dims: [usize; 3],
    block: &Block,
    out: &mut [MaybeUninit<f32>],
    scratch: &mut Scratch
) => output_block);

/// `y [n, out, h, w]` of a 3x3, stride-1, padding-1 convolution of `x [n, in, h, w]` by
/// `weight [out, in, 3, 3]`, by F(2x2, 3x3): per task of up to a few images, a cache-sized
/// block of tile rows at a time, its tiles transformed, 16 gemms, and the output tiles
/// transformed straight into the output.
///
/// `finish` gets each chunk's output once it is written (see [`ChunkFinish`]).
pub fn forward(
    x: &[f32],
    weight: &[f32],
    [n, cin, h, w]: [usize; 4],
    cout: usize,
    finish: &ChunkFinish,
) -> Vec<f32> {
    let hw = h * w;
    let (th, tp) = (h.div_ceil(2), w.div_ceil(2) + 1);
    // Tile rows per block: the block's `V` and `M` (16 values per tile and channel) within
    // about a core's L2 cache, so that the gemms' products are still there for the output
    // transform.
    let block_rows = (BLOCK_BYTES / (XI * 4 * (cin + cout) * tp)).max(1);
    let u = transform_filters(weight, cin, cout);
    let (per_chunk, chunks) = chunking(n);
    let len = n * cout * hw;
    let mut y: Vec<f32> = Vec::with_capacity(len);
    spare_slots(&mut y, len)
        .par_chunks_mut(per_chunk * cout * hw)
        .enumerate()
        .for_each(|(chunk, out)| {
            let first = chunk * per_chunk;
            let images = out.len() / (cout * hw);
            let tile_rows = images * th;
            with_columns(|v| {
                with_grouped(|m| {
                    with_rows(|buffer| {
                        for start in (0..tile_rows).step_by(block_rows) {
                            let block = Block {
                                rows: start..(start + block_rows).min(tile_rows),
                                th,
                                tp,
                            };
                            let tiles = block.tiles();
                            let split_len = 4 * (block.rows.len() + 1) * tp;
                            let mut scratch = Scratch::new(buffer, split_len, tiles);
                            v.resize(XI * cin * tiles, 0.0);
                            input_transforms(x, [cin, h, w], first, &block, v, &mut scratch);
                            m.clear();
                            let products = spare_slots(m, XI * cout * tiles);
                            for (xi, product) in products.chunks_mut(cout * tiles).enumerate() {
                                // M_xi [out, tiles] = U_xi [out, in] x V_xi [in, tiles].
                                gemm_overwrite(
                                    product,
                                    tiles,
                                    View::row_major(&u[xi * cout * cin..], cout, cin, cin),
                                    View::row_major(&v[xi * cin * tiles..], cin, tiles, tiles),
                                    gemm_threads(chunks),
                                );
                            }
                            // SAFETY: the 16 gemms wrote all `16 * cout * tiles` elements.
                            unsafe { m.set_len(XI * cout * tiles) };
                            output_transforms(m, [cout, h, w], &block, out, &mut scratch);
                        }
                    })
                })
            });
            // SAFETY: the output transforms wrote every element of every plane of the
            // chunk's tile rows, which cover the chunk.
            finish(first, unsafe { assume_written(out) });
        });
    // SAFETY: the chunks cover all `len` elements, and the output transform wrote every
    // element of every plane of every block's tile rows, which cover each chunk.
    unsafe { y.set_len(len) };
    y
}

/// `weight [out, in, 3, 3]` as the filters of the transposed convolution: `[in, out, 3, 3]`,
/// each filter turned by 180 degrees. A 3x3, stride-1, padding-1 convolution's input gradient
/// is the same convolution of the output gradient by these.
pub fn transposed_filters(weight: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut t = vec![0f32; cin * cout * 9];
    for co in 0..cout {
        for ci in 0..cin {
            let src = &weight[(co * cin + ci) * 9..][..9];
            let dst = &mut t[(ci * cout + co) * 9..][..9];
            for k in 0..9 {
                dst[k] = src[8 - k];
            }
        }
    }
    t
}

/// `dx [n, in, h, w]` of a 3x3, stride-1, padding-1 convolution from its output gradient
/// `g [n, out, h, w]` and `weight [out, in, 3, 3]`: the forward convolution of `g` by the
/// transposed filters.
pub fn input_grad(g: &[f32], weight: &[f32], [n, cin, h, w]: [usize; 4], cout: usize) -> Vec<f32> {
    forward(
        g,
        &transposed_filters(weight, cin, cout),
        [n, cout, h, w],
        cin,
        &|_, _| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reproducible values in [-1, 1).
    struct Lcg(u64);

    impl Lcg {
        fn values(&mut self, len: usize) -> Vec<f32> {
            (0..len)
                .map(|_| {
                    self.0 = self
                        .0
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        }
    }

    /// A direct 3x3, padding-1 convolution in f64.
    fn direct(x: &[f32], weight: &[f32], [n, cin, h, w]: [usize; 4], cout: usize) -> Vec<f64> {
        let mut y = vec![0f64; n * cout * h * w];
        for b in 0..n {
            for co in 0..cout {
                for oy in 0..h {
                    for ox in 0..w {
                        let mut s = 0f64;
                        for ci in 0..cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (oy + ky, ox + kx);
                                    if iy < 1 || ix < 1 || iy > h || ix > w {
                                        continue;
                                    }
                                    let xv = x[((b * cin + ci) * h + iy - 1) * w + ix - 1];
                                    let wv = weight[((co * cin + ci) * 3 + ky) * 3 + kx];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((b * cout + co) * h + oy) * w + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs())).max(1e-6);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * scale,
                "element {i}: {g} against {w} (scale {scale})"
            );
        }
    }

    #[test]
    fn equals_the_direct_convolution_on_odd_and_even_shapes() {
        let mut rng = Lcg(7);
        for dims in [
            [1, 1, 1, 1],
            [1, 2, 1, 5],
            [2, 3, 5, 7],
            [3, 4, 6, 6],
            [1, 5, 8, 3],
            [9, 3, 4, 5],
            [2, 16, 12, 12],
        ] {
            for cout in [1, 3, 8] {
                let [n, cin, h, w] = dims;
                let x = rng.values(n * cin * h * w);
                let weight = rng.values(cout * cin * 9);
                let y = forward(&x, &weight, dims, cout, &|_, _| {});
                assert_close(&y, &direct(&x, &weight, dims, cout));
            }
        }
    }

    #[test]
    fn input_gradient_is_the_transpose_of_the_forward() {
        // <conv(x), g> = <x, input_grad(g)> for every x and g.
        let mut rng = Lcg(11);
        let dims @ [n, cin, h, w] = [3, 4, 5, 7];
        let cout = 6;
        let x = rng.values(n * cin * h * w);
        let g = rng.values(n * cout * h * w);
        let weight = rng.values(cout * cin * 9);
        let y = direct(&x, &weight, dims, cout);
        let lhs: f64 = y.iter().zip(&g).map(|(a, b)| a * *b as f64).sum();
        let dx = input_grad(&g, &weight, dims, cout);
        let rhs: f64 = dx.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
            "{lhs} against {rhs}"
        );
    }
}
