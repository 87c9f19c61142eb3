use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use catdog_model::{CnnConfig, MlpConfig, ModelConfig};
use catdog_train::{train, ProgressMode, TrainConfig, TrainRequest};

use super::{
    args::{Arch, TrainArgs},
    usage, Failure,
};

/// The default data location, filled by `data/fetch.sh`.
const DEFAULT_DATA: &str = "data/dogs-vs-cats/train";
const DEFAULT_TEST: &str = "data/dogs-vs-cats/test";

pub fn run(a: TrainArgs) -> Result<ExitCode, Failure> {
    let (config, out, resume) = settings(&a)?;
    let progress = if a.quiet {
        ProgressMode::Quiet
    } else {
        ProgressMode::auto()
    };
    let summary = train(TrainRequest {
        config,
        out,
        resume,
        progress,
    })?;
    println!(
        "\nrun folder: {}\nvalidation accuracy: {:.2}% ({} images)",
        summary.run_dir.display(),
        100.0 * summary.validation.accuracy,
        summary.validation.images
    );
    if let Some(t) = &summary.test {
        println!(
            "held-out test accuracy: {:.2}% ({} images)",
            100.0 * t.accuracy,
            t.images
        );
    }
    println!(
        "{} epochs in {:.1} s, {:.1} training images/s; weights: {}",
        summary.epochs_run,
        summary.wall_seconds,
        summary.train_images_per_sec,
        summary
            .run_dir
            .join(catdog_train::model_io::WEIGHTS_FILE)
            .display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The training settings: defaults, then `--config`, then flags; all checked before any work.
fn settings(a: &TrainArgs) -> Result<(TrainConfig, PathBuf, bool), Failure> {
    let mut c = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))
                .map_err(usage)?;
            toml::from_str::<TrainConfig>(&text)
                .with_context(|| format!("invalid config file {}", path.display()))
                .map_err(usage)?
        }
        None => TrainConfig::default(),
    };
    let default_data = a.data.is_none() && a.config.is_none();
    if let Some(v) = &a.data {
        c.data = v.clone();
    }
    if let Some(v) = &a.test {
        c.test = Some(v.clone());
    } else if default_data && c.test.is_none() && Path::new(DEFAULT_TEST).is_dir() {
        c.test = Some(PathBuf::from(DEFAULT_TEST));
    }
    match a.arch {
        Some(Arch::Mlp) if !matches!(c.model, ModelConfig::Mlp(_)) => {
            c.model = ModelConfig::Mlp(MlpConfig::default());
        }
        Some(Arch::Cnn) if !matches!(c.model, ModelConfig::Cnn(_)) => {
            c.model = ModelConfig::Cnn(CnnConfig::default());
        }
        _ => {}
    }
    macro_rules! set {
        ($flag:expr, $field:expr) => {
            if let Some(v) = $flag {
                $field = v;
            }
        };
    }
    set!(a.image_size, c.image_size);
    set!(a.epochs, c.epochs);
    set!(a.batch_size, c.batch_size);
    set!(a.optimizer, c.optim.optimizer);
    set!(a.lr, c.optim.lr);
    set!(a.weight_decay, c.optim.weight_decay);
    set!(a.momentum, c.optim.momentum);
    set!(a.schedule, c.optim.schedule);
    set!(a.warmup_epochs, c.optim.warmup_epochs);
    set!(a.label_smoothing, c.label_smoothing);
    set!(a.validation_fraction, c.validation_fraction);
    set!(a.seed, c.seed);
    set!(a.backend.backend, c.backend);
    if a.patience.is_some() {
        c.patience = a.patience;
    }
    if a.backend.device_index.is_some() {
        c.device_index = a.backend.device_index;
    }
    if a.no_augment {
        c.augment = None;
    }
    if a.cache_dir.is_some() {
        c.cache_dir = a.cache_dir.clone();
    }
    c.no_cache |= a.no_cache;
    c.validate().map_err(usage)?;

    let out = a.resume.clone().or_else(|| a.out.clone());
    if let Some(pid) = out.as_deref().and_then(catdog_train::lock_holder) {
        return Err(usage(anyhow::anyhow!(
            "{} is in use by another catdog training process (pid {pid}); wait for it or choose another --out",
            out.unwrap_or_default().display()
        )));
    }
    if let Some(dir) = &a.resume {
        catdog_train::model_io::read_config(dir)
            .with_context(|| format!("cannot resume {}", dir.display()))
            .map_err(usage)?;
        // Only a raised epoch count is taken from the command line on resume.
        return Ok((c, dir.clone(), true));
    }
    check_folder(
        "--data",
        &c.data,
        default_data && c.data == Path::new(DEFAULT_DATA),
    )?;
    if let Some(t) = &c.test {
        check_folder("--test", t, false)?;
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(timestamp()));
    if out.join(catdog_train::model_io::CONFIG_FILE).exists() {
        return Err(usage(anyhow::anyhow!(
            "{} already holds a run: continue it with --resume {}, or choose another --out",
            out.display(),
            out.display()
        )));
    }
    Ok((c, out, false))
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
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
