use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::metrics::EpochMetrics;

/// How training reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Live bars (when stdout is a terminal).
    Bars,
    /// One line per epoch (CI, `| tee`, log files).
    Lines,
    /// Nothing but warnings.
    Quiet,
}

impl ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    pub fn auto() -> Self {
        if std::io::stdout().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        Self { mode, bar: None }
    }

    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    pub fn say(&self, line: &str) {
        match (&self.bar, self.mode) {
            (_, ProgressMode::Quiet) => {}
            (Some(bar), _) => bar.println(line),
            (None, _) => println!("{line}"),
        }
    }

    /// A warning: shown in every mode (also `--quiet`), on stderr.
    pub fn warn(&self, line: &str) {
        let line = format!("warning: {line}");
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// A report for stderr in every mode (e.g. skipped files), line by line.
    pub fn report(&self, lines: &[String]) {
        for line in lines {
            match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
    }

    /// A bar for decoding images (only in `Bars` mode); cleared when dropped.
    pub fn decode_bar(&self) -> Option<DecodeBar> {
        (self.mode == ProgressMode::Bars).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("decoding {bar:30} {pos}/{len} images  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            DecodeBar(bar)
        })
    }

    pub fn start_epoch(&mut self, epoch: usize, epochs: usize, batches: usize) {
        if self.mode != ProgressMode::Bars {
            return;
        }
        let bar = ProgressBar::new(batches as u64);
        let template = format!(
            "epoch {epoch}/{epochs} {{bar:30}} {{pos}}/{{len}} batches  {{msg}}  eta {{eta}}"
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    /// Called after every batch with running means; cheap (indicatif rate-limits drawing).
    pub fn batch(&self, loss: f64, acc: f64, images_per_sec: f64) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!(
                "loss {loss:.4}  acc {:.2}%  {images_per_sec:.1} img/s",
                100.0 * acc
            ));
        }
    }

    pub fn end_epoch(&mut self, m: &EpochMetrics, epochs: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.say(&format!(
            "epoch {}/{epochs}  train loss {:.4} acc {:.2}%  val loss {:.4} acc {:.2}%  lr {:.2e}  {:.1}s  {:.1} img/s  data wait {:.1}%",
            m.epoch,
            m.train_loss,
            100.0 * m.train_acc,
            m.val_loss,
            100.0 * m.val_acc,
            m.lr,
            m.seconds,
            m.images_per_sec,
            100.0 * m.data_wait
        ));
        if m.all_reduce > 0.0 {
            self.say(&format!(
                "  gradient all-reduce across ranks: {:.1}% of the epoch's training time",
                100.0 * m.all_reduce
            ));
        }
    }
}

/// The progress bar of one decoding pass.
pub struct DecodeBar(ProgressBar);

impl DecodeBar {
    /// What the data loader calls after each image.
    pub fn reporter(&self) -> catdog_data::DecodeProgress {
        let bar = self.0.clone();
        std::sync::Arc::new(move |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
    }
}

impl Drop for DecodeBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
