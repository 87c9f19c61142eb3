use std::{path::PathBuf, process::ExitCode, sync::Arc};

use catdog_data::{decode_image, discover_files, ImageSet};
use catdog_infer::{infer_logits, load_model, Tta};
use catdog_model::{argmax, format_percent, printable, softmax_row_at};
use serde::Serialize;

use super::{args::PredictArgs, usage, Failure};

#[derive(Serialize)]
struct Prediction {
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
    let trained = load_model(&a.model, &opened.device)?;
    for warning in &trained.warnings {
        eprintln!("warning: {warning}");
    }
    let classes = &trained.spec.classes;
    let size = trained.spec.image_size;
    let temperature = trained.spec.probability_temperature(!a.no_calibration);
    let files = discover_files(&a.images)?;

    // Each file on its own: one bad file is reported and the others are still predicted.
    let mut set = ImageSet {
        image_size: size,
        classes: classes.clone(),
        ..Default::default()
    };
    let mut predictions = Vec::new();
    let mut ok_rows = Vec::new();
    for sample in &files.samples {
        let result = if sample.path.is_dir() {
            Err("is a folder with no images".to_string())
        } else {
            decode_image(&sample.path, size as u32).map_err(|e| e.to_string())
        };
        if let Ok(pixels) = &result {
            set.pixels.extend_from_slice(pixels);
            set.labels.push(0);
            set.paths.push(sample.path.clone());
            ok_rows.push(predictions.len());
        }
        predictions.push(Prediction {
            path: sample.path.clone(),
            error: result.err(),
            logits: vec![],
            temperature: None,
            probabilities: vec![],
            predicted: None,
            confidence: None,
        });
    }
    if !set.is_empty() {
        let logits = infer_logits(
            &trained.model,
            Arc::new(set),
            &trained.spec.normalization,
            &opened.device,
            64.min(trained.spec.model.max_batch_size()),
            Tta::Off,
        )?;
        for (row, &p) in logits.chunks_exact(classes.len()).zip(&ok_rows) {
            let probs = softmax_row_at(row, temperature);
            let best = argmax(&probs);
            let pred = &mut predictions[p];
            pred.logits = row.to_vec();
            pred.temperature = Some(temperature);
            pred.predicted = Some(classes[best].clone());
            pred.confidence = Some(probs[best]);
            pred.probabilities = probs;
        }
    }
    let failed = predictions.iter().filter(|p| p.error.is_some()).count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&predictions)?);
    } else {
        if temperature != 1.0 {
            eprintln!(
                "probabilities: softmax(logits / {temperature:.4}), the temperature fitted on \
                 the validation split (--no-calibration for softmax(logits))"
            );
        }
        // File and class names are untrusted: printed with terminal controls escaped.
        for p in &predictions {
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
    if predictions.is_empty() {
        return Err(usage(anyhow::anyhow!("no images found in the given paths")));
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
