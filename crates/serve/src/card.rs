//! `GET /model`: what the served model is and how well it did on photos it never trained on.

use std::path::Path;

use catdog_data::{read_small_text, MAX_CONFIG_BYTES};
use catdog_infer::Classifier;
use serde::Serialize;
use serde_json::Value;

/// The model card the server shows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub name: String,
    pub architecture: String,
    pub classes: Vec<String>,
    pub image_size: usize,
    /// Probabilities are `softmax(logits / temperature)`.
    pub temperature: f32,
    pub parameters: usize,
    /// Held-out accuracy and expected calibration error, when the run or bundle recorded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_calibration_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_images: Option<u64>,
}

impl ModelCard {
    /// The card of the model in `dir`: its spec, and the held-out metrics of its run's
    /// `summary.json` or its bundle's card in `config.json`, when readable.
    pub fn read(dir: &Path, classifier: &Classifier) -> Self {
        let spec = classifier.spec();
        let json = |file: &str| {
            read_small_text(&dir.join(file), MAX_CONFIG_BYTES)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        };
        // A run's summary: test.{accuracy, images, calibration.ece}; a bundle's card:
        // export.held_out_test.{accuracy, images, ece}.
        let summary = json("summary.json").and_then(|s| s.get("test").cloned());
        let bundle = json("config.json").and_then(|c| c.pointer("/export/held_out_test").cloned());
        let (accuracy, ece, images) = match (summary, bundle) {
            (Some(t), _) => (
                t["accuracy"].as_f64(),
                t.pointer("/calibration/ece").and_then(Value::as_f64),
                t["images"].as_u64(),
            ),
            (None, Some(t)) => (
                t["accuracy"].as_f64(),
                t["ece"].as_f64(),
                t["images"].as_u64(),
            ),
            (None, None) => (None, None, None),
        };
        ModelCard {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            architecture: spec.model.name().to_string(),
            classes: spec.classes.clone(),
            image_size: spec.image_size,
            temperature: spec.temperature,
            parameters: spec.model.parameter_count(),
            held_out_accuracy: accuracy,
            held_out_calibration_error: ece,
            held_out_images: images,
        }
    }
}
