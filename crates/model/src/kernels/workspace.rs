//! The per-thread buffers and the batch chunking that the convolution kernels share: one rayon
//! task per chunk of images, each reusing its thread's buffers from one call to the next.

use std::{
    cell::{Cell, RefCell},
    thread::LocalKey,
};

/// Images per task (one column buffer): few enough for a small buffer, enough that each task's
/// setup is shared by several gemms.
const CHUNK_IMAGES: usize = 8;

thread_local! {
    /// Each thread's column buffer, kept from one call to the next (up to 9.4 MB for the
    /// 32-channel layer of a 64x64 batch): allocating and clearing a fresh one per task cost
    /// 4% of a CNN training step in `perf`.
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's `[out, images*pixels]` buffer of a chunk-wide gemm's output or output
    /// gradient (see [`GROUP_BELOW_PIXELS`]).
    static GROUPED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's `buffer`, or with a fresh one when this thread already holds it
/// (a task stolen while it waits inside a threaded gemm).
fn with_buffer<R>(
    buffer: &'static LocalKey<RefCell<Vec<f32>>>,
    f: impl FnOnce(&mut Vec<f32>) -> R,
) -> R {
    buffer.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => f(&mut kept),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Runs `f` with this thread's column buffer.
pub(crate) fn with_columns<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&COLUMNS, f)
}

/// Runs `f` with this thread's chunk-wide gemm buffer.
pub(crate) fn with_grouped<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&GROUPED, f)
}

thread_local! {
    /// Each thread's row scratch of the input and output transforms. The transformed tiles
    /// and the products live in the im2col kernels' own per-thread buffers (the weight
    /// gradient still needs those), so that the two kernels together keep no more memory than
    /// im2col alone.
    static ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's row scratch of Winograd's transforms.
pub(crate) fn with_rows<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&ROWS, f)
}

thread_local! {
    /// Set while this thread runs one of several kernel calls that already run side by side
    /// (see [`side_by_side`]): the call then neither splits its batch nor threads its gemms.
    static SIDE_BY_SIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, a kernel call that runs beside others each on a thread of the pool, with the
/// kernels' own parallelism off: one task, unthreaded gemms.
pub(crate) fn side_by_side<R>(f: impl FnOnce() -> R) -> R {
    let before = SIDE_BY_SIDE.with(|s| s.replace(true));
    let result = f();
    SIDE_BY_SIDE.with(|s| s.set(before));
    result
}

/// The threads a kernel call may use: the pool's, or one inside [`side_by_side`].
pub(crate) fn kernel_threads() -> usize {
    if SIDE_BY_SIDE.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Images per task of the batch, and the number of tasks: at least one task per thread when
/// the batch allows it, at most [`CHUNK_IMAGES`] images each.
pub(crate) fn chunking(n: usize) -> (usize, usize) {
    let per_chunk = n.div_ceil(kernel_threads()).clamp(1, CHUNK_IMAGES);
    (per_chunk, n.div_ceil(per_chunk))
}

/// The gemm's own threading: none when the tasks already keep every thread busy.
pub(crate) fn gemm_threads(chunks: usize) -> gemm::Parallelism {
    if chunks < kernel_threads() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}
