use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use catdog_data::Mix;
use catdog_infer::model_io::WEIGHTS_FILE;
use catdog_train::{
    train, Budget, LookaheadConfig, ProgressMode, Progressive, Recipe, TrainConfig, TrainRequest,
    DEFAULT_BUDGET,
};

use super::{
    args::{GivenFlags, SettingsArgs, TrainArgs},
    usage,
    world::World,
    Failure,
};

/// The default data location, filled by `data/fetch.sh`.
const DEFAULT_DATA: &str = "data/dogs-vs-cats/train";
const DEFAULT_TEST: &str = "data/dogs-vs-cats/test";

/// The settings `--resume` takes from the command line (by argument id); it keeps the run's
/// own for every other and names those given.
const TAKEN_ON_RESUME: [&str; 2] = ["epochs", "test"];

pub fn run(a: TrainArgs, given: &GivenFlags) -> Result<ExitCode, Failure> {
    let mut world = World::open()?;
    let summary = match train_as_rank(&a, given, &mut world) {
        Ok(summary) => summary,
        Err(failure) => {
            world.abort_on_failure(&failure);
            return Err(failure);
        }
    };
    // Rank 0 alone reports; the others' folders were scratch.
    if world.rank() > 0 {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\nrun folder: {}\nvalidation accuracy: {:.2}% ({} images)",
        summary.run_dir.display(),
        100.0 * summary.validation.accuracy,
        summary.validation.images
    );
    // Flip TTA first: it is how eval, predict and serve classify by default.
    if let (Some(t), Some(flip)) = (&summary.test, &summary.test_flip_tta) {
        println!(
            "held-out test accuracy: {:.2}% with flip TTA (the default of eval, predict and \
             serve), {:.2}% with one forward pass ({} images); calibration error {:.2}% and \
             {:.2}% at temperature {:.3}",
            100.0 * flip.accuracy,
            100.0 * t.accuracy,
            t.images,
            100.0 * flip.calibration.ece,
            100.0 * t.calibration.ece,
            t.temperature
        );
    }
    let weights = summary.run_dir.join(WEIGHTS_FILE);
    if summary.train_images_per_sec > 0.0 {
        println!(
            "{} epochs in {:.1} s, {:.1} training images/s; weights: {}",
            summary.epochs_run,
            summary.wall_seconds,
            summary.train_images_per_sec,
            weights.display()
        );
    } else {
        println!(
            "{} epochs, all trained before this resume; evaluated in {:.1} s; weights: {}",
            summary.epochs_run,
            summary.wall_seconds,
            weights.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// This process's part of the run: all of it alone, or one rank's under `mpirun`.
fn train_as_rank(
    a: &TrainArgs,
    given: &GivenFlags,
    world: &mut World,
) -> Result<catdog_train::Summary, Failure> {
    let (config, out, resume) = settings(a, given)?;
    let out = world.run_folder(&out, resume)?;
    let progress = if a.quiet || world.rank() > 0 {
        ProgressMode::Quiet
    } else {
        ProgressMode::auto()
    };
    Ok(train(TrainRequest {
        config,
        out,
        resume,
        force: a.force && world.rank() == 0,
        progress,
        world: world.collective(),
    })?)
}

/// The training settings: defaults, then `--config`, then flags; all checked before any work.
fn settings(a: &TrainArgs, given: &GivenFlags) -> Result<(TrainConfig, PathBuf, bool), Failure> {
    if let Some(dir) = &a.resume {
        let ignored = given.named(|id| !TAKEN_ON_RESUME.contains(&id));
        if !ignored.is_empty() {
            eprintln!(
                "warning: --resume continues with the run's own settings; ignored: {}",
                ignored.join(", ")
            );
        }
        let mut c = TrainConfig {
            epochs: 0,
            test: a.settings.test.clone(),
            ..TrainConfig::default()
        };
        if let Some(epochs) = a.settings.epochs {
            c.epochs = epochs;
        }
        if let Some(t) = &c.test {
            check_folder("--test", t, false)?;
        }
        return Ok((c, dir.clone(), true));
    }
    let c = train_config(&a.settings, 1)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(timestamp()));
    Ok((c, out, false))
}

/// The training settings of the flags: defaults, then `--config`, then flags; all checked
/// before any work. Without a config file or an epoch count, the budget of each of the `runs`
/// training runs that share it picks the model, input size and progressive schedule
/// ([`Recipe::for_budget`]), unless `--arch` names another kind of network.
pub(super) fn train_config(s: &SettingsArgs, runs: u32) -> Result<TrainConfig, Failure> {
    let mut c = match &s.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => TrainConfig::default(),
    };
    if s.config.is_none() && s.epochs.is_none() {
        let budget = s.budget.unwrap_or(DEFAULT_BUDGET);
        let recipe = Recipe::for_budget(Budget::from_duration(budget.duration() / runs.max(1)));
        let chosen = s.arch.map(|a| a.architecture());
        if chosen.is_none_or(|m| recipe.model.same_kind(&m)) {
            recipe.apply(&mut c);
        }
    }
    let default_data = s.data.is_none() && s.config.is_none();
    if let Some(v) = &s.data {
        c.data = v.clone();
    }
    if let Some(v) = &s.exclude {
        c.exclude = Some(v.clone());
    }
    if let Some(v) = &s.test {
        c.test = Some(v.clone());
    } else if default_data && c.test.is_none() && Path::new(DEFAULT_TEST).is_dir() {
        c.test = Some(PathBuf::from(DEFAULT_TEST));
    }
    // Another kind of network than the config's, at its default widths.
    if let Some(arch) = s.arch {
        let model = arch.architecture();
        if !model.same_kind(&c.model) {
            c.model = model;
        }
    }
    macro_rules! set {
        ($flag:expr, $field:expr) => {
            if let Some(v) = $flag {
                $field = v;
            }
        };
    }
    set!(s.image_size, c.image_size);
    if let Some(start_size) = s.progressive {
        let schedule = c.progressive.unwrap_or_default();
        c.progressive = Some(Progressive {
            start_size,
            ..schedule
        });
    }
    if s.no_progressive {
        c.progressive = None;
    }
    // A new budget or an epoch count replaces the epoch counts a run's config recorded.
    if let Some(budget) = s.budget {
        c.budget = Some(budget);
        c.replans.clear();
    }
    // An explicit epoch count wins over a budget (from the flags or the config file).
    if let Some(epochs) = s.epochs {
        c.epochs = epochs;
        c.budget = None;
        c.replans.clear();
    }
    set!(s.batch_size, c.batch_size);
    set!(s.optimizer, c.optim.optimizer);
    set!(s.lr, c.optim.lr);
    set!(s.weight_decay, c.optim.weight_decay);
    set!(s.momentum, c.optim.momentum);
    set!(s.schedule, c.optim.schedule);
    set!(s.warmup_epochs, c.optim.warmup_epochs);
    set!(s.label_smoothing, c.label_smoothing);
    set!(s.validation_fraction, c.validation_fraction);
    set!(s.seed, c.seed);
    set!(s.backend.backend, c.backend);
    if s.ema.is_some() {
        c.ema = s.ema;
    }
    if s.no_ema {
        c.ema = None;
    }
    if let Some(steps) = s.lookahead {
        c.lookahead = Some(LookaheadConfig {
            steps,
            ..c.lookahead.unwrap_or_default()
        });
    }
    if s.patience.is_some() {
        c.patience = s.patience;
    }
    if s.backend.device_index.is_some() {
        c.device_index = s.backend.device_index;
    }
    if s.no_augment {
        c.augment = None;
    }
    c.whiten |= s.whiten;
    if let Some(precision) = s.precision {
        c.precision = precision;
    }
    if let Some(kind) = s.mix {
        c.mix = Some(Mix {
            kind,
            ..c.mix.unwrap_or_default()
        });
    }
    if s.cache_dir.is_some() {
        c.cache_dir = s.cache_dir.clone();
    }
    c.no_cache |= s.no_cache;
    c.validate()?;

    check_folder(
        "--data",
        &c.data,
        default_data && c.data == Path::new(DEFAULT_DATA),
    )?;
    if let Some(t) = &c.test {
        check_folder("--test", t, false)?;
    }
    Ok(c)
}

fn check_folder(flag: &str, path: &Path, is_default: bool) -> Result<(), Failure> {
    if path.is_dir() {
        return Ok(());
    }
    let hint = if is_default {
        "run data/fetch.sh first to get the cats-vs-dogs images, or pass --data DIR"
    } else if path.exists() {
        "it is a file; pass a folder of images"
    } else {
        "check the path"
    };
    Err(usage(anyhow::anyhow!(
        "{flag} {} is not a folder: {hint}",
        path.display()
    )))
}

/// `YYYYmmdd-HHMMSS` in UTC, for default run folder names.
pub(super) fn timestamp() -> String {
    chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use catdog_model::Architecture;
    use catdog_train::RESNET_IMAGE_SIZE;
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    /// The settings `catdog train ARGS` would run with (on an empty data folder).
    fn settings(args: &[&str]) -> TrainConfig {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_str().unwrap();
        let head = ["catdog", "train", "--data", data];
        let argv = head.iter().chain(args);
        let Command::Train(a) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        match train_config(&a.settings, 1) {
            Ok(c) => c,
            Err(_) => panic!("{args:?} refused"),
        }
    }

    #[test]
    fn the_budget_picks_the_recipe_unless_flags_or_a_file_choose() {
        let is_resnet = |c: &TrainConfig| matches!(c.model, Architecture::ResNet(_));
        let default = TrainConfig::default();
        // 15 minutes (the default) and 5: the CNN at its default size, no progressive resizing.
        for args in [&[][..], &["--budget", "5m"], &["--budget", "24m"]] {
            let c = settings(args);
            assert_eq!(
                (&c.model, c.image_size, c.progressive),
                (&default.model, default.image_size, default.progressive),
                "{args:?}"
            );
        }
        // 30 minutes: the ResNet, resized progressively up to 56x56.
        let c = settings(&["--budget", "30m"]);
        assert!(is_resnet(&c));
        assert_eq!(c.image_size, RESNET_IMAGE_SIZE);
        assert_eq!(c.progressive, Some(Progressive::default()));
        // The same kind named: the recipe stays; flags change only what they name.
        let c = settings(&["--budget", "30m", "--arch", "resnet", "--image-size", "64"]);
        assert!(is_resnet(&c) && c.progressive.is_some());
        assert_eq!(c.image_size, 64);
        let c = settings(&["--budget", "1h", "--no-progressive"]);
        assert!(is_resnet(&c) && c.progressive.is_none());
        // Another kind named: that network's own defaults.
        let c = settings(&["--budget", "30m", "--arch", "cnn"]);
        assert_eq!(
            (&c.model, c.image_size, c.progressive),
            (&default.model, default.image_size, default.progressive)
        );
        // An epoch count has no budget to choose by.
        let c = settings(&["--budget", "30m", "--epochs", "3"]);
        assert_eq!(c.model, default.model);
        // A config file is followed as written.
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("train.toml");
        std::fs::write(&file, "image_size = 40\n").unwrap();
        let c = settings(&["--budget", "30m", "--config", file.to_str().unwrap()]);
        assert_eq!((&c.model, c.image_size), (&default.model, 40));
    }
}
