//! Progressive resizing (`--progressive 32`): the first part of a run trains on smaller images,
//! whose steps cost less, then the size grows to the run's `image_size`, at which the last part
//! trains and every evaluation runs (so BatchNorm settles at the size the model is used at).
//! The networks that pool globally (CNN, ResNet) take any input size.

use serde::{Deserialize, Serialize};

/// Sizes grow in steps of this many pixels.
const SIZE_STEP: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Progressive {
    /// Side of the images of the first epochs.
    pub start_size: usize,
    /// Share of the epochs trained at `start_size` before the size starts to grow.
    pub ramp_start: f64,
    /// Share of the epochs after which training is at the full size.
    pub ramp_end: f64,
}

impl Default for Progressive {
    fn default() -> Self {
        Self {
            start_size: 32,
            ramp_start: 0.4,
            ramp_end: 0.75,
        }
    }
}

impl Progressive {
    /// Image side for 1-based `epoch` of `epochs`, growing from `start_size` to `full` in steps
    /// of 8 pixels; the last epoch is always at `full`.
    pub fn size_at(&self, epoch: usize, epochs: usize, full: usize) -> usize {
        if epoch >= epochs {
            return full;
        }
        let start = self.start_size.min(full);
        // Where this epoch starts, as a share of the run.
        let done = epoch.saturating_sub(1) as f64 / epochs.max(1) as f64;
        let ramp = (self.ramp_end - self.ramp_start).max(f64::EPSILON);
        let t = ((done - self.ramp_start) / ramp).clamp(0.0, 1.0);
        let grown = ((full - start) as f64 * t) as usize / SIZE_STEP * SIZE_STEP;
        if t >= 1.0 {
            full
        } else {
            (start + grown).min(full)
        }
    }
}

/// The training image side of 1-based `epoch` of `epochs`: `full`, or smaller early in a run
/// with progressive resizing.
pub fn train_size(
    progressive: Option<&Progressive>,
    epoch: usize,
    epochs: usize,
    full: usize,
) -> usize {
    progressive.map_or(full, |p| p.size_at(epoch, epochs, full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_first_then_growing_then_full() {
        let p = Progressive::default();
        let sizes: Vec<usize> = (1..=20).map(|e| p.size_at(e, 20, 48)).collect();
        // 40% of 20 epochs at 32, then a ramp in 8-pixel steps, full from 75%.
        assert_eq!(
            sizes,
            [32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 40, 40, 40, 48, 48, 48, 48, 48]
        );
        // A start as large as the image (or larger) trains at full size throughout.
        let big = Progressive {
            start_size: 64,
            ..p
        };
        assert!((1..=5).all(|e| big.size_at(e, 5, 48) == 48));
        // The last epoch trains at the size the model is evaluated at.
        assert_eq!(p.size_at(1, 1, 48), 48);
        assert_eq!(p.size_at(3, 3, 48), 48);
    }
}
