//! A time budget for a whole run (`--budget 15m`): the trainer measures a few steps and a
//! validation pass, then fixes the number of epochs so that training and the final evaluation
//! end within it, on whatever machine it runs.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::progressive::{train_size, Progressive};

/// A wall-clock budget, written `90s`, `15m`, `1h30m` (or a plain number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Budget(Duration);

impl Budget {
    pub const fn minutes(minutes: u64) -> Self {
        Budget(Duration::from_secs(60 * minutes))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

impl FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a duration: write it as 90s, 15m, 1h30m or a number of seconds")
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Budget(Duration::from_secs(secs)));
        }
        let (mut total, mut number) = (0u64, String::new());
        for c in s.chars() {
            match c {
                '0'..='9' => number.push(c),
                'h' | 'm' | 's' if !number.is_empty() => {
                    let n: u64 = number.parse().map_err(|_| bad())?;
                    let unit = match c {
                        'h' => 3600,
                        'm' => 60,
                        _ => 1,
                    };
                    total = n
                        .checked_mul(unit)
                        .and_then(|v| total.checked_add(v))
                        .ok_or_else(bad)?;
                    number.clear();
                }
                _ => return Err(bad()),
            }
        }
        if !number.is_empty() {
            return Err(bad());
        }
        Ok(Budget(Duration::from_secs(total)))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if sec > 0 || out.is_empty() {
            out.push_str(&format!("{sec}s"));
        }
        f.write_str(&out)
    }
}

impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the warm-up measured, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// One training step (forward, backward, optimiser) at the run's batch and image size.
    pub step: f64,
    /// With progressive resizing: the image side of the first epochs and a step there.
    pub small_step: Option<(usize, f64)>,
    /// Inference on one image.
    pub inference_per_image: f64,
}

impl Measured {
    /// Seconds per step on `size`-pixel images when the full size is `full`: linear in the
    /// pixel count through the two measured sizes (a step's cost is mostly per pixel, plus the
    /// optimiser's fixed part).
    pub fn step_at(&self, size: usize, full: usize) -> f64 {
        let pixels = |side: usize| (side * side) as f64;
        match self.small_step {
            Some((small, t)) if size != full && small != full => {
                let slope = (self.step - t) / (pixels(full) - pixels(small));
                (t + slope * (pixels(size) - pixels(small))).max(0.0)
            }
            _ => self.step * pixels(size) / pixels(full).max(1.0),
        }
    }
}

/// Most epochs a budget fits.
const MAX_EPOCHS: usize = 10_000;

/// What a budget needs to know about a run to fit its epochs.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetPlan {
    pub budget: Budget,
    pub steps_per_epoch: usize,
    pub valid_images: usize,
    pub test_images: usize,
    /// The run's image size, at which every evaluation runs.
    pub full_size: usize,
    pub progressive: Option<Progressive>,
}

impl BudgetPlan {
    /// The most epochs that fit when `spent` of the budget is gone and `steps_done` steps of
    /// the first epoch are trained: each epoch costs its steps (at its image size) and a
    /// validation pass; the final evaluation (validation once, the held-out set plain and
    /// mirrored) comes off the budget first. At least 1.
    pub fn epochs(&self, measured: Measured, spent: Duration, steps_done: usize) -> usize {
        let full = self.full_size;
        let size = |epoch, epochs| train_size(self.progressive.as_ref(), epoch, epochs, full);
        epochs_within(
            self.budget.duration().as_secs_f64() - spent.as_secs_f64(),
            measured.inference_per_image,
            self.valid_images,
            self.test_images,
            |epochs| {
                let steps: f64 = (1..=epochs)
                    .map(|e| self.steps_per_epoch as f64 * measured.step_at(size(e, epochs), full))
                    .sum();
                steps - steps_done as f64 * measured.step_at(size(1, epochs), full)
            },
        )
    }
}

/// The most epochs that fit in `left` seconds when `train_seconds(epochs)` is the training
/// time of a run of that many epochs.
fn epochs_within(
    left: f64,
    inference_per_image: f64,
    valid_images: usize,
    test_images: usize,
    train_seconds: impl Fn(usize) -> f64,
) -> usize {
    let infer = |images: usize| images as f64 * inference_per_image;
    let final_eval = infer(valid_images) + infer(2 * test_images);
    let run_seconds = |epochs: usize| {
        // 8% for checkpoints, plots and the machine's drift over the run: with 5% a default
        // 15-minute run on a 2-core VM, whose steps slowed from 0.110 to 0.118 s, ended 0.3 s
        // late.
        (train_seconds(epochs) + epochs as f64 * infer(valid_images)) * 1.08 + final_eval
    };
    // More epochs never cost less: binary search for the last count that fits.
    let (mut fits, mut over) = (1, MAX_EPOCHS + 1);
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if run_seconds(mid) <= left {
            fits = mid;
        } else {
            over = mid;
        }
    }
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, secs, shown) in [
            ("90s", 90, "1m30s"),
            ("15m", 900, "15m"),
            ("1h30m", 5400, "1h30m"),
            ("45", 45, "45s"),
            ("2h", 7200, "2h"),
        ] {
            let b: Budget = text.parse().unwrap();
            assert_eq!(b.duration().as_secs(), secs, "{text}");
            assert_eq!(b.to_string(), shown);
        }
        for bad in ["", "m", "15x", "1.5h", "15m3", "-5m"] {
            let e = bad.parse::<Budget>().unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
    }

    fn plan(budget: &str, progressive: Option<Progressive>) -> BudgetPlan {
        BudgetPlan {
            budget: budget.parse().unwrap(),
            steps_per_epoch: 190,
            valid_images: 500,
            test_images: 1000,
            full_size: 48,
            progressive,
        }
    }

    #[test]
    fn epochs_fill_what_is_left_after_the_final_evaluation() {
        let m = Measured {
            step: 0.5,
            small_step: None,
            inference_per_image: 0.01,
        };
        // 100 s per epoch (190 steps x 0.5 s + 500 images x 0.01 s), 25 s of final evaluation.
        let spent = Duration::from_secs(95);
        // (1020 - 95 - 25) / (100 x 1.08) = 8.33
        assert_eq!(plan("17m", None).epochs(m, spent, 0), 8);
        // With 18 minutes, (1080 - 95 - 25) / 108 = 8.89 epochs fit from scratch; with 95 steps
        // of the first epoch done (47.5 s less to train), (960 / 1.08 + 47.5) / 100 = 9.36.
        assert_eq!(plan("18m", None).epochs(m, spent, 0), 8);
        assert_eq!(plan("18m", None).epochs(m, spent, 95), 9);
        // Too little time left still trains one epoch.
        assert_eq!(plan("10s", None).epochs(m, spent, 0), 1);
    }

    #[test]
    fn smaller_images_cost_what_the_two_measured_sizes_say() {
        let m = Measured {
            step: 0.5,
            small_step: Some((32, 0.3)),
            inference_per_image: 0.01,
        };
        assert!((m.step_at(48, 48) - 0.5).abs() < 1e-12);
        assert!((m.step_at(32, 48) - 0.3).abs() < 1e-12);
        // 40x40 is 1600 px, 576 of the 1280 between 32x32 and 48x48.
        assert!((m.step_at(40, 48) - (0.3 + 0.2 * 576.0 / 1280.0)).abs() < 1e-12);
        // Without a second measurement the cost is proportional to the pixels.
        let plain = Measured {
            small_step: None,
            ..m
        };
        assert!((plain.step_at(24, 48) - 0.125).abs() < 1e-12);
        // Cheaper early epochs buy more of them: those that start by half the run at 0.3 s.
        let half_small = Progressive {
            start_size: 32,
            ramp_start: 0.5,
            ramp_end: 0.5,
        };
        let spent = Duration::from_secs(95);
        assert_eq!(plan("17m", None).epochs(m, spent, 0), 8);
        // 10 epochs (6 small): 6 x 57 s + 4 x 95 s + 10 x 5 s = 772 s, x 1.08 + 25 = 858.8 s
        // <= 925 s; 11 (6 small) would take 872 x 1.08 + 25 = 966.8 s.
        assert_eq!(plan("17m", Some(half_small)).epochs(m, spent, 0), 10);
    }
}
