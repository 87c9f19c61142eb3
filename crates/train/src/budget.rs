//! A time budget for a whole run (`--budget 15m`): the trainer measures a few steps and a
//! validation pass, then fixes the number of epochs so that training and the final evaluation
//! end within it, on whatever machine it runs.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

/// A wall-clock budget, written `90s`, `15m`, `1h30m` (or a plain number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Budget(Duration);

impl Budget {
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
    /// One training step (forward, backward, optimiser) at the run's batch size.
    pub step: f64,
    /// Inference on one image.
    pub inference_per_image: f64,
}

/// The most epochs that fit: each costs its steps and a validation pass; the final evaluation
/// (validation once, the held-out set plain and mirrored) and what was spent already come off
/// the budget first. At least 1.
pub fn epochs_within(
    budget: Budget,
    spent: Duration,
    measured: Measured,
    steps_per_epoch: usize,
    valid_images: usize,
    test_images: usize,
) -> usize {
    let left = budget.duration().as_secs_f64() - spent.as_secs_f64();
    let infer = |images: usize| images as f64 * measured.inference_per_image;
    let final_eval = infer(valid_images) + infer(2 * test_images);
    let per_epoch = steps_per_epoch as f64 * measured.step + infer(valid_images);
    // 5% for checkpoints, plots and the variation between epochs.
    let epochs = ((left - final_eval) / (per_epoch * 1.05)).floor();
    if epochs.is_finite() && epochs >= 1.0 {
        epochs.min(10_000.0) as usize
    } else {
        1
    }
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

    #[test]
    fn epochs_fill_what_is_left_after_the_final_evaluation() {
        let m = Measured {
            step: 0.5,
            inference_per_image: 0.01,
        };
        // 100 s per epoch (190 steps x 0.5 s + 500 images x 0.01 s), 25 s of final evaluation.
        let budget: Budget = "17m".parse().unwrap();
        let spent = Duration::from_secs(95);
        // (1020 - 95 - 25) / 105 = 8.57
        assert_eq!(epochs_within(budget, spent, m, 190, 500, 1000), 8);
        // Too little time left still trains one epoch.
        assert_eq!(
            epochs_within("10s".parse().unwrap(), spent, m, 190, 500, 1000),
            1
        );
    }
}
