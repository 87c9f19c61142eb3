//! catdog: train image classifiers on real photos with burn, evaluate them honestly on held-out
//! data, and export weights.
//!
//! The work is split into crates, re-exported here: [`model`] (networks that output raw logits),
//! [`data`] (image folders to batches), [`infer`] (loading a trained model and computing its
//! logits, without the trainer) and [`train`] (loop, loss, metrics, plots, export).

pub use catdog_data as data;
pub use catdog_infer as infer;
pub use catdog_model as model;
pub use catdog_serve as serve;
pub use catdog_train as train;

/// Keeps large tensor buffers in the heap instead of fresh `mmap`s.
///
/// glibc serves every allocation above its mmap threshold (at most 32 MiB by default) with a
/// new mapping and unmaps it on free, so each training step page-faults its activations in
/// again: measured here, a quarter of the CNN's step time went to the kernel. Raising the
/// thresholds lets freed buffers be reused. Call once at start-up, before other threads run.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
