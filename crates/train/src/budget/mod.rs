//! A time budget for a whole run (`--budget 15m`): a probe times a few steps and a validation
//! pass and sets the first epoch count; at every epoch's end the count is planned again from
//! the time that epoch really took, so that training and the final evaluation end within the
//! budget on a machine whose speed drifts. Each count is recorded in the run's `config.json`
//! ([`crate::Replan`]), so the run can be replayed exactly.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::progressive::{train_size, Progressive};

pub(crate) mod planning;

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

    pub const fn from_duration(d: Duration) -> Self {
        Budget(d)
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

/// What the probe measured, in seconds.
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

    /// Every time `factor` times as long (the machine runs slower or faster than it did).
    fn scaled(&self, factor: f64) -> Measured {
        Measured {
            step: self.step * factor,
            small_step: self.small_step.map(|(size, t)| (size, t * factor)),
            inference_per_image: self.inference_per_image * factor,
        }
    }
}

/// Most epochs a budget fits.
const MAX_EPOCHS: usize = 10_000;

/// What is left of the budget must exceed the predicted rest of the run by this share for a new
/// count: the next epoch may run slower than the last (the re-plan after it catches up), and
/// checkpoints, plots and the final files take time the rates leave out.
const MARGIN: f64 = 1.05;

/// The count in force stays while it fits with more than the first of these margins and no
/// more epochs fit with the second: a band around [`MARGIN`], so that the noise in the epochs'
/// times does not move the count up and down from epoch to epoch.
const KEEP_MARGINS: (f64, f64) = (1.035, 1.1);

/// Epochs whose pace is averaged for a re-plan (one epoch's time is noisy)...
const PACE_EPOCHS: usize = 3;

/// ... unless the last epoch ran this much slower than that average: a step change (another
/// program took the cores), taken at once.
const PACE_STEP: f64 = 1.15;

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

/// Not even one epoch fits the budget.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "budget {budget} is too short: after {spent:.0} s of loading and measuring, one epoch and \
     the final evaluation would take about {needed:.0} s more (an epoch {epoch:.0} s); give a \
     longer --budget or an --epochs count"
)]
pub struct BudgetTooShort {
    pub budget: Budget,
    pub spent: f64,
    pub needed: f64,
    pub epoch: f64,
}

impl BudgetPlan {
    /// Seconds that epoch `epoch` of a run of `epochs` takes at the rates `m`: its steps at
    /// its image size and a validation pass.
    pub fn epoch_seconds(&self, m: &Measured, epoch: usize, epochs: usize) -> f64 {
        let full = self.full_size;
        let size = train_size(self.progressive.as_ref(), epoch, epochs, full);
        self.steps_per_epoch as f64 * m.step_at(size, full)
            + self.valid_images as f64 * m.inference_per_image
    }

    /// Seconds the rest of a run of `epochs` epochs needs with `done` of them complete, times
    /// `margin`: the remaining epochs, then the final evaluation (validation once, the held-out
    /// set plain and mirrored).
    fn seconds_to_finish(&self, m: &Measured, done: usize, epochs: usize, margin: f64) -> f64 {
        let train: f64 = (done + 1..=epochs)
            .map(|e| self.epoch_seconds(m, e, epochs))
            .sum();
        let final_eval = (self.valid_images + 2 * self.test_images) as f64 * m.inference_per_image;
        (train + final_eval) * margin
    }

    /// The most epochs in all (never fewer than the `done` ones) whose rest fits in what is
    /// left of the budget after `spent` seconds, at the rates `m`, with the 5% margin.
    pub fn epochs_after(&self, m: &Measured, spent: f64, done: usize) -> usize {
        self.fitting(m, spent, done, MARGIN)
    }

    /// [`Self::epochs_after`] with `margin`. More epochs never cost less, so the count is found
    /// by bisection.
    fn fitting(&self, m: &Measured, spent: f64, done: usize, margin: f64) -> usize {
        let left = self.budget.duration().as_secs_f64() - spent;
        let (mut fits, mut over) = (done, MAX_EPOCHS.max(done) + 1);
        while over - fits > 1 {
            let mid = fits + (over - fits) / 2;
            if self.seconds_to_finish(m, done, mid, margin) <= left {
                fits = mid;
            } else {
                over = mid;
            }
        }
        fits
    }

    /// The count to start with, from the probe's rates after `spent` seconds of loading and
    /// measuring; an error when not even one epoch fits.
    pub fn first_count(&self, m: &Measured, spent: f64) -> Result<usize, BudgetTooShort> {
        match self.epochs_after(m, spent, 0) {
            0 => Err(BudgetTooShort {
                budget: self.budget,
                spent,
                needed: self.seconds_to_finish(m, 0, 1, MARGIN),
                epoch: self.epoch_seconds(m, 1, 1),
            }),
            epochs => Ok(epochs),
        }
    }
}

/// A budget at work: the probe's rates, rescaled at every epoch's end to the time that epoch
/// really took, so that a machine that slows down (or speeds up) during the run changes the
/// count of the epochs still to come.
#[derive(Debug, Clone)]
pub struct BudgetClock {
    pub plan: BudgetPlan,
    probe: Measured,
    /// Each finished epoch's time over the probe's prediction for it.
    paces: Vec<f64>,
}

/// A new count, and the rates it was planned with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replanned {
    pub epochs: usize,
    /// How many times as long as the probe said the epochs take now (see [`BudgetClock::replan`]).
    pub slowdown: f64,
}

impl BudgetClock {
    pub fn new(plan: BudgetPlan, probe: Measured) -> Self {
        BudgetClock {
            plan,
            probe,
            paces: Vec::new(),
        }
    }

    /// The count after epoch `done` of a run planned for `epochs` took `epoch_seconds`
    /// (training, validation, checkpoint and curves), `spent` seconds into the run. The rest is
    /// costed at the recent pace: the mean of the last three epochs', or the last one's when it
    /// jumped above that. The count in force stays while it fits with a 3.5% margin and no more
    /// epochs fit with 10%; else it becomes the most that fit with 5%, and `done` itself when
    /// nothing more fits.
    pub fn replan(
        &mut self,
        spent: f64,
        done: usize,
        epochs: usize,
        epoch_seconds: f64,
    ) -> Replanned {
        let predicted = self.plan.epoch_seconds(&self.probe, done, epochs.max(done));
        let pace = epoch_seconds / predicted.max(1e-9);
        self.paces.push(pace);
        let recent = &self.paces[self.paces.len().saturating_sub(PACE_EPOCHS)..];
        let mean = recent.iter().sum::<f64>() / recent.len() as f64;
        let slowdown = if pace > mean * PACE_STEP { pace } else { mean };
        let now = self.probe.scaled(slowdown);
        let fits = self.plan.fitting(&now, spent, done, MARGIN);
        let (tight, roomy) = KEEP_MARGINS;
        let keeps = self.plan.fitting(&now, spent, done, roomy)
            ..=self.plan.fitting(&now, spent, done, tight);
        Replanned {
            epochs: if keeps.contains(&epochs) {
                epochs
            } else {
                fits
            },
            slowdown,
        }
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

    const FLAT: Measured = Measured {
        step: 0.5,
        small_step: None,
        inference_per_image: 0.01,
    };

    #[test]
    fn epochs_fill_what_is_left_after_the_final_evaluation() {
        // 100 s per epoch (190 steps x 0.5 s + 500 images x 0.01 s), 25 s of final evaluation,
        // 5% margin: (1020 - 95) / 1.05 = 880.9 s, minus 25 s, holds 8 epochs.
        assert_eq!(plan("17m", None).epochs_after(&FLAT, 95.0, 0), 8);
        assert_eq!(plan("17m", None).first_count(&FLAT, 95.0), Ok(8));
        // 18 minutes: (1080 - 95) / 1.05 - 25 = 913.1 s, 9 epochs.
        assert_eq!(plan("18m", None).epochs_after(&FLAT, 95.0, 0), 9);
        // With 3 epochs done at 400 s, (1080 - 400) / 1.05 - 25 = 622.6 s hold 6 more.
        assert_eq!(plan("18m", None).epochs_after(&FLAT, 400.0, 3), 9);
        // Past the point where another epoch fits, the run ends with the epochs it has.
        assert_eq!(plan("18m", None).epochs_after(&FLAT, 1000.0, 7), 7);
        assert_eq!(plan("18m", None).epochs_after(&FLAT, 2000.0, 7), 7);
    }

    #[test]
    fn a_budget_without_room_for_one_epoch_is_refused_with_the_epoch_time() {
        let e = plan("2m", None).first_count(&FLAT, 20.0).unwrap_err();
        // One epoch (100 s) and the final evaluation (25 s), x 1.05, in 100 s left.
        assert_eq!(e.epoch, 100.0);
        assert!((e.needed - 131.25).abs() < 1e-9, "{e:?}");
        let text = e.to_string();
        assert!(text.contains("budget 2m is too short"), "{text}");
        assert!(text.contains("an epoch 100 s"), "{text}");
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
        assert_eq!(plan("17m", None).epochs_after(&m, 95.0, 0), 8);
        // 10 epochs (6 small): 6 x 62 s + 4 x 100 s = 772 s, + 25 s, x 1.05 = 836.9 s <= 925 s;
        // 11 (6 small) would take (872 + 25) x 1.05 = 941.9 s.
        assert_eq!(plan("17m", Some(half_small)).epochs_after(&m, 95.0, 0), 10);
    }

    /// Seconds a machine whose speed at time `t` is `1 / pace(t)` of the probe's takes for
    /// `work` seconds of the probe's rates, starting at `t`, in steps of 10 ms.
    fn run_for(mut t: f64, work: f64, pace: &impl Fn(f64) -> f64) -> f64 {
        let mut left = work;
        while left > 0.0 {
            left -= 0.01 / pace(t);
            t += 0.01;
        }
        t
    }

    /// A whole budgeted run on a simulated clock: `startup` seconds of loading and measuring,
    /// the first count from the probe, every epoch taking as long as `pace` makes it, a re-plan
    /// at each epoch end, the final evaluation. Returns the end time and the epochs run.
    fn simulate(
        plan: &BudgetPlan,
        probe: Measured,
        startup: f64,
        pace: impl Fn(f64) -> f64,
    ) -> (f64, usize) {
        let mut clock = BudgetClock::new(plan.clone(), probe);
        let mut t = startup;
        let mut epochs = plan.first_count(&probe, t).unwrap();
        let mut done = 0;
        while done < epochs {
            let started = t;
            t = run_for(t, plan.epoch_seconds(&probe, done + 1, epochs), &pace);
            done += 1;
            epochs = clock.replan(t, done, epochs, t - started).epochs;
        }
        let final_eval =
            (plan.valid_images + 2 * plan.test_images) as f64 * probe.inference_per_image;
        (run_for(t, final_eval, &pace), done)
    }

    #[test]
    fn the_run_ends_within_its_budget_on_a_machine_that_slows_down() {
        // The default run on a 2-core VM: 281 steps of 0.101 s by the probe, 2,000 validation
        // and 2,000 held-out images at 2 ms, 15 s of loading; the real steps 15% slower than
        // the probe's, then 30% from minute 5, then a third slower than that from minute 10.
        let default_run = BudgetPlan {
            budget: "15m".parse().unwrap(),
            steps_per_epoch: 281,
            valid_images: 2000,
            test_images: 2000,
            full_size: 64,
            progressive: None,
        };
        let probe = Measured {
            step: 0.101,
            small_step: None,
            inference_per_image: 0.002,
        };
        let quiet = simulate(&default_run, probe, 15.0, |_| 1.0);
        let drifting = simulate(&default_run, probe, 15.0, |t| match t {
            t if t < 300.0 => 1.15,
            t if t < 600.0 => 1.3,
            _ => 1.3 * 4.0 / 3.0,
        });
        // `--budget 3m` on 2,000 photos, two CPU hogs from the first minute: epochs 2.7 times
        // as long as before.
        let small = BudgetPlan {
            budget: "3m".parse().unwrap(),
            steps_per_epoch: 28,
            valid_images: 200,
            test_images: 0,
            ..default_run.clone()
        };
        let hogged = simulate(&small, probe, 5.0, |t| if t < 60.0 { 1.0 } else { 2.7 });
        let progressive = BudgetPlan {
            progressive: Some(Progressive::default()),
            ..default_run.clone()
        };
        let probe_small = Measured {
            small_step: Some((32, 0.04)),
            ..probe
        };
        let prog = simulate(&progressive, probe_small, 15.0, |t| {
            if t < 200.0 {
                1.1
            } else {
                1.4
            }
        });
        for (name, budget, (end, epochs)) in [
            ("quiet", 900.0, quiet),
            ("drifting", 900.0, drifting),
            ("hogged", 180.0, hogged),
            ("progressive", 900.0, prog),
        ] {
            eprintln!("{name}: ended at {end:.1} s of {budget} s, {epochs} epochs");
            assert!(
                end <= budget * 1.02,
                "{name}: ended at {end:.1} s of {budget} s"
            );
            // ... and used the budget: no more than an epoch and the margin left over.
            assert!(
                end >= budget * 0.85,
                "{name}: ended at {end:.1} s of {budget} s"
            );
            assert!(epochs >= 1, "{name}");
        }
        // The slowdowns cost epochs: the count follows the machine.
        assert!(drifting.1 < quiet.1, "{drifting:?} {quiet:?}");
        assert!(hogged.1 < simulate(&small, probe, 5.0, |_| 1.0).1);
    }

    #[test]
    fn a_faster_machine_gets_more_epochs() {
        let mut clock = BudgetClock::new(plan("30m", None), FLAT);
        // Planned 10 epochs; the first took half the predicted 100 s.
        let r = clock.replan(150.0, 1, 10, 50.0);
        assert_eq!(r.slowdown, 0.5);
        // (1800 - 150) / 1.05 - 12.5 s of final evaluation holds 31 more epochs of 50 s.
        assert_eq!(r.epochs, 32);
        // Then four times as slow as that, a step change taken at once: (1800 - 300) / 1.05 -
        // 50 = 1378.6 s hold 6 epochs of 200 s.
        assert_eq!(clock.replan(300.0, 1, 32, 200.0).epochs, 7);
    }

    #[test]
    fn noise_in_the_epochs_times_leaves_the_count_alone() {
        let mut clock = BudgetClock::new(plan("3h", None), FLAT);
        // 100 s epochs give or take 6%: the count set after the first stays.
        let first = clock.replan(200.0, 1, 90, 100.0).epochs;
        let mut t = 200.0;
        for (done, took) in (2..40).zip([94.0, 106.0, 100.0, 96.0, 104.0].iter().cycle()) {
            t += took;
            let r = clock.replan(t, done, first, *took);
            assert_eq!(r.epochs, first, "epoch {done} at {t} s: {r:?}");
        }
    }
}
