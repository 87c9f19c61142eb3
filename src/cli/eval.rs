use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use catdog_infer::{load_model, Tta};
use catdog_model::printable;
use catdog_train::{
    dataset::load_folder_classes,
    evaluate::{evaluate, match_classes, relabel, EVAL_BATCH},
    metrics::Evaluation,
    mistakes::{draw_galleries, write_predictions},
    pixel_cache,
    plots::evaluation_plots,
    EvalPlotFiles, FolderKind, OwnedDir, Progress, ProgressMode,
};

use super::{args::EvalArgs, usage, Failure};

pub fn run(a: EvalArgs) -> Result<ExitCode, Failure> {
    let opened = a.backend.open()?;
    let trained = load_model(&a.model, &opened.device)?;
    for warning in &trained.warnings {
        eprintln!("warning: {warning}");
    }
    if !a.data.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "--data {} is not a folder of images",
            printable(&a.data.to_string_lossy())
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
    // Only a new or empty folder, or one of catdog's own evaluation folders (whose plots are
    // redrawn), takes the plots: never a folder of the user's files.
    if let Some(dir) = &plot_dir {
        catdog_train::refuse_inside(
            "plots",
            dir,
            &a.data,
            "the plots must not go inside the --data folder (they would become images of it): \
             choose another --plots",
        )?;
    }
    let plot_folder = match &plot_dir {
        Some(dir) => Some(OwnedDir::claim(dir, FolderKind::Eval, true).map_err(|e| {
            usage(anyhow::Error::new(e).context(format!(
                "cannot use the plot folder {}",
                printable(&dir.to_string_lossy())
            )))
        })?),
        None => None,
    };
    let progress = if a.json {
        ProgressMode::Quiet
    } else {
        ProgressMode::auto()
    };
    let cache_dir = pixel_cache(a.cache_dir.clone(), a.no_cache);
    // Photos of one class are a normal question to ask ("how many of my cats does it get?").
    let loaded = load_folder_classes(
        &a.data,
        trained.spec.image_size,
        cache_dir,
        &Progress::new(progress),
        1,
    )?;
    let (set, mut skipped) = (loaded.set, loaded.skipped);
    let model_classes = &trained.spec.classes;
    let Some(mapping) = match_classes(&set.classes, model_classes) else {
        return Err(usage(anyhow::anyhow!(
            "{} has classes [{}] but the model was trained on [{}]",
            printable(&a.data.to_string_lossy()),
            printable_list(&set.classes),
            printable_list(model_classes)
        )));
    };
    if set.classes != *model_classes {
        // Stderr, so `--json` output stays one JSON document.
        eprintln!(
            "note: matched data classes {} to the model's {}",
            printable_list(&set.classes),
            printable_list(
                &mapping
                    .iter()
                    .map(|&i| model_classes[i].clone())
                    .collect::<Vec<_>>()
            )
        );
    }
    let set = relabel(set, &mapping, model_classes);
    for s in &mut skipped {
        s.label = s.label.map(|l| mapping[l]);
    }
    let batch_size = EVAL_BATCH.min(trained.spec.model.max_batch_size());
    let tta = if a.tta { Tta::Flip } else { Tta::Off };
    let temperature = trained.spec.probability_temperature(!a.no_calibration);
    let evaluated = evaluate(
        &trained.model,
        Arc::new(set),
        &trained.spec.normalization,
        &opened.device,
        batch_size,
        tta,
        temperature,
    )
    .context("evaluation failed")?;
    let e = &evaluated.evaluation;
    if a.json {
        let mut value = serde_json::to_value(e)?;
        value["skipped"] = serde_json::to_value(&skipped)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "model {} on {} ({})",
            printable(&a.model.to_string_lossy()),
            printable(&a.data.to_string_lossy()),
            opened.name
        );
        print!("{}", printable_evaluation(e).render());
    }
    if let Some(folder) = plot_folder {
        let files = EvalPlotFiles::in_folder(&folder);
        let title = format!("{} images of {data_name}", e.images);
        evaluation_plots(e, &title, &files)?;
        let mut written = vec![files.confusion.clone(), files.calibration.clone()];
        write_predictions(
            &files.predictions,
            model_classes,
            &evaluated.images,
            &skipped,
        )
        .with_context(|| {
            format!(
                "cannot write {}",
                printable(&files.predictions.to_string_lossy())
            )
        })?;
        written.push(files.predictions.clone());
        let tiles = usize::from(a.top_losses);
        if tiles > 0 {
            draw_galleries(&files, model_classes, &evaluated.images, tiles, &title)?;
            written.extend([files.top_losses.clone(), files.least_confident.clone()]);
        } else {
            // Galleries of an earlier evaluation into this folder would pass for this one's.
            for name in EvalPlotFiles::gallery_names() {
                // A file that cannot be removed is a failure while running, not a usage error.
                folder
                    .remove_own_file(name)
                    .map_err(|e| Failure::Runtime(e.into()))?;
            }
        }
        let written: Vec<_> = written
            .iter()
            .map(|p| printable(&p.to_string_lossy()).into_owned())
            .collect();
        // Stderr, so `--json` output stays one JSON document.
        eprintln!("wrote {}", written.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `a, b, c` with every name made safe for a terminal.
fn printable_list(names: &[String]) -> String {
    let names: Vec<_> = names.iter().map(|n| printable(n)).collect();
    names.join(", ")
}

/// The evaluation with its class names and file paths made safe for a terminal, for the
/// human-readable report (`--json` keeps them exact).
fn printable_evaluation(e: &Evaluation) -> Evaluation {
    let text = |s: &str| printable(s).into_owned();
    let mut e = e.clone();
    for c in &mut e.classes {
        *c = text(c);
    }
    for m in &mut e.per_class {
        m.class = text(&m.class);
    }
    for v in e.least_sure.iter_mut().chain(&mut e.confidently_wrong) {
        v.path = text(&v.path.to_string_lossy()).into();
        v.label = text(&v.label);
        v.predicted = text(&v.predicted);
    }
    e
}
