use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use catdog_train::{
    evaluate::evaluate,
    load_folder,
    model_io::load_model,
    pixel_cache,
    plots::{confusion_matrix, reliability_diagram, CALIBRATION_FILE, CONFUSION_FILE},
    Progress, ProgressMode,
};

use super::{args::EvalArgs, usage, Failure};

pub fn run(a: EvalArgs) -> Result<ExitCode, Failure> {
    let opened = a
        .backend
        .backend
        .unwrap_or_default()
        .open(a.backend.device_index)?;
    let trained = load_model(&a.model, &opened.device).map_err(usage)?;
    if !a.data.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "--data {} is not a folder of images",
            a.data.display()
        )));
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
    let plots = if a.no_plots {
        Vec::new()
    } else {
        let dir = a.plots.clone().unwrap_or_else(|| a.model.clone());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the plot folder {}", dir.display()))?;
        let title = format!(
            "{} images of {}",
            e.images,
            a.data
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| a.data.display().to_string())
        );
        let confusion = dir.join(CONFUSION_FILE);
        let calibration = dir.join(CALIBRATION_FILE);
        confusion_matrix(&e, &format!("Confusion matrix, {title}"), &confusion)?;
        reliability_diagram(&e, &format!("Reliability, {title}"), &calibration)?;
        vec![confusion, calibration]
    };
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
        for p in &plots {
            println!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
