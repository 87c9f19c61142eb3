//! Patch-whitening initialisation of the first convolution (Page, "How to train your ResNet",
//! part 8; airbench): its 3x3 filters start as the eigenvectors of the training images' 3x3
//! patch covariance, each scaled by `1 / sqrt(eigenvalue + eps)`, so the first layer's outputs
//! start decorrelated and of equal variance instead of dominated by the few smooth components
//! that carry most of a photo's variance. The filters stay trainable.
//!
//! A first convolution of `c` filters gets, strongest component first: the 27 whitening
//! filters, then (ReLU keeps one sign only) the negated filters of the strongest components
//! up to 54, then its random filters beyond that. The whole tensor is rescaled to the random
//! initialisation's RMS, so the learning rate means what it meant.

use catdog_data::{ImageSet, Normalization, SplitMix64};
use catdog_model::Classifier;

/// Values of an RGB 3x3 patch.
const DIMS: usize = 27;
/// Patches sampled from the training images.
pub const PATCH_SAMPLES: usize = 20_000;
/// Added to every eigenvalue (the data is normalised to unit variance per channel), as
/// airbench: it bounds the gain of the faintest components.
const EPS: f64 = 5e-4;

/// The whitening filters of `set`'s 3x3 patches (normalised with `norm`), strongest component
/// first, each in `[channel][ky][kx]` order; `None` for images smaller than 3x3 or an empty
/// set.
pub fn whitening_filters(
    set: &ImageSet,
    norm: &Normalization,
    seed: u64,
) -> Option<Vec<[f64; DIMS]>> {
    let size = set.image_size;
    if size < 3 || set.is_empty() {
        return None;
    }
    let lut = norm.lookup_table();
    let mut rng = SplitMix64::derive(seed, 0x5748_4954);
    let mut sum = [0.0f64; DIMS];
    let mut cross = vec![[0.0f64; DIMS]; DIMS];
    for _ in 0..PATCH_SAMPLES {
        let pixels = set.image(rng.below(set.len()));
        let (x0, y0) = (rng.below(size - 2), rng.below(size - 2));
        let mut patch = [0.0f64; DIMS];
        for (c, table) in lut.iter().enumerate() {
            for ky in 0..3 {
                for kx in 0..3 {
                    let p = ((y0 + ky) * size + x0 + kx) * 3 + c;
                    patch[c * 9 + ky * 3 + kx] = table[pixels[p] as usize] as f64;
                }
            }
        }
        for i in 0..DIMS {
            sum[i] += patch[i];
            for j in 0..=i {
                cross[i][j] += patch[i] * patch[j];
            }
        }
    }
    let n = PATCH_SAMPLES as f64;
    let mut cov = vec![[0.0f64; DIMS]; DIMS];
    for i in 0..DIMS {
        for j in 0..=i {
            let c = cross[i][j] / n - sum[i] / n * sum[j] / n;
            cov[i][j] = c;
            cov[j][i] = c;
        }
    }
    Some(filters_of(cov))
}

/// The whitening filters of a patch covariance matrix, strongest component first.
fn filters_of(cov: Vec<[f64; DIMS]>) -> Vec<[f64; DIMS]> {
    let (values, vectors) = symmetric_eigen(cov);
    let mut order: Vec<usize> = (0..DIMS).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order
        .into_iter()
        .map(|k| {
            let gain = 1.0 / (values[k].max(0.0) + EPS).sqrt();
            std::array::from_fn(|i| vectors[i][k] * gain)
        })
        .collect()
}

/// Sets `model`'s first convolution to the whitening filters of `set` (see the module
/// comment); a model without a 3x3 RGB convolution, or a set too small to sample, is returned
/// as it was, with `false`.
pub fn whiten_first_conv(
    model: &mut Classifier,
    set: &ImageSet,
    norm: &Normalization,
    seed: u64,
) -> bool {
    let Some((random, [_, 3, 3, 3])) = model.first_conv_weights() else {
        return false;
    };
    let Some(filters) = whitening_filters(set, norm, seed) else {
        return false;
    };
    model.set_first_conv_weights(first_conv_init(&filters, &random))
}

/// The first convolution's new weights `[out, 3, 3, 3]` (row-major) from `filters` and its
/// random initialisation `random` (see the module comment).
pub fn first_conv_init(filters: &[[f64; DIMS]], random: &[f32]) -> Vec<f32> {
    let out = random.len() / DIMS;
    let mut weights = random.to_vec();
    for (o, w) in weights
        .chunks_exact_mut(DIMS)
        .enumerate()
        .take(2 * filters.len())
    {
        let (filter, sign) = match o.checked_sub(filters.len()) {
            None => (&filters[o], 1.0),
            Some(k) => (&filters[k], -1.0),
        };
        for (w, f) in w.iter_mut().zip(filter) {
            *w = (sign * f) as f32;
        }
    }
    let rms =
        |v: &[f32]| (v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let whitened = out.min(2 * filters.len()) * DIMS;
    let (want, have) = (rms(random), rms(&weights[..whitened]));
    if have > 0.0 {
        let scale = (want / have) as f32;
        for w in &mut weights[..whitened] {
            *w *= scale;
        }
    }
    weights
}

/// Eigenvalues and eigenvectors (as columns: `vectors[i][k]` is component `i` of vector `k`)
/// of a symmetric matrix, by cyclic Jacobi rotations.
fn symmetric_eigen(mut a: Vec<[f64; DIMS]>) -> ([f64; DIMS], Vec<[f64; DIMS]>) {
    let mut v = vec![[0.0f64; DIMS]; DIMS];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..DIMS)
            .flat_map(|i| (0..DIMS).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let scale: f64 = (0..DIMS).map(|i| a[i][i] * a[i][i]).sum();
        if off <= 1e-24 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..DIMS {
            for q in p + 1..DIMS {
                if a[p][q].abs() < f64::MIN_POSITIVE {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Numerical Recipes' stable form).
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- A R (columns p, q), then A <- R^T A (rows p, q), then V <- V R.
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p], a[q]);
                for (k, (apk, aqk)) in row_p.into_iter().zip(row_q).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    (std::array::from_fn(|i| a[i][i]), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric positive matrix with a known spread of eigenvalues.
    fn test_matrix() -> Vec<[f64; DIMS]> {
        let mut rng = SplitMix64::new(5);
        let b: Vec<[f64; DIMS]> = (0..DIMS)
            .map(|_| std::array::from_fn(|_| rng.normal()))
            .collect();
        (0..DIMS)
            .map(|i| std::array::from_fn(|j| (0..DIMS).map(|k| b[i][k] * b[j][k]).sum()))
            .collect()
    }

    #[test]
    fn eigenvectors_diagonalise_the_matrix() {
        let a = test_matrix();
        let (values, v) = symmetric_eigen(a.clone());
        for k in 0..DIMS {
            // A v_k = lambda_k v_k, and the vectors are orthonormal.
            for i in 0..DIMS {
                let av: f64 = (0..DIMS).map(|j| a[i][j] * v[j][k]).sum();
                assert!((av - values[k] * v[i][k]).abs() < 1e-8, "A v != lambda v");
            }
            for l in 0..DIMS {
                let dot: f64 = (0..DIMS).map(|i| v[i][k] * v[i][l]).sum();
                assert!((dot - f64::from(u8::from(k == l))).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn filters_whiten_the_covariance_they_come_from() {
        let a = test_matrix();
        let f = filters_of(a.clone());
        let (values, _) = symmetric_eigen(a.clone());
        let mut sorted = values.to_vec();
        sorted.sort_by(|x, y| y.total_cmp(x));
        // F A F^T = diag(lambda / (lambda + eps)): the identity up to eps.
        for k in 0..DIMS {
            for l in 0..DIMS {
                let fafl: f64 = (0..DIMS)
                    .map(|i| f[k][i] * (0..DIMS).map(|j| a[i][j] * f[l][j]).sum::<f64>())
                    .sum();
                let want = if k == l {
                    sorted[k] / (sorted[k] + EPS)
                } else {
                    0.0
                };
                assert!(
                    (fafl - want).abs() < 1e-6,
                    "({k}, {l}): {fafl} against {want}"
                );
            }
        }
    }

    #[test]
    fn filters_fill_the_first_channels_with_both_signs_and_keep_the_scale() {
        let filters: Vec<[f64; DIMS]> = (0..DIMS)
            .map(|k| std::array::from_fn(|i| if i == k { 10.0 / (k + 1) as f64 } else { 0.0 }))
            .collect();
        let random: Vec<f32> = (0..64 * DIMS)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
            .collect();
        let w = first_conv_init(&filters, &random);
        let scale = w[0] as f64 / filters[0][0];
        assert!(scale > 0.0);
        for o in 0..54 {
            let (k, sign) = if o < DIMS { (o, 1.0) } else { (o - DIMS, -1.0) };
            for i in 0..DIMS {
                let want = sign * filters[k][i] * scale;
                assert!((w[o * DIMS + i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
            }
        }
        assert_eq!(
            w[54 * DIMS..],
            random[54 * DIMS..],
            "channels past 54 stay random"
        );
        let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        assert!((rms(&w[..54 * DIMS]) - rms(&random)).abs() < 1e-4);
        // A narrower layer takes the strongest components only.
        let narrow = first_conv_init(&filters, &random[..8 * DIMS]);
        assert_eq!(narrow.len(), 8 * DIMS);
        assert!(narrow[7 * DIMS + 7] > 0.0 && narrow[7 * DIMS + 8] == 0.0);
    }
}
