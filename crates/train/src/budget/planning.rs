//! A run's budget from start to end: the first epoch count from a probe of this machine (or the
//! counts a run's `config.json` recorded), the re-plan after every epoch, and what each says.

use std::time::Instant;

use burn::tensor::Device;
use catdog_data::Normalization;

use super::{BudgetClock, BudgetPlan};
use crate::{dataset::RunData, error::TrainError, trainer::Trainer, Progress, TrainConfig};

/// What the probe times: the run's trainer on its data, validating on the plain device.
pub(crate) struct Probe<'a> {
    pub trainer: &'a Trainer,
    pub data: &'a RunData,
    pub norm: &'a Normalization,
    pub device: &'a Device,
}

/// A budget's first epoch count, from a probe of this machine, recorded in `config`; or the
/// counts already recorded there (a run started from another run's `config.json`, or resumed),
/// followed as they are. Returns the clock that re-plans after every epoch, for a new budget.
pub(crate) fn plan_budget(
    config: &mut TrainConfig,
    probe: Probe<'_>,
    started: Instant,
    resumed: bool,
    progress: &Progress,
) -> Result<Option<BudgetClock>, TrainError> {
    let Some(budget) = config.budget else {
        return Ok(None);
    };
    if resumed || !config.replans.is_empty() {
        if !resumed {
            progress.say(&format!(
                "budget {budget}: following the {} epoch count(s) recorded in the config ({} \
                 epochs in the end), without timing this machine",
                config.replans.len(),
                config.epochs
            ));
        }
        return Ok(None);
    }
    let (trainer, data) = (probe.trainer, probe.data);
    let measured = trainer.measure(data.valid.clone(), probe.norm, probe.device)?;
    let plan = BudgetPlan {
        budget,
        steps_per_epoch: trainer.steps_per_epoch(),
        valid_images: data.valid.len(),
        test_images: data.test.as_ref().map_or(0, |(_, set)| set.len()),
        full_size: config.image_size,
        progressive: config.progressive,
    };
    let epochs = plan.first_count(&measured, started.elapsed().as_secs_f64())?;
    config.replan(0, epochs);
    let small = match measured.small_step {
        Some((size, step)) => format!(" ({step:.3} s at {size}x{size})"),
        None => String::new(),
    };
    progress.say(&format!(
        "budget {budget}: {:.3} s per step{small}, {:.1} ms per image to evaluate -> {epochs} \
         epochs (planned again after each epoch)",
        measured.step,
        1000.0 * measured.inference_per_image,
    ));
    Ok(Some(BudgetClock::new(plan, measured)))
}

/// Plans a budgeted run's count again after epoch `done`, `[spent, took]` being the run's time
/// so far and the epoch's; records and reports a change, and says whether there was one.
pub(crate) fn replan(
    clock: &mut BudgetClock,
    config: &mut TrainConfig,
    done: usize,
    steps_per_epoch: usize,
    [spent, took]: [std::time::Duration; 2],
    progress: &Progress,
) -> bool {
    let r = clock.replan(spent.as_secs_f64(), done, config.epochs, took.as_secs_f64());
    if r.epochs == config.epochs {
        return false;
    }
    progress.say(&format!(
        "budget: epoch {done} took {:.1} s, {:.2}x the probe's pace, at {:.0} s of {} -> {} \
         epochs instead of {}",
        took.as_secs_f64(),
        r.slowdown,
        spent.as_secs_f64(),
        clock.plan.budget,
        r.epochs,
        config.epochs
    ));
    config.replan(done * steps_per_epoch, r.epochs);
    true
}
