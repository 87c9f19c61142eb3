//! What the inference path does to a convolution's output while a chunk of it is still in
//! cache, instead of in passes of its own over the whole batch: a per-channel affine (the
//! BatchNorm's running statistics folded into `y * scale + shift`), the ReLU and, optionally, a
//! 2x2/stride-2 max-pool (windows that do not fit are dropped, as burn's pool without padding).
//!
//! The rules are burn's: a NaN passes the ReLU and wins its pool window (tested against
//! `batch_norm` -> `max_pool2d` -> `relu` in `tests/conv_inference.rs`). The loops are written
//! without branches on the data, so that they vectorise.

/// The per-channel affine, the ReLU and the optional pool.
pub struct Epilogue<'a> {
    /// `[channels]`: `gamma / sqrt(running_var + epsilon)`.
    pub scale: &'a [f32],
    /// `[channels]`: `beta - running_mean * scale`.
    pub shift: &'a [f32],
    pub pool: bool,
}

impl Epilogue<'_> {
    /// Values per image of the result for a `[channels, h, w]` convolution output.
    pub fn output_len(&self, [c, h, w]: [usize; 3]) -> usize {
        if self.pool {
            c * (h / 2) * (w / 2)
        } else {
            c * h * w
        }
    }

    /// Applies to `y [images, c, h, w]`: in place without the pool; with it, the pooled
    /// `[images, c, h/2, w/2]` written into `pooled` (and `y` left as it was).
    pub fn apply(&self, y: &mut [f32], [c, h, w]: [usize; 3], pooled: &mut [f32]) {
        let plane = h * w;
        if plane == 0 || c == 0 {
            return;
        }
        if !self.pool {
            for (p, values) in y.chunks_exact_mut(plane).enumerate() {
                let (s, b) = (self.scale[p % c], self.shift[p % c]);
                for v in values {
                    *v = relu(*v * s + b);
                }
            }
            return;
        }
        let (h2, w2) = (h / 2, w / 2);
        if h2 * w2 == 0 {
            return;
        }
        for (p, (values, out)) in y
            .chunks_exact(plane)
            .zip(pooled.chunks_exact_mut(h2 * w2))
            .enumerate()
        {
            let (s, b) = (self.scale[p % c], self.shift[p % c]);
            for (oh, out) in out.chunks_exact_mut(w2).enumerate() {
                let top = &values[2 * oh * w..][..2 * w2];
                let bottom = &values[(2 * oh + 1) * w..][..2 * w2];
                let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
                for (o, (t, u)) in out.iter_mut().zip(windows) {
                    let m = wins(
                        wins(wins(t[0] * s + b, t[1] * s + b), u[0] * s + b),
                        u[1] * s + b,
                    );
                    *o = relu(m);
                }
            }
        }
    }
}

/// burn's ReLU: NaN passes.
#[inline(always)]
fn relu(y: f32) -> f32 {
    if y <= 0.0 {
        0.0
    } else {
        y
    }
}

/// The larger of a window's best so far and the next value by burn's pool rules: the first of
/// equal values stays, a NaN wins and then stays.
#[inline(always)]
fn wins(best: f32, next: f32) -> f32 {
    if next > best || (next.is_nan() && !best.is_nan()) {
        next
    } else {
        best
    }
}
