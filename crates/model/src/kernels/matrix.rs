//! `f32` matrices inside slices and the gemm calls of catdog's kernels on them: the `gemm`
//! crate (as burn-flex multiplies with), or catdog's bf16 gemm while a training run asks for
//! [`Precision::Bf16`].

#[cfg(target_arch = "x86_64")]
mod bf16;

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::precision::Precision;

/// An `f32` matrix inside a slice: element `(r, c)` at `r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix whose rows are `row_stride` apart.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same elements read as the `cols x rows` transpose.
    pub(crate) fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `range` of this matrix.
    fn rows(self, range: std::ops::Range<usize>) -> Self {
        Self {
            data: &self.data[(range.start * self.row_stride).min(self.data.len())..],
            rows: range.len(),
            ..self
        }
    }

    /// Columns `range` of this matrix.
    fn cols(self, range: std::ops::Range<usize>) -> Self {
        Self {
            data: &self.data[(range.start * self.col_stride).min(self.data.len())..],
            cols: range.len(),
            ..self
        }
    }

    /// Whether every element lies inside the slice.
    fn fits(&self) -> bool {
        fits(
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
}

/// Whether every element of a `rows x cols` matrix with these strides lies in `len` elements.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + (cols - 1) * col_stride < len
}

/// `dst [m, n] = lhs [m, k] x rhs [k, n]`, plus what `dst` held when `accumulate`, with the
/// bounds checked by the caller.
///
/// # Safety
/// `dst` points to a row-major `m x n` matrix with rows `dst_row_stride` apart that nothing
/// else reads or writes during the call; `lhs` and `rhs` fit their slices.
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    #[cfg(target_arch = "x86_64")]
    if Precision::current() == Precision::Bf16 {
        // SAFETY: the caller's contract; a bf16 scope exists only where `Precision::Bf16.supported()`
        // (`Precision::scope` checks).
        return unsafe {
            bf16::gemm(
                dst,
                dst_row_stride,
                lhs,
                rhs,
                accumulate,
                !matches!(parallelism, gemm::Parallelism::None),
            )
        };
    }
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Panics (instead of reading or writing out of bounds) when a matrix of `dst = lhs x rhs`
/// does not fit its slice or the shapes disagree.
fn check(dst_len: usize, dst_row_stride: usize, lhs: &View, rhs: &View) {
    assert_eq!(rhs.rows, lhs.cols, "gemm: inner dimensions differ");
    assert!(
        fits(dst_len, lhs.rows, rhs.cols, dst_row_stride, 1) && lhs.fits() && rhs.fits(),
        "gemm: a matrix does not fit its buffer"
    );
}

/// `dst [m, n] = lhs [m, k] x rhs [k, n]`, plus what `dst` held when `accumulate`; `dst` is
/// row-major with rows `dst_row_stride` apart. Panics (instead of reading or writing out of
/// bounds) when a matrix does not fit its slice.
pub(crate) fn gemm_into(
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    check(dst.len(), dst_row_stride, &lhs, &rhs);
    // SAFETY: the three matrices lie inside their slices (checked above); `dst` is borrowed
    // mutably, so nothing else touches it.
    unsafe {
        gemm_raw(
            dst.as_mut_ptr(),
            dst_row_stride,
            lhs,
            rhs,
            accumulate,
            parallelism,
        )
    }
}

/// `dst [m, n] = lhs [m, k] x rhs [k, n]` into memory not yet written (a fresh output that
/// would otherwise be cleared first, only to be overwritten); `dst` is row-major with rows
/// `dst_row_stride` apart. Panics when a matrix does not fit its slice.
pub(crate) fn gemm_overwrite(
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    parallelism: gemm::Parallelism,
) {
    check(dst.len(), dst_row_stride, &lhs, &rhs);
    // SAFETY: the matrices lie inside their slices (checked above) and `dst` is borrowed
    // mutably; without `accumulate` the gemm crate only writes `dst` (its factor on the old
    // value is zero and that value is never loaded), so its not yet being initialised is fine.
    unsafe {
        gemm_raw(
            dst.as_mut_ptr().cast(),
            dst_row_stride,
            lhs,
            rhs,
            false,
            parallelism,
        )
    }
}

/// Below this many multiply-adds one thread does the whole product (splitting costs more).
const SPLIT_MIN_WORK: usize = 1 << 18;

/// Output blocks are multiples of this many rows or columns (a SIMD register of f32).
const SPLIT_ALIGN: usize = 16;

/// A raw output pointer that rayon tasks may carry; each task writes only its own block.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the tasks of `gemm_split` write disjoint blocks of the matrix behind the pointer,
// which outlives them (the parallel loop returns before `gemm_split` does).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`gemm_into`] with the output cut into one block per thread along its longer side, each
/// block one single-threaded gemm.
///
/// The `gemm` crate's own threading leaves a wide, short product such as an MLP layer's
/// forward pass (`[64, 12288] x [12288, 512]`) mostly on one core: 155 GFLOP/s against 245 for
/// two column blocks on the 2-core Intel Xeon (AVX-512) catdog is measured on.
pub(crate) fn gemm_split(
    dst: &mut [f32],
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    check(dst.len(), dst_row_stride, &lhs, &rhs);
    // SAFETY: the product fits its buffers (checked above), so each block does; `dst` stays
    // mutably borrowed for the whole call, and each block's gemm writes only its block.
    unsafe {
        split_by_thread(
            dst.as_mut_ptr(),
            dst_row_stride,
            lhs,
            rhs,
            [SPLIT_ALIGN; 2],
            |block, lhs, rhs| {
                gemm_raw(
                    block,
                    dst_row_stride,
                    lhs,
                    rhs,
                    accumulate,
                    gemm::Parallelism::None,
                )
            },
        )
    }
}

/// Runs `gemm(block of dst, lhs rows, rhs columns)` on one block of the product per rayon
/// thread, cut along its longer side into multiples of `[row_align, col_align]`, or once on
/// the whole product when it is small or there is one thread.
///
/// # Safety
/// `dst` points to a row-major `m x n` matrix with rows `dst_row_stride` apart that nothing
/// else touches during the call, and `gemm` writes only the `lhs.rows x rhs.cols` block of it
/// it is given (rows `dst_row_stride` apart) and is sound for any such block.
unsafe fn split_by_thread(
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: View,
    rhs: View,
    [row_align, col_align]: [usize; 2],
    gemm: impl Fn(*mut f32, View, View) + Sync,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let threads = rayon::current_num_threads().max(1);
    let along_cols = n >= m;
    let (side, align) = if along_cols {
        (n, col_align)
    } else {
        (m, row_align)
    };
    let block = side.div_ceil(threads).next_multiple_of(align);
    if threads == 1 || m * n * k < SPLIT_MIN_WORK || block >= side {
        return gemm(dst, lhs, rhs);
    }
    let out = SendPtr(dst);
    (0..side.div_ceil(block)).into_par_iter().for_each(|b| {
        let range = b * block..((b + 1) * block).min(side);
        // SAFETY: the blocks are disjoint rows or columns of `dst` (the caller's contract).
        unsafe {
            if along_cols {
                gemm(out.get().add(range.start), lhs, rhs.cols(range))
            } else {
                gemm(
                    out.get().add(range.start * dst_row_stride),
                    lhs.rows(range),
                    rhs,
                )
            }
        }
    });
}

/// The first `len` spare slots of `v`, for a kernel to write whole before `v.set_len(len)`.
/// With the `kernel-checks` feature they are filled with NaN first, so that a slot a kernel
/// forgets to write (or a gemm that reads what it was told to overwrite) shows up as NaN in the
/// parity tests instead of as whatever the memory held.
/// `slots` as values, once every one has been written.
///
/// # Safety
/// Every element of `slots` must have been initialised. (With the `kernel-checks` feature
/// [`spare_slots`] fills new slots with NaN, so a slot a kernel forgot shows up in the tests'
/// comparisons with burn.)
pub(crate) unsafe fn assume_written(slots: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller vouches that every
    // element is initialised.
    unsafe { &mut *(slots as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

pub(crate) fn spare_slots(v: &mut Vec<f32>, len: usize) -> &mut [MaybeUninit<f32>] {
    v.reserve(len.saturating_sub(v.len()));
    let slots = &mut v.spare_capacity_mut()[..len];
    if cfg!(feature = "kernel-checks") {
        for slot in slots.iter_mut() {
            slot.write(f32::NAN);
        }
    }
    slots
}
