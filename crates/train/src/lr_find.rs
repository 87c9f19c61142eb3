//! The learning-rate range test (Smith 2015; fastai's `lr_find`): train from the run's own
//! initialisation with a learning rate growing exponentially, one step each, and watch the
//! smoothed loss. It falls where the rate is useful and explodes where it is too high.

use std::path::Path;

use catdog_data::Normalization;
use plotters::prelude::*;
use serde::Serialize;

use crate::{
    dataset::RunData,
    report::plots::{bold, draw_legend, font, render_new, PlotError, GREY, TRAIN, VALID},
    run::settle_run_config,
    trainer::Trainer,
    InvalidSetting, Progress, TrainConfig, TrainError,
};

/// How to sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFindOptions {
    pub min_lr: f64,
    pub max_lr: f64,
    /// Steps from `min_lr` to `max_lr` (fewer when the loss explodes first).
    pub steps: usize,
}

impl Default for LrFindOptions {
    fn default() -> Self {
        Self {
            min_lr: 1e-7,
            max_lr: 10.0,
            steps: 150,
        }
    }
}

impl LrFindOptions {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |field, value: String, fix| Err(InvalidSetting { field, value, fix });
        if !(self.min_lr.is_finite() && self.min_lr > 0.0) {
            return bad(
                "min-lr",
                self.min_lr.to_string(),
                "use a positive rate (e.g. 1e-7)",
            );
        }
        if !(self.max_lr.is_finite() && self.max_lr > self.min_lr) {
            return bad(
                "max-lr",
                format!("{} with --min-lr {}", self.max_lr, self.min_lr),
                "the sweep needs --max-lr above --min-lr (e.g. 10)",
            );
        }
        if !(10..=10_000).contains(&self.steps) {
            return bad(
                "steps",
                self.steps.to_string(),
                "use between 10 and 10000 steps (e.g. 150)",
            );
        }
        Ok(())
    }

    /// The learning rate of each step: geometric from `min_lr` to `max_lr`.
    pub fn schedule(&self) -> Vec<f64> {
        let ratio = (self.max_lr / self.min_lr).ln();
        let last = (self.steps - 1).max(1) as f64;
        (0..self.steps)
            .map(|i| self.min_lr * (ratio * i as f64 / last).exp())
            .collect()
    }
}

/// One step of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LrPoint {
    pub lr: f64,
    pub loss: f64,
    /// Exponential moving average of the loss (debiased), what the suggestions read.
    pub smoothed: f64,
}

/// What the sweep found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LrFinding {
    pub points: Vec<LrPoint>,
    /// The learning rate to train with: [`LrFinding::min_over_10`]. Of the three rules it is
    /// the one that held up on the Kaggle photos (see the README); the others are reported
    /// because curves differ.
    pub suggested: Option<f64>,
    /// Where the smoothed loss falls fastest per unit of log learning rate, before its minimum
    /// (fastai's "steepest"). On flat, noisy curves this lands far too low.
    pub steepest: Option<f64>,
    /// Halfway along the longest stretch over which the smoothed loss keeps falling (fastai's
    /// "valley", with its index rule).
    pub valley: Option<f64>,
    /// The learning rate of the lowest smoothed loss, divided by 10.
    pub min_over_10: Option<f64>,
    /// The loss exploded (or became non-finite) before the sweep reached `max_lr`.
    pub stopped_early: bool,
}

/// Smoothing of the loss curve (fastai's 0.98).
const BETA: f64 = 0.98;
/// The sweep stops once the smoothed loss exceeds this multiple of its minimum.
const EXPLODED: f64 = 4.0;

/// Runs the sweep on `config`'s data and model (a fresh model, seeded as training would be).
/// Writes nothing.
pub fn lr_find(
    config: &TrainConfig,
    opts: &LrFindOptions,
    progress: &Progress,
) -> Result<LrFinding, TrainError> {
    config.validate()?;
    opts.validate()?;
    let opened = config.backend.open(config.device_index)?;
    progress.say(&format!("device: {}", opened.name));
    let data = RunData::load(config, progress)?;
    let norm = Normalization::from_images(&data.train);
    let run_config = settle_run_config(&config.data, config, &data, norm, None)?;
    let ad = opened.device.autodiff();
    let mut trainer = Trainer::new(config, &run_config.spec.model, data.train, &norm, &ad)?;
    let mut sweep = Sweep::default();
    trainer.lr_range_test(&opts.schedule(), |step, lr, loss| {
        let go_on = sweep.push(lr, loss as f64);
        if step % 10 == 0 || !go_on {
            progress.say(&format!(
                "step {:>4}  lr {lr:.2e}  loss {loss:.4}",
                step + 1
            ));
        }
        go_on
    })?;
    Ok(sweep.finding(opts.steps))
}

#[derive(Default)]
struct Sweep {
    points: Vec<LrPoint>,
    average: f64,
    best: f64,
    stopped: bool,
}

impl Sweep {
    /// Adds a step; false once the loss has exploded.
    fn push(&mut self, lr: f64, loss: f64) -> bool {
        if !loss.is_finite() {
            self.stopped = true;
            return false;
        }
        self.average = BETA * self.average + (1.0 - BETA) * loss;
        let smoothed = self.average / (1.0 - BETA.powi(self.points.len() as i32 + 1));
        self.points.push(LrPoint { lr, loss, smoothed });
        if self.points.len() == 1 || smoothed < self.best {
            self.best = smoothed;
        }
        if self.points.len() > 1 && smoothed > EXPLODED * self.best {
            self.stopped = true;
            return false;
        }
        true
    }

    fn finding(self, steps: usize) -> LrFinding {
        let stopped_early = self.stopped || self.points.len() < steps;
        let Suggestions {
            steepest,
            valley,
            min_over_10,
        } = suggestions(&self.points);
        LrFinding {
            points: self.points,
            suggested: min_over_10,
            steepest,
            valley,
            min_over_10,
            stopped_early,
        }
    }
}

/// The three readings of a sweep (see [`LrFinding`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggestions {
    pub steepest: Option<f64>,
    pub valley: Option<f64>,
    pub min_over_10: Option<f64>,
}

/// Reads the smoothed curve. The steepest slope is measured over windows of a fifteenth of the
/// sweep (adjacent points are mostly noise), skipping the first tenth, where the smoothing is
/// still warming up, and stopping at the minimum.
pub fn suggestions(points: &[LrPoint]) -> Suggestions {
    let none = Suggestions {
        steepest: None,
        valley: None,
        min_over_10: None,
    };
    if points.len() < 5 {
        return none;
    }
    let n = points.len();
    let lowest = (0..n)
        .min_by(|&a, &b| points[a].smoothed.total_cmp(&points[b].smoothed))
        .unwrap_or(0);
    let k = (n / 15).max(1);
    let steepest = (n / 10..lowest.saturating_sub(k).max(n / 10))
        .map(|i| {
            let (a, b) = (&points[i], &points[i + k]);
            let slope = (b.smoothed - a.smoothed) / (b.lr.ln() - a.lr.ln());
            (slope, (a.lr * b.lr).sqrt())
        })
        .filter(|(slope, _)| slope.is_finite())
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, lr)| lr);
    // Longest decreasing run (not necessarily contiguous) of the smoothed loss, as fastai.
    let mut run = vec![1usize; n];
    let (mut start, mut end) = (0, 0);
    for i in 1..n {
        for j in 0..i {
            if points[i].smoothed < points[j].smoothed && run[i] < run[j] + 1 {
                run[i] = run[j] + 1;
            }
        }
        if run[i] > run[end] {
            end = i;
            start = end + 1 - run[end];
        }
    }
    let third = (end - start) / 3;
    let valley = (end > start).then(|| points[start + third + third / 2].lr);
    Suggestions {
        steepest,
        valley,
        min_over_10: Some(points[lowest].lr / 10.0),
    }
}

/// `lr-find.png`: the loss (faint) and the smoothed loss against the learning rate on a log
/// axis, with the suggestions marked; written as a new file, never over an existing one.
pub fn lr_find_plot(finding: &LrFinding, path: &Path) -> Result<(), PlotError> {
    render_new(path, (1000, 620), |root| {
        let points = &finding.points;
        let (x0, x1) = points
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.lr), b.max(p.lr)));
        let (x0, x1) = if x0 < x1 { (x0, x1) } else { (1e-7, 10.0) };
        // The y range follows the smoothed curve up to twice its minimum: the explosion at the
        // end would otherwise flatten everything before it.
        let lo = points.iter().map(|p| p.smoothed).fold(f64::MAX, f64::min);
        let start = points.first().map_or(1.0, |p| p.smoothed);
        let (lo, hi) = if lo.is_finite() && lo < f64::MAX {
            (lo, start.max(lo * 2.0).min(lo * 4.0))
        } else {
            (0.0, 1.0)
        };
        let pad = ((hi - lo) * 0.08).max(1e-3);
        let mut chart = ChartBuilder::on(root)
            .caption("Learning-rate range test", bold(26))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d((x0..x1).log_scale(), (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("training loss")
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .label_style(font(16))
            .axis_desc_style(font(18))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let clip = |y: f64| y.clamp(lo - pad, hi + pad);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.lr, clip(p.loss))),
                GREY.mix(0.5).stroke_width(1),
            ))?
            .label("loss per step")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], GREY.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.lr, clip(p.smoothed))),
                TRAIN.stroke_width(3),
            ))?
            .label("smoothed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], TRAIN.stroke_width(3)));
        for (lr, label, color) in [
            (finding.min_over_10, "suggested: minimum / 10", BLACK),
            (finding.valley, "valley", VALID),
            (finding.steepest, "steepest descent", GREY),
        ] {
            let Some(lr) = lr else { continue };
            chart
                .draw_series(LineSeries::new(
                    [(lr, lo - pad), (lr, hi + pad)],
                    color.stroke_width(2),
                ))?
                .label(format!("{label}: {lr:.1e}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(lr: f64, smoothed: f64) -> LrPoint {
        LrPoint {
            lr,
            loss: smoothed,
            smoothed,
        }
    }

    #[test]
    fn the_schedule_is_geometric_from_min_to_max() {
        let opts = LrFindOptions {
            min_lr: 1e-4,
            max_lr: 1.0,
            steps: 5,
        };
        let lrs = opts.schedule();
        let want = [1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        for (a, b) in lrs.iter().zip(want) {
            assert!((a / b - 1.0).abs() < 1e-9, "{lrs:?}");
        }
    }

    #[test]
    fn suggestions_find_the_steepest_fall_and_the_minimum() {
        // Flat, a steep fall between 1e-3 and 1e-2, a minimum at 1e-1, then a rise.
        let lrs: Vec<f64> = (0..41).map(|i| 1e-6 * 10f64.powf(i as f64 / 5.0)).collect();
        let points: Vec<LrPoint> = lrs
            .iter()
            .map(|&lr| {
                let x = lr.log10();
                let y = if x < -3.0 {
                    2.0
                } else if x < -2.0 {
                    2.0 - 1.5 * (x + 3.0)
                } else if x < -1.0 {
                    0.5 - 0.3 * (x + 2.0)
                } else {
                    0.2 + 2.0 * (x + 1.0)
                };
                point(lr, y)
            })
            .collect();
        let found = suggestions(&points);
        let steepest = found.steepest.unwrap();
        assert!((1e-3..1e-2).contains(&steepest), "{steepest}");
        assert!(
            (found.min_over_10.unwrap() / 1e-2 - 1.0).abs() < 1e-9,
            "{found:?}"
        );
        // The loss falls from the end of the plateau (1e-3) to the minimum (1e-1): halfway
        // along that run.
        let valley = found.valley.unwrap();
        assert!((5e-3..2e-2).contains(&valley), "{valley}");
        assert_eq!(suggestions(&points[..3]).min_over_10, None);
    }

    #[test]
    fn the_sweep_stops_when_the_loss_explodes_or_is_not_finite() {
        let mut sweep = Sweep::default();
        assert!(sweep.push(1e-5, 1.0));
        assert!(sweep.push(1e-4, 0.5));
        assert!(!sweep.push(1e-3, 1e6));
        let mut sweep = Sweep::default();
        assert!(sweep.push(1e-5, 1.0));
        assert!(!sweep.push(1e-4, f64::NAN));
        assert!(sweep.finding(10).stopped_early);
    }

    #[test]
    fn impossible_ranges_are_refused() {
        let e = LrFindOptions {
            min_lr: 1.0,
            max_lr: 1.0,
            steps: 100,
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "max-lr");
        assert!(e.to_string().contains("--max-lr above --min-lr"), "{e}");
        let e = LrFindOptions {
            min_lr: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "min-lr");
    }
}
