//! The bf16 gemm: `dst [m, n] (+)= lhs [m, k] x rhs [k, n]` with both inputs rounded to
//! bfloat16 (round to nearest even) and every product summed in `f32`, on AVX512-BF16.
//!
//! `vdpbf16ps` multiplies 32 bf16 pairs into 16 `f32` sums per instruction, where an `f32`
//! FMA does 16: twice the multiply-adds per instruction. This is the arithmetic of PyTorch's
//! bf16 autocast on a CPU; catdog uses it only for training steps that ask for it
//! ([`super::Precision::Bf16`]); weights, gradients and optimiser state stay `f32`.
//!
//! Blocking as in BLIS: `rhs` is packed a `KC x NC` block at a time into `NR`-column
//! micro-panels, `lhs` an `MC x KC` block at a time into `MR`-row micro-panels, both as bf16
//! pairs along `k` (the low half the even `k`, the high half the odd one, as `vdpbf16ps`
//! pairs them); an `MR x NR` micro-kernel keeps its 24 sums in registers over the block's
//! depth. A `k` block of odd length ends in a pair whose high half is zero in both operands.

use std::{arch::x86_64::*, cell::RefCell, ops::Range};

use super::{split_by_thread, View};

/// Rows of a micro-panel of `lhs` (and of the micro-kernel's tile).
const MR: usize = 12;
/// Columns of a micro-panel of `rhs`: two registers of 16 `f32` sums per row.
const NR: usize = 32;
/// Depth of a block: an `NR` micro-panel of `KC` bf16 values is 16 KiB, half a 32 KiB L1.
const KC: usize = 256;
/// Rows of `lhs` packed at once (96 x 256 bf16 = 48 KiB, kept in L2).
const MC: usize = 96;
/// Columns of `rhs` packed at once (256 x 1024 bf16 = 512 KiB).
const NC: usize = 1024;

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits; a NaN stays a NaN and
/// a subnormal becomes a zero of its sign, as `vcvtne2ps2bf16` does (the packing uses both).
pub(crate) fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return (bits >> 16) | 0x40;
    }
    if x.is_subnormal() {
        return (bits >> 16) & 0x8000;
    }
    (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
}

/// The `f32` value of bfloat16 `bits`.
#[cfg(test)]
pub(crate) fn bf16_value(bits: u32) -> f32 {
    f32::from_bits(bits << 16)
}

thread_local! {
    /// Each thread's packed blocks of `lhs` and `rhs`, kept from one call to the next.
    static PACKED: RefCell<(Vec<u32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// [`super::gemm_raw`] in bf16: `dst [m, n] = lhs [m, k] x rhs [k, n]`, plus what `dst` held
/// when `accumulate`, split over rayon's threads when `threaded` and the product is large.
///
/// # Safety
/// `Precision::Bf16.supported()` is true; `dst` points to a row-major `m x n` matrix with rows
/// `dst_row_stride` apart that nothing else reads or writes during the call; `lhs` and `rhs`
/// fit their slices and `lhs.cols == rhs.rows`.
pub(super) unsafe fn gemm(
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    threaded: bool,
) {
    if lhs.rows == 0 || rhs.cols == 0 {
        return;
    }
    let one_thread = |block_dst: *mut f32, lhs: View<'_>, rhs: View<'_>| {
        // SAFETY: the caller's contract, on a block of rows or columns of the product.
        unsafe { block(block_dst, dst_row_stride, lhs, rhs, accumulate) }
    };
    if threaded {
        // SAFETY: the caller's contract; `block` writes only the block it is given.
        unsafe { split_by_thread(dst, dst_row_stride, lhs, rhs, [MR, NR], one_thread) }
    } else {
        one_thread(dst, lhs, rhs)
    }
}

/// The product (or a block of it: `lhs`'s rows and `rhs`'s columns of the whole) on this
/// thread.
///
/// # Safety
/// As [`gemm`].
unsafe fn block(dst: *mut f32, ldc: usize, lhs: View, rhs: View, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    // SAFETY: `(r, c)` lies in the caller's `m x n` matrix.
                    unsafe { dst.add(r * ldc + c).write(0.0) };
                }
            }
        }
        return;
    }
    PACKED.with(|cell| {
        let mut fresh = (Vec::new(), Vec::new());
        let mut kept = cell.try_borrow_mut();
        let (a_buf, b_buf) = match kept.as_deref_mut() {
            Ok((a, b)) => (a, b),
            Err(_) => (&mut fresh.0, &mut fresh.1),
        };
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let pairs = kc.div_ceil(2);
                // SAFETY: AVX512-BF16 is present (the caller's contract); the ranges lie in the views.
                unsafe { pack_rhs(rhs, pc..pc + kc, jc..jc + nc, b_buf) };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_lhs(lhs, ic..ic + mc, pc..pc + kc, a_buf);
                    for jr in (0..nc).step_by(NR) {
                        let b_panel = &b_buf[jr / NR * pairs * NR..][..pairs * NR];
                        for ir in (0..mc).step_by(MR) {
                            let a_panel = &a_buf[ir / MR * pairs * MR..][..pairs * MR];
                            // SAFETY: the tile's rows and columns lie in the `m x n` matrix.
                            unsafe {
                                tile(
                                    a_panel,
                                    b_panel,
                                    dst.add((ic + ir) * ldc + jc + jr),
                                    ldc,
                                    MR.min(mc - ir),
                                    NR.min(nc - jr),
                                    accumulate || pc > 0,
                                )
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The pair of `view`'s elements `(r, c)` and the next one along `k` (`along_rows`: the next
/// row, else the next column), as bf16 in one `u32`; the second is zero past `k_end`.
fn pair(view: &View, r: usize, c: usize, along_rows: bool, k_end: usize) -> u32 {
    let at = |r: usize, c: usize| view.data[r * view.row_stride + c * view.col_stride];
    let (lo, hi) = if along_rows {
        (at(r, c), (r + 1 < k_end).then(|| at(r + 1, c)))
    } else {
        (at(r, c), (c + 1 < k_end).then(|| at(r, c + 1)))
    };
    bf16_bits(lo) | hi.map_or(0, |hi| bf16_bits(hi) << 16)
}

/// Packs rows `rows` x columns `depth` of `lhs` into `MR`-row micro-panels, each row's pairs
/// contiguous (a row-major `lhs` converts without a scatter): panel `i`, row `r`, pair `p` at
/// `(i * MR + r) * pairs + p`. The rows past the block hold whatever the buffer held: their
/// sums are never stored.
fn pack_lhs(lhs: View, rows: Range<usize>, depth: Range<usize>, buf: &mut Vec<u32>) {
    let pairs = depth.len().div_ceil(2);
    let panels = rows.len().div_ceil(MR);
    grow(buf, panels * pairs * MR);
    for (i, row) in rows.enumerate() {
        let out = &mut buf[i * pairs..][..pairs];
        if lhs.col_stride == 1 {
            let src = &lhs.data[row * lhs.row_stride + depth.start..][..depth.len()];
            // SAFETY: the bf16 gemm runs only where AVX512-BF16 is present.
            unsafe { pack_contiguous_pairs(src, out, 0, 1) };
        } else {
            for (p, slot) in out.iter_mut().enumerate() {
                *slot = pair(&lhs, row, depth.start + 2 * p, false, depth.end);
            }
        }
    }
}

/// Makes `buf` at least `len` long (a packed block's padding needs no clearing: see the pack
/// functions).
fn grow(buf: &mut Vec<u32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// Writes the bf16 pairs of the contiguous `src` (pair `p` = `src[2p]`, `src[2p + 1]` or
/// zero past the end) to `out[p * stride + offset]`. Panics when they do not fit `out`.
///
/// # Safety
/// AVX512-BF16 is present.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_contiguous_pairs(src: &[f32], out: &mut [u32], offset: usize, stride: usize) {
    let pairs = src.len().div_ceil(2);
    assert!(
        pairs == 0 || (pairs - 1) * stride + offset < out.len(),
        "bf16 packing: the pairs do not fit the panel"
    );
    let mut p = 0;
    // 16 pairs a step: two registers of `f32` to one of bf16 pairs, stored in place (a row of
    // `lhs`) or scattered (a column of `rhs`).
    while p + 16 <= src.len() / 2 {
        // SAFETY: `src[2p..2p + 32]` is in bounds (the loop condition); with `stride == 1`
        // `out[offset + p..][..16]` is (pair `p + 15 < pairs` fits, asserted above).
        unsafe {
            if stride == 1 {
                convert_32(src.as_ptr().add(2 * p), out.as_mut_ptr().add(offset + p));
            } else {
                let mut packed = [0u32; 16];
                convert_32(src.as_ptr().add(2 * p), packed.as_mut_ptr());
                for (i, value) in packed.into_iter().enumerate() {
                    *out.get_unchecked_mut((p + i) * stride + offset) = value;
                }
            }
        }
        p += 16;
    }
    for p in p..pairs {
        let hi = src.get(2 * p + 1).map_or(0, |&x| bf16_bits(x) << 16);
        out[p * stride + offset] = bf16_bits(src[2 * p]) | hi;
    }
}

/// 32 contiguous `f32` at `src` as 16 bf16 pairs at `dst`.
///
/// # Safety
/// AVX512-BF16 is present; `src` holds 32 readable `f32`, `dst` 16 writable `u32`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_32(src: *const f32, dst: *mut u32) {
    unsafe {
        let lo = _mm512_loadu_ps(src);
        let hi = _mm512_loadu_ps(src.add(16));
        // The second operand fills the low 16 bf16 lanes: `src[0..16]` first, in order.
        let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.cast(), pairs);
    }
}

/// Packs rows `depth` x columns `cols` of `rhs` into `NR`-column micro-panels: panel `j`,
/// pair `p`, column `c` at `(j * pairs + p) * NR + c`. The columns past the block hold zeros or
/// whatever the buffer held: their sums are never stored.
///
/// # Safety
/// AVX512-BF16 is present; the ranges lie inside `rhs`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_rhs(rhs: View, depth: Range<usize>, cols: Range<usize>, buf: &mut Vec<u32>) {
    let pairs = depth.len().div_ceil(2);
    let panels = cols.len().div_ceil(NR);
    grow(buf, panels * pairs * NR);
    if rhs.col_stride == 1 {
        // Rows contiguous: two rows' 16 columns at a time, interleaved in registers.
        for p in 0..pairs {
            let r0 = depth.start + 2 * p;
            let second = r0 + 1 < depth.end;
            for c in (0..cols.len()).step_by(16) {
                let valid = 16.min(cols.len() - c);
                let mask: __mmask16 = if valid == 16 {
                    0xffff
                } else {
                    (1u16 << valid) - 1
                };
                let start = r0 * rhs.row_stride + cols.start + c;
                // SAFETY: the `valid` columns from `start` (and from the next row's, if
                // `second`) lie inside `rhs`; masked lanes are not read. The 16 `u32` written
                // lie in the panel (16 divides NR, and the buffer covers whole panels).
                unsafe {
                    let lo = _mm512_maskz_loadu_ps(mask, rhs.data.as_ptr().add(start));
                    let lo = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
                        _mm512_cvtneps_pbh(lo),
                    ));
                    let packed = if second {
                        let hi = _mm512_maskz_loadu_ps(
                            mask,
                            rhs.data.as_ptr().add(start + rhs.row_stride),
                        );
                        let hi = _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
                            _mm512_cvtneps_pbh(hi),
                        ));
                        _mm512_or_si512(lo, _mm512_slli_epi32::<16>(hi))
                    } else {
                        lo
                    };
                    let at = (c / NR * pairs + p) * NR + c % NR;
                    _mm512_storeu_si512(buf.as_mut_ptr().add(at).cast(), packed);
                }
            }
        }
    } else if rhs.row_stride == 1 {
        // Columns contiguous along `k`: each column's pairs at once, scattered to the panel.
        for c in 0..cols.len() {
            let src = &rhs.data[(cols.start + c) * rhs.col_stride + depth.start..][..depth.len()];
            let panel = &mut buf[c / NR * pairs * NR..][..pairs * NR];
            // SAFETY: this function's own contract.
            unsafe { pack_contiguous_pairs(src, panel, c % NR, NR) };
        }
    } else {
        for (j, panel) in buf.chunks_exact_mut(pairs * NR).take(panels).enumerate() {
            for c in 0..NR.min(cols.len() - j * NR) {
                for p in 0..pairs {
                    let col = cols.start + j * NR + c;
                    panel[p * NR + c] = pair(&rhs, depth.start + 2 * p, col, true, depth.end);
                }
            }
        }
    }
}

/// One `MR x NR` tile of `dst` (`rows x cols` of it real) from an `lhs` micro-panel and an
/// `rhs` micro-panel of the same `pairs`; added to what the tile held when `load`.
///
/// # Safety
/// AVX512-BF16 is present; the tile's `rows x cols` elements from `dst`, rows `ldc` apart,
/// are this call's to read and write.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile(
    a: &[u32],
    b: &[u32],
    dst: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load: bool,
) {
    let pairs = b.len() / NR;
    debug_assert_eq!(a.len(), pairs * MR);
    let mut sums = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..pairs {
        // SAFETY: `b` holds `pairs * NR` values and `a` `pairs * MR` (asserted by slicing in
        // the caller); the loads read panel `p`'s 32 and 12 values.
        unsafe {
            let b0: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.as_ptr().add(p * NR).cast()));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.as_ptr().add(p * NR + 16).cast()));
            for (r, sum) in sums.iter_mut().enumerate() {
                let a_r: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.as_ptr().add(r * pairs + p) as i32));
                sum[0] = _mm512_dpbf16_ps(sum[0], a_r, b0);
                sum[1] = _mm512_dpbf16_ps(sum[1], a_r, b1);
            }
        }
    }
    let mask = |valid: usize| -> __mmask16 {
        if valid >= 16 {
            0xffff
        } else {
            ((1u32 << valid) - 1) as __mmask16
        }
    };
    let masks = [mask(cols), mask(cols.saturating_sub(16))];
    for (r, sum) in sums.iter().enumerate().take(rows) {
        for (half, &m) in masks.iter().enumerate() {
            if m == 0 {
                continue;
            }
            // SAFETY: the masked lanes are the tile's real columns of row `r < rows`.
            unsafe {
                let at = dst.add(r * ldc + 16 * half);
                let value = if load {
                    _mm512_add_ps(sum[half], _mm512_maskz_loadu_ps(m, at))
                } else {
                    sum[half]
                };
                _mm512_mask_storeu_ps(at, m, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::precision::Precision;

    fn supported() -> bool {
        Precision::Bf16.supported()
    }

    /// Values in [-2, 2) from a fixed xorshift stream, with every mantissa bit in use (so that
    /// the rounding to bf16 matters).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    fn rounded(x: f32) -> f64 {
        bf16_value(bf16_bits(x)) as f64
    }

    #[test]
    fn rounds_to_the_nearest_bf16_ties_to_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        // Halfway between 0x3f80 and 0x3f81: to the even 0x3f80; between 0x3f81 and 0x3f82:
        // to 0x3f82.
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_7fff)), 0x3f80);
        assert_eq!(bf16_bits(-2.5), 0xc020);
        assert_eq!(bf16_value(bf16_bits(f32::INFINITY)), f32::INFINITY);
        assert_eq!(bf16_value(bf16_bits(f32::MAX)), f32::INFINITY);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
        // A NaN whose payload lies only in the low 16 bits stays a NaN (not infinity).
        assert!(bf16_value(bf16_bits(f32::from_bits(0x7f80_0001))).is_nan());
        // Subnormals flush to a zero of their sign, as the instructions do.
        assert_eq!(bf16_bits(1e-40), 0);
        assert_eq!(bf16_bits(-1e-40), 0x8000);
        assert_eq!(bf16_bits(f32::MIN_POSITIVE), 0x0080);
    }

    #[test]
    fn the_vector_conversion_rounds_as_the_scalar_one() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut src = values(4096, 3);
        // Exact ties, both parities, and specials among them.
        src[..6].copy_from_slice(&[
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::INFINITY,
            -0.0,
            f32::MIN_POSITIVE,
            1e-40,
        ]);
        src[6..8].copy_from_slice(&[-1e-39, f32::NAN]);
        for len in [1usize, 2, 31, 32, 33, 64, 65, 4096] {
            let mut out = vec![0u32; len.div_ceil(2) * 3];
            // SAFETY: `supported()`.
            unsafe { pack_contiguous_pairs(&src[..len], &mut out, 1, 3) };
            for p in 0..len.div_ceil(2) {
                let hi = src.get(2 * p + 1).filter(|_| 2 * p + 1 < len);
                let want = bf16_bits(src[2 * p]) | hi.map_or(0, |&x| bf16_bits(x) << 16);
                assert_eq!(out[p * 3 + 1], want, "len {len}, pair {p}");
            }
        }
    }

    /// How a test matrix lies in its slice.
    #[derive(Clone, Copy, Debug)]
    enum Layout {
        RowMajor,
        ColMajor,
        /// Rows and columns both strided, with gaps.
        Strided,
    }

    /// A `rows x cols` matrix of `values` laid out as `layout`; returns the slice and the view.
    fn matrix(rows: usize, cols: usize, layout: Layout, seed: u64) -> (Vec<f32>, usize, usize) {
        let (row_stride, col_stride, len) = match layout {
            Layout::RowMajor => (cols, 1, rows * cols),
            Layout::ColMajor => (1, rows, rows * cols),
            Layout::Strided => (2 * cols + 3, 2, rows * (2 * cols + 3)),
        };
        (values(len.max(1), seed), row_stride, col_stride)
    }

    #[test]
    fn the_product_of_the_rounded_inputs_summed_in_f32() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        use Layout::*;
        // Every blocking edge: MR = 12, NR = 32, KC = 256, MC = 96, NC = 1024, and the split
        // into two threads along rows or columns.
        let shapes = [
            (1, 1, 1),
            (1, 2, 17),
            (5, 3, 16),
            (12, 31, 32),
            (13, 33, 33),
            (40, 256, 64),
            (100, 257, 40),
            (7, 600, 1030),
            (200, 70, 20),
            (64, 1024, 96),
        ];
        let layouts = [
            (RowMajor, RowMajor),
            (ColMajor, RowMajor),
            (RowMajor, ColMajor),
            (Strided, Strided),
        ];
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for (j, &(la, lb)) in layouts.iter().enumerate() {
                let seed = (i * 8 + j) as u64;
                let (a, ars, acs) = matrix(m, k, la, seed);
                let (b, brs, bcs) = matrix(k, n, lb, seed + 100);
                let lhs = View {
                    data: &a,
                    rows: m,
                    cols: k,
                    row_stride: ars,
                    col_stride: acs,
                };
                let rhs = View {
                    data: &b,
                    rows: k,
                    cols: n,
                    row_stride: brs,
                    col_stride: bcs,
                };
                let ldc = n + 5;
                for (accumulate, threaded) in [(false, false), (true, true), (false, true)] {
                    let before = values(m * ldc, seed + 200);
                    let mut dst = before.clone();
                    // SAFETY: `supported()`; `dst` is an `m x n` matrix with rows `ldc` apart
                    // and both views fit their slices.
                    unsafe { gemm(dst.as_mut_ptr(), ldc, lhs, rhs, accumulate, threaded) };
                    for r in 0..m {
                        for c in 0..ldc {
                            let got = dst[r * ldc + c];
                            if c >= n {
                                assert_eq!(got, before[r * ldc + c], "wrote past column {n}");
                                continue;
                            }
                            let (mut want, mut scale) = (0.0f64, 0.0f64);
                            for t in 0..k {
                                let x = rounded(a[r * ars + t * acs]);
                                let y = rounded(b[t * brs + c * bcs]);
                                want += x * y;
                                scale += (x * y).abs();
                            }
                            if accumulate {
                                want += before[r * ldc + c] as f64;
                                scale += before[r * ldc + c].abs() as f64;
                            }
                            assert!(
                                (got as f64 - want).abs() <= 1e-5 * scale.max(1.0),
                                "{m}x{k}x{n} {la:?}x{lb:?} accumulate {accumulate} threaded \
                                 {threaded}: ({r}, {c}) = {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
