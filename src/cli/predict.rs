use std::{path::PathBuf, process::ExitCode};

use catdog_data::discover_files;
use catdog_data::printable;
use catdog_infer::format_percent;
use catdog_infer::{ClassifyOptions, Input, Tta};
use serde::Serialize;

use super::{args::PredictArgs, usage, Failure};

/// One line of `--json` output: a file and its prediction, or why it has none.
#[derive(Serialize)]
struct Row {
    #[serde(serialize_with = "catdog_data::lossy_path::serialize")]
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logits: Vec<f32>,
    /// `probabilities = softmax(logits / temperature)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    probabilities: Vec<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    predicted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f32>,
}

pub fn run(a: PredictArgs) -> Result<ExitCode, Failure> {
    let opened = a.backend.open()?;
    let classifier = catdog_infer::Classifier::load(&a.model, &opened.device)?;
    for warning in classifier.warnings() {
        eprintln!("warning: {warning}");
    }
    let files = discover_files(&a.images)?;
    // A folder given on the command line without images is reported in its place.
    let (folders, inputs): (Vec<bool>, Vec<Input>) = files
        .samples
        .iter()
        .map(|s| (s.path.is_dir(), Input::Path(s.path.clone())))
        .unzip();
    let opts = ClassifyOptions {
        tta: if a.no_tta { Tta::Off } else { Tta::Flip },
        calibrated: !a.no_calibration,
    };
    let results = classifier.classify(&inputs, opts);
    let rows: Vec<Row> = files
        .samples
        .iter()
        .zip(folders)
        .zip(results)
        .map(|((sample, folder), result)| {
            let result = match folder {
                true => Err("is a folder with no images".to_string()),
                false => result.map_err(|e| e.to_string()),
            };
            let mut row = Row {
                path: sample.path.clone(),
                error: None,
                logits: vec![],
                temperature: None,
                probabilities: vec![],
                predicted: None,
                confidence: None,
            };
            match result {
                Ok(p) => {
                    row.confidence = Some(p.confidence());
                    row.temperature = Some(p.temperature);
                    row.predicted = Some(p.class);
                    (row.logits, row.probabilities) = (p.logits, p.probabilities);
                }
                Err(e) => row.error = Some(e),
            }
            row
        })
        .collect();
    let failed = rows.iter().filter(|p| p.error.is_some()).count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_rows(&rows, classifier.classes(), &opts, &classifier);
    }
    if rows.is_empty() {
        return Err(usage(anyhow::anyhow!("no images found in the given paths")));
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per file: its logits and the predicted class with its probability, or its error.
fn print_rows(
    rows: &[Row],
    classes: &[String],
    opts: &ClassifyOptions,
    classifier: &catdog_infer::Classifier,
) {
    eprintln!("{}", opts.tta.describe());
    let temperature = classifier.spec().probability_temperature(opts.calibrated);
    if temperature != 1.0 {
        eprintln!(
            "probabilities: softmax(logits / {temperature:.4}), the temperature fitted on the \
             validation split (--no-calibration for softmax(logits))"
        );
    }
    // File and class names are untrusted: printed with terminal controls escaped.
    for p in rows {
        let path = p.path.to_string_lossy();
        match (&p.error, &p.predicted) {
            (Some(e), _) => eprintln!("{}  error: {}", printable(&path), printable(e)),
            (None, Some(class)) => {
                let logits: Vec<String> = classes
                    .iter()
                    .zip(&p.logits)
                    .map(|(c, l)| format!("{} {l:.2}", printable(c)))
                    .collect();
                println!(
                    "{}  logits {}  ->  {} {}",
                    printable(&path),
                    logits.join(" "),
                    printable(class),
                    format_percent(p.confidence.unwrap_or(0.0))
                );
            }
            (None, None) => {}
        }
    }
}
