use serde::{Deserialize, Serialize};

use crate::ImageSet;

/// Per-channel mean and standard deviation of pixel values scaled to `[0, 1]`.
///
/// Computed on the training split only and stored in the run's `config.json`, so evaluation and
/// prediction feed the model exactly what training did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    fn default() -> Self {
        Self {
            mean: [0.5; 3],
            std: [0.25; 3],
        }
    }
}

impl Normalization {
    pub fn from_images(set: &ImageSet) -> Self {
        let mut sum = [0u64; 3];
        let mut sum_sq = [0u64; 3];
        for px in set.pixels.chunks_exact(3) {
            for c in 0..3 {
                let v = px[c] as u64;
                sum[c] += v;
                sum_sq[c] += v * v;
            }
        }
        let n = (set.pixels.len() / 3).max(1) as f64;
        let mut mean = [0.0; 3];
        let mut std = [0.0; 3];
        for c in 0..3 {
            let m = sum[c] as f64 / n;
            let var = (sum_sq[c] as f64 / n - m * m).max(0.0);
            mean[c] = (m / 255.0) as f32;
            // A constant channel would divide by zero; leave it unscaled.
            std[c] = ((var.sqrt() / 255.0) as f32).max(1e-3);
        }
        Self { mean, std }
    }

    /// `lut[c][v]` is the normalised value of byte `v` in channel `c`: one lookup per pixel.
    pub fn lookup_table(&self) -> [[f32; 256]; 3] {
        let mut lut = [[0.0; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        lut
    }
}
