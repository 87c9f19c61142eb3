//! Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017): one
//! scalar `T`, fitted on the validation split after training, so that `softmax(logits / T)`
//! says how often the model is right. It changes no prediction (the argmax is the same at every
//! positive `T`), only how sure the probabilities are; the model still outputs raw logits.

use catdog_model::argmax;

use crate::report::metrics::ImageResult;

/// The temperatures a fit may choose. Beyond them a validation split is too small or too easy
/// (every image right by a wide margin) for the fit to mean anything.
pub const TEMPERATURE_RANGE: (f32, f32) = (0.05, 20.0);

/// The temperature that minimises the mean negative log-likelihood of the true classes under
/// `softmax(logits / T)`, within [`TEMPERATURE_RANGE`]; `None` without images or with a
/// non-finite logit (nothing to fit).
pub fn fit_temperature(images: &[ImageResult]) -> Option<f32> {
    if images.is_empty()
        || images
            .iter()
            .any(|image| image.logits.iter().any(|l| !l.is_finite()))
    {
        return None;
    }
    // The NLL is convex in beta = 1 / T, so it has one minimum along ln(beta): a golden-section
    // search finds it to far below f32 precision in 100 steps.
    let nll = |ln_beta: f64| mean_nll(images, ln_beta.exp());
    let (t_lo, t_hi) = TEMPERATURE_RANGE;
    let (mut lo, mut hi) = ((1.0 / f64::from(t_hi)).ln(), (1.0 / f64::from(t_lo)).ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (nll(a), nll(b));
    for _ in 0..100 {
        if fa <= fb {
            hi = b;
            (b, fb) = (a, fa);
            a = hi - ratio * (hi - lo);
            fa = nll(a);
        } else {
            lo = a;
            (a, fa) = (b, fb);
            b = lo + ratio * (hi - lo);
            fb = nll(b);
        }
    }
    let t = (1.0 / (0.5 * (lo + hi)).exp()) as f32;
    Some(t.clamp(t_lo, t_hi))
}

/// Mean cross-entropy of the true classes under `softmax(beta * logits)`, with log-sum-exp:
/// `beta * (max - z_true) + ln(1 + sum over the other classes of exp(beta * (z - max)))`, the
/// `ln_1p` keeping the tiny losses of confident, right images apart (a plain `ln` rounds them
/// all to 0 and the fit would have nothing to tell them by).
pub fn mean_nll(images: &[ImageResult], beta: f64) -> f64 {
    let total: f64 = images
        .iter()
        .map(|image| {
            let z = &image.logits;
            let top = argmax(z);
            let max = f64::from(z[top]);
            let others: f64 = z
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != top)
                .map(|(_, &l)| (beta * (f64::from(l) - max)).exp())
                .sum();
            beta * (max - f64::from(z[image.label])) + others.ln_1p()
        })
        .sum();
    total / images.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics::image_results;

    fn images(logits: &[f32], labels: &[usize]) -> Vec<ImageResult> {
        let classes = ["a".to_string(), "b".to_string()];
        image_results(logits, labels, &[], &classes, 1.0).unwrap()
    }

    /// Draws logits from a model whose true probabilities are `softmax(logits / t)`: the fit
    /// must find `t` again.
    fn sampled(t: f32, n: usize) -> Vec<ImageResult> {
        let mut state = 12345u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let margin = (uniform() * 8.0 - 4.0) as f32;
            let p_a = 1.0 / (1.0 + (-(margin / t) as f64).exp());
            logits.extend([margin, 0.0]);
            labels.push(if uniform() < p_a { 0 } else { 1 });
        }
        images(&logits, &labels)
    }

    #[test]
    fn finds_the_temperature_that_generated_the_labels() {
        for t in [0.5f32, 1.0, 2.5] {
            let fitted = fit_temperature(&sampled(t, 20_000)).unwrap();
            assert!(
                (fitted / t - 1.0).abs() < 0.06,
                "generated at T = {t}, fitted {fitted}"
            );
        }
    }

    #[test]
    fn the_fit_minimises_the_nll() {
        let set = sampled(1.7, 2_000);
        let t = fit_temperature(&set).unwrap() as f64;
        let best = mean_nll(&set, 1.0 / t);
        for other in [0.9 * t, 0.97 * t, 1.03 * t, 1.1 * t, 1.0] {
            assert!(mean_nll(&set, 1.0 / other) >= best, "T {other} beats {t}");
        }
    }

    #[test]
    fn stays_in_range_and_refuses_what_cannot_be_fitted() {
        // Every image right by a wide margin: sharper is always better, up to the bound.
        let easy = images(&[9.0, -9.0, -9.0, 9.0], &[0, 1]);
        let t = fit_temperature(&easy).unwrap();
        assert!((t / TEMPERATURE_RANGE.0 - 1.0).abs() < 1e-4, "{t}");
        // Every image wrong: flatter is always better.
        let wrong = images(&[9.0, -9.0, -9.0, 9.0], &[1, 0]);
        let t = fit_temperature(&wrong).unwrap();
        assert!((t / TEMPERATURE_RANGE.1 - 1.0).abs() < 1e-4, "{t}");
        assert_eq!(fit_temperature(&[]), None);
        let mut inf = images(&[1.0, 0.0], &[0]);
        inf[0].logits[0] = f32::INFINITY;
        assert_eq!(fit_temperature(&inf), None);
    }
}
