//! Batch mixing (mixup, CutMix): each training image is combined with another image of its
//! batch and learns both labels, weighted by how much of each it shows.
//!
//! One draw per batch, as in the reference implementations: a share `λ ~ Beta(alpha, alpha)`;
//! image `i` is mixed with image `i + 1` (the last with the first; batches are shuffled, so
//! that partner is random). Mixup blends the two, `λ x_i + (1 - λ) x_partner`; CutMix pastes a
//! box covering about `1 - λ` of the partner into the image and sets `λ` to the share that was
//! not covered. The loss is then `λ CE(logits, y_i) + (1 - λ) CE(logits, y_partner)`.

use serde::{Deserialize, Serialize};

use crate::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum MixKind {
    /// Blend the whole images (Zhang et al., 2018).
    Mixup,
    /// Paste a rectangle of the partner (Yun et al., 2019).
    Cutmix,
}

impl std::fmt::Display for MixKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MixKind::Mixup => "mixup",
            MixKind::Cutmix => "cutmix",
        })
    }
}

/// Mixing settings (training only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mix {
    pub kind: MixKind,
    /// `λ ~ Beta(alpha, alpha)`: 1 is uniform; smaller values keep most images nearly whole.
    pub alpha: f64,
    /// Share of batches that are mixed; the others train on whole images.
    pub probability: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            kind: MixKind::Cutmix,
            alpha: 1.0,
            probability: 0.5,
        }
    }
}

/// The second label of every image of a mixed batch and the first label's weight.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedLabels {
    /// The partner's label, per image.
    pub partner: Vec<i64>,
    /// Weight of the image's own label (`λ`); the partner's is `1 - λ`.
    pub weight: f32,
}

/// Index of image `i`'s partner in a batch of `n`.
fn partner(i: usize, n: usize) -> usize {
    (i + 1) % n
}

impl Mix {
    /// Mixes the `[n, 3, size, size]` `images` in place (or leaves them, for a batch drawn not
    /// to mix or of fewer than two images) and returns the partner labels and weight.
    pub fn apply(
        &self,
        images: &mut [f32],
        labels: &[i64],
        size: usize,
        seed: u64,
    ) -> Option<MixedLabels> {
        let n = labels.len();
        let per_image = 3 * size * size;
        if n < 2 || images.len() != n * per_image {
            return None;
        }
        let mut rng = SplitMix64::new(seed);
        if rng.unit() as f64 >= self.probability {
            return None;
        }
        let lambda = rng.beta(self.alpha, self.alpha);
        let original = images.to_vec();
        let weight = match self.kind {
            MixKind::Mixup => {
                let (a, b) = (lambda as f32, 1.0 - lambda as f32);
                for (i, out) in images.chunks_exact_mut(per_image).enumerate() {
                    let other = &original[partner(i, n) * per_image..][..per_image];
                    for (o, &p) in out.iter_mut().zip(other) {
                        *o = a * *o + b * p;
                    }
                }
                a
            }
            MixKind::Cutmix => {
                let cut = CutBox::draw(&mut rng, lambda, size);
                for (i, out) in images.chunks_exact_mut(per_image).enumerate() {
                    let other = &original[partner(i, n) * per_image..][..per_image];
                    cut.paste(out, other, size);
                }
                1.0 - cut.area() as f32 / (size * size) as f32
            }
        };
        Some(MixedLabels {
            partner: (0..n).map(|i| labels[partner(i, n)]).collect(),
            weight,
        })
    }
}

/// CutMix's rectangle: rows `y0..y1`, columns `x0..x1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CutBox {
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
}

impl CutBox {
    /// A box of sides `size * sqrt(1 - λ)` centred on a uniform pixel, clipped to the image
    /// (so near an edge it covers less than `1 - λ`; the weight uses the clipped area).
    fn draw(rng: &mut SplitMix64, lambda: f64, size: usize) -> Self {
        let side = (size as f64 * (1.0 - lambda).max(0.0).sqrt()).round() as usize;
        let cx = rng.below(size);
        let cy = rng.below(size);
        let lo = |c: usize| c.saturating_sub(side / 2);
        let hi = |c: usize| (c + side - side / 2).min(size);
        Self {
            x0: lo(cx),
            x1: hi(cx),
            y0: lo(cy),
            y1: hi(cy),
        }
    }

    fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }

    /// Copies the box of every channel plane of `from` into `to` (`[3, size, size]` each).
    fn paste(&self, to: &mut [f32], from: &[f32], size: usize) {
        for (to, from) in to
            .chunks_exact_mut(size * size)
            .zip(from.chunks_exact(size * size))
        {
            for y in self.y0..self.y1 {
                let row = y * size;
                to[row + self.x0..row + self.x1]
                    .copy_from_slice(&from[row + self.x0..row + self.x1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images of `size` pixels, image `i` filled with the value `i`.
    fn constant_images(n: usize, size: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| std::iter::repeat_n(i as f32, 3 * size * size))
            .collect()
    }

    fn always(kind: MixKind) -> Mix {
        Mix {
            kind,
            alpha: 1.0,
            probability: 1.0,
        }
    }

    #[test]
    fn cutmix_pastes_the_partners_box_and_weights_by_the_uncovered_share() {
        let (n, size) = (4, 10);
        let labels = [0, 1, 1, 0];
        let mut mixed_some = 0;
        for seed in 0..50 {
            let mut images = constant_images(n, size);
            let m = always(MixKind::Cutmix)
                .apply(&mut images, &labels, size, seed)
                .expect("probability 1 always mixes");
            assert_eq!(m.partner, vec![1, 1, 0, 0]);
            for (i, image) in images.chunks_exact(3 * size * size).enumerate() {
                let own = image.iter().filter(|&&v| v == i as f32).count();
                let theirs = image.iter().filter(|&&v| v == ((i + 1) % n) as f32).count();
                // Every pixel is the image's own or its partner's, the same box in each.
                assert_eq!(own + theirs, image.len());
                assert!((own as f32 / image.len() as f32 - m.weight).abs() < 1e-6);
            }
            mixed_some += usize::from(m.weight < 1.0);
        }
        assert!(mixed_some > 40, "boxes were pasted in {mixed_some} of 50");
    }

    #[test]
    fn mixup_blends_with_the_weight_it_reports() {
        let (n, size) = (3, 4);
        let mut images = constant_images(n, size);
        let m = always(MixKind::Mixup)
            .apply(&mut images, &[0, 1, 0], size, 7)
            .expect("probability 1 always mixes");
        assert_eq!(m.partner, vec![1, 0, 0]);
        for (i, image) in images.chunks_exact(3 * size * size).enumerate() {
            let want = m.weight * i as f32 + (1.0 - m.weight) * ((i + 1) % n) as f32;
            assert!(image.iter().all(|&v| (v - want).abs() < 1e-5));
        }
    }

    #[test]
    fn the_seed_decides_and_probability_skips_batches() {
        let size = 6;
        let labels = [0, 1, 0, 1];
        let run = |seed, mix: Mix| {
            let mut images = constant_images(4, size);
            let m = mix.apply(&mut images, &labels, size, seed);
            (images, m)
        };
        let mix = Mix::default();
        assert_eq!(run(3, mix), run(3, mix));
        let mixed = (0..200).filter(|&s| run(s, mix).1.is_some()).count();
        assert!((70..130).contains(&mixed), "{mixed} of 200 batches mixed");
        let (untouched, none) = run(
            3,
            Mix {
                probability: 0.0,
                ..mix
            },
        );
        assert_eq!((untouched, none), (constant_images(4, size), None));
        // One image has no partner.
        assert_eq!(
            always(MixKind::Mixup).apply(&mut [0.5; 108], &[1], size, 1),
            None
        );
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_spread() {
        let mut rng = SplitMix64::new(11);
        for (a, b) in [(1.0, 1.0), (0.4, 0.4), (2.0, 5.0)] {
            let draws: Vec<f64> = (0..20_000).map(|_| rng.beta(a, b)).collect();
            assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
            let want_mean = a / (a + b);
            let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
            assert!((mean - want_mean).abs() < 0.01, "Beta({a},{b}) mean {mean}");
            assert!(
                (var - want_var).abs() < 0.1 * want_var,
                "Beta({a},{b}) var {var}"
            );
        }
    }
}
