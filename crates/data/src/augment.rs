use serde::{Deserialize, Serialize};

use crate::SplitMix64;

/// Training-only augmentation, applied on the fly while a batch is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Random crop: shift the image by up to this many pixels in x and y, filling the border
    /// with the mean colour (0 after normalisation).
    pub crop_padding: usize,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            flip: true,
            crop_padding: 4,
        }
    }
}

/// One image's draw of the augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Transform {
    pub flip: bool,
    pub dx: isize,
    pub dy: isize,
}

impl Augment {
    pub(crate) fn draw(&self, seed: u64) -> Transform {
        let mut rng = SplitMix64::new(seed);
        let pad = self.crop_padding as isize;
        let flip = self.flip && rng.next_u64() & 1 == 1;
        let mut shift = || {
            if pad > 0 {
                rng.below(2 * pad as usize + 1) as isize - pad
            } else {
                0
            }
        };
        let (dx, dy) = (shift(), shift());
        Transform { flip, dx, dy }
    }
}

/// Writes one HWC u8 image into `out` as normalised CHW f32, applying `t`.
pub(crate) fn write_chw(
    out: &mut [f32],
    src: &[u8],
    size: usize,
    lut: &[[f32; 256]; 3],
    t: Transform,
) {
    let plane = size * size;
    let s = size as isize;
    for y in 0..size {
        let sy = y as isize + t.dy;
        let row_ok = (0..s).contains(&sy);
        for x in 0..size {
            let xm = if t.flip { size - 1 - x } else { x } as isize;
            let sx = xm + t.dx;
            let o = y * size + x;
            if row_ok && (0..s).contains(&sx) {
                let p = (sy as usize * size + sx as usize) * 3;
                out[o] = lut[0][src[p] as usize];
                out[plane + o] = lut[1][src[p + 1] as usize];
                out[2 * plane + o] = lut[2][src[p + 2] as usize];
            } else {
                out[o] = 0.0;
                out[plane + o] = 0.0;
                out[2 * plane + o] = 0.0;
            }
        }
    }
}
