use std::process::ExitCode;

use catdog_data::printable;
use catdog_infer::{load_model, Tta};
use catdog_train::{
    evaluate::{evaluate_folder, FolderEvalOptions},
    metrics::Evaluation,
    pixel_cache,
    report::files::{Report, ReportFiles},
    FolderKind, OwnedDir, Progress, ProgressMode,
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
    let opts = FolderEvalOptions {
        tta: if a.no_tta { Tta::Off } else { Tta::Flip },
        calibrated: !a.no_calibration,
        cache_dir: pixel_cache(a.cache_dir.clone(), a.no_cache),
    };
    let result = evaluate_folder(
        &trained,
        &a.data,
        &opened.device,
        &opts,
        &Progress::new(progress),
    )?;
    if let Some(note) = result.class_note() {
        // Stderr, so `--json` output stays one JSON document.
        eprintln!("note: {note}");
    }
    let e = &result.evaluated.evaluation;
    if a.json {
        let mut value = serde_json::to_value(e)?;
        value["skipped"] = serde_json::to_value(&result.skipped)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "model {} on {} ({})",
            printable(&a.model.to_string_lossy()),
            printable(&a.data.to_string_lossy()),
            opened.name
        );
        println!("{}", opts.tta.describe());
        print!("{}", printable_evaluation(e).render());
    }
    if let Some(folder) = plot_folder {
        let report = Report {
            evaluation: e,
            images: &result.evaluated.images,
            skipped: &result.skipped,
            classes: &trained.spec.classes,
            title: format!("{} images of {data_name}", e.images),
            gallery_tiles: usize::from(a.top_losses),
        };
        let written = report.write(&ReportFiles::in_folder(folder.path()))?;
        if report.gallery_tiles == 0 {
            // Galleries of an earlier evaluation into this folder would pass for this one's.
            for name in ReportFiles::GALLERY_NAMES {
                // A file that cannot be removed is a failure while running, not a usage error.
                folder
                    .remove_own_file(name)
                    .map_err(|e| Failure::Runtime(e.into()))?;
            }
        }
        for warning in &written.warnings {
            eprintln!("warning: {warning}");
        }
        let written: Vec<_> = written
            .files
            .iter()
            .map(|p| printable(&p.to_string_lossy()).into_owned())
            .collect();
        // Stderr, so `--json` output stays one JSON document.
        eprintln!("wrote {}", written.join(", "));
    }
    Ok(ExitCode::SUCCESS)
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
