use std::{path::PathBuf, process::ExitCode};

use catdog_data::printable;
use catdog_train::{
    lr_find::{lr_find, lr_find_plot, LrFindOptions},
    Progress, ProgressMode,
};

use super::{
    args::{GivenFlags, LrFindArgs},
    train::train_config,
    usage, Failure,
};

/// The settings (by argument id) that have no part in a sweep.
const IGNORED_BY_LR_FIND: [&str; 7] = [
    "test",
    "epochs",
    "budget",
    "patience",
    "schedule",
    "warmup_epochs",
    "lr",
];

pub fn run(a: LrFindArgs, given: &GivenFlags) -> Result<ExitCode, Failure> {
    let s = &a.settings;
    let ignored = given.named(|id| IGNORED_BY_LR_FIND.contains(&id));
    if !ignored.is_empty() {
        eprintln!(
            "warning: lr-find sweeps the learning rate itself; ignored: {}",
            ignored.join(", ")
        );
    }
    let mut config = train_config(s, 1)?;
    // The sweep trains on the training split only; a held-out folder plays no part.
    config.test = None;
    let opts = LrFindOptions {
        min_lr: a.min_lr,
        max_lr: a.max_lr,
        steps: a.steps,
    };
    opts.validate()?;
    // Never replaces a file: the plot's name is checked before the sweep (and the file created
    // exclusively after it); each run without --plot gets a free default name.
    let plot = match &a.plot {
        Some(plot) if plot.exists() || plot.symlink_metadata().is_ok() => {
            return Err(usage(anyhow::anyhow!(
                "{} exists: choose another --plot (lr-find never replaces a file)",
                printable(&plot.to_string_lossy())
            )));
        }
        Some(plot) => plot.clone(),
        None => (1..)
            .map(|n| match n {
                1 => PathBuf::from("lr-find.png"),
                n => PathBuf::from(format!("lr-find-{n}.png")),
            })
            .find(|p| p.symlink_metadata().is_err())
            .unwrap_or_default(),
    };
    catdog_train::refuse_inside(
        "plot",
        &plot,
        &config.data,
        "the plot must not be inside the --data folder (it would become a training image): \
         choose another --plot",
    )?;
    let progress = Progress::new(if a.json {
        ProgressMode::Quiet
    } else {
        ProgressMode::Lines
    });
    let finding = lr_find(&config, &opts, &progress)?;
    lr_find_plot(&finding, &plot)?;
    if a.json {
        let mut value = serde_json::to_value(&finding)?;
        value["plot"] = serde_json::to_value(&plot)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let fmt = |lr: Option<f64>| lr.map_or("none (too few steps)".into(), |lr| format!("{lr:.2e}"));
    println!(
        "{} steps from {:.1e} to {:.1e}{}",
        finding.points.len(),
        opts.min_lr,
        finding.points.last().map_or(opts.min_lr, |p| p.lr),
        if finding.stopped_early {
            " (stopped: the loss exploded)"
        } else {
            ""
        }
    );
    println!(
        "suggested peak learning rate (lowest loss / 10): {}",
        fmt(finding.suggested)
    );
    println!(
        "valley:                                          {}",
        fmt(finding.valley)
    );
    println!(
        "steepest descent:                                {}",
        fmt(finding.steepest)
    );
    println!(
        "plot: {}; train with --lr {}",
        printable(&plot.to_string_lossy()),
        fmt(finding.suggested)
    );
    Ok(ExitCode::SUCCESS)
}
