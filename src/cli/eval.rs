use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use catdog_train::{
    evaluate::evaluate, load_folder, model_io::load_model, pixel_cache, plots::evaluation_plots,
    Progress, ProgressMode,
};

use super::{args::EvalArgs, usage, Failure};

pub fn run(a: EvalArgs) -> Result<ExitCode, Failure> {
    let opened = a.backend.open()?;
    let trained = load_model(&a.model, &opened.device).map_err(usage)?;
    if !a.data.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "--data {} is not a folder of images",
            a.data.display()
        )));
    }
    // Plots go beside the model by default, one folder per data folder, so the run's own
    // held-out plots stay; an unusable folder is refused before any work.
    let data_name = a
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let plot_dir = (!a.no_plots).then(|| {
        a.plots
            .clone()
            .unwrap_or_else(|| a.model.join(format!("eval-{data_name}")))
    });
    if let Some(dir) = &plot_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            usage(anyhow::anyhow!(
                "cannot create the plot folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let progress = if a.json {
        ProgressMode::Quiet
    } else {
        ProgressMode::auto()
    };
    let cache_dir = pixel_cache(a.cache_dir.clone(), a.no_cache);
    let loaded = load_folder(
        &a.data,
        trained.config.image_size,
        cache_dir,
        &Progress::new(progress),
    )?;
    let (set, skipped) = (loaded.set, loaded.skipped);
    if set.classes != trained.config.classes {
        return Err(usage(anyhow::anyhow!(
            "{} has classes [{}] but the model was trained on [{}]",
            a.data.display(),
            set.classes.join(", "),
            trained.config.classes.join(", ")
        )));
    }
    let e = evaluate(
        &trained.model,
        Arc::new(set),
        &trained.config.normalization,
        &opened.device,
        128,
        a.tta,
    )
    .context("evaluation failed")?;
    if a.json {
        let mut value = serde_json::to_value(&e)?;
        value["skipped"] = serde_json::to_value(&skipped)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "model {} on {} ({})",
            a.model.display(),
            a.data.display(),
            opened.name
        );
        print!("{}", e.render());
    }
    if let Some(dir) = plot_dir {
        let title = format!("{} images of {data_name}", e.images);
        let [confusion, calibration] = evaluation_plots(&e, &title, &dir)?;
        // Stderr, so `--json` output stays one JSON document.
        eprintln!(
            "wrote {} and {}",
            confusion.display(),
            calibration.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
