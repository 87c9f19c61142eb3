//! Helpers shared by the tests of catdog's own kernels against burn's ops.

use burn::tensor::Tensor;

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
