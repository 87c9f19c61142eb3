//! Helpers shared by the tests of catdog's own kernels against burn's ops.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};

/// A tensor's values, read back from its device.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// `ours` equals `burns` to 1e-4 relative to the largest value of `burns` (at least 1e-3).
pub fn assert_close(what: &str, ours: &[f32], burns: &[f32]) {
    assert_eq!(ours.len(), burns.len(), "{what}: lengths");
    let scale = burns.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in ours.iter().zip(burns).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * scale,
            "{what}[{i}]: ours {x} vs burn {y} (scale {scale})"
        );
    }
}

/// Loss weights (an output gradient) that differ along every axis of `dims`: a function of
/// the flat index that repeats nowhere in a test's sizes, so a kernel that swapped images,
/// channels, rows or columns in a gradient would not match.
pub fn varied<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (i as f32 * 0.618_034 + 0.3).sin() + 0.1 * (i % 7) as f32)
        .collect();
    Tensor::from_data(TensorData::new(v, dims), device)
}

/// Runs `f` in rayon pools of 1, 2 and 4 threads (the kernels split their work by the pool's
/// size, so each split is reached whatever the machine's core count).
pub fn in_pools(f: impl Fn() + Sync) {
    for threads in [1, 2, 4] {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
            .install(&f);
    }
}
