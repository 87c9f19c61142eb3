//! Writes `model.onnx` into a catdog model folder (`config.json` + `model.bpk`), for trying the
//! ONNX export before `catdog export --format onnx` calls this crate:
//!
//! ```sh
//! cargo test --release -p catdog -p catdog-onnx --no-run   # builds the examples too
//! $CARGO_TARGET_DIR/release/examples/write_onnx RUN_DIR [--probabilities]
//! python3 examples/python/check_onnx.py --bundle RUN_DIR --catdog target/release/catdog
//! ```
//!
//! Reads only what the export needs from `config.json`: `model`, `classes`, `image_size` and
//! `normalization` (`mean`, `std`).

use std::path::{Path, PathBuf};

use burn::{module::Module, tensor::Device};
use catdog_model::{Classifier, ModelConfig};
use catdog_onnx::{to_onnx, OnnxInput, ONNX_FILE};
use serde_json::Value;

fn main() {
    let mut dir = None;
    let mut probabilities = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--probabilities" => probabilities = true,
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => fail("usage: write_onnx MODEL_DIR [--probabilities]"),
        }
    }
    let dir = dir.unwrap_or_else(|| fail("usage: write_onnx MODEL_DIR [--probabilities]"));
    if let Err(e) = run(&dir, probabilities) {
        fail(&e);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("write_onnx: {message}");
    std::process::exit(2)
}

fn run(dir: &Path, probabilities: bool) -> Result<(), String> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("config.json: {e}"))?;
    let field = |name: &str| {
        json.get(name)
            .cloned()
            .ok_or_else(|| format!("config.json has no {name:?}"))
    };
    let config: ModelConfig =
        serde_json::from_value(field("model")?).map_err(|e| format!("config.json model: {e}"))?;
    let classes: Vec<String> = serde_json::from_value(field("classes")?)
        .map_err(|e| format!("config.json classes: {e}"))?;
    let image_size: usize = serde_json::from_value(field("image_size")?)
        .map_err(|e| format!("config.json image_size: {e}"))?;
    // Written by catdog's calibration; older configs have none (the raw softmax).
    let temperature = match json.get("temperature") {
        Some(t) => serde_json::from_value(t.clone())
            .map_err(|e| format!("config.json temperature: {e}"))?,
        None => 1.0f32,
    };
    let norm = field("normalization")?;
    let mean: [f32; 3] = serde_json::from_value(norm["mean"].clone())
        .map_err(|e| format!("config.json normalization.mean: {e}"))?;
    let std: [f32; 3] = serde_json::from_value(norm["std"].clone())
        .map_err(|e| format!("config.json normalization.std: {e}"))?;

    let device = Device::flex();
    let weights = dir.join("model.bpk");
    let model = Classifier::new(&config, &device)
        .map_err(|e| e.to_string())?
        .try_load_file(&weights)
        .map_err(|e| format!("{}: {e}", weights.display()))?;

    let bytes = to_onnx(&OnnxInput {
        model: &model,
        config: &config,
        classes: &classes,
        mean,
        std,
        image_size,
        probabilities,
        temperature,
        producer_version: env!("CARGO_PKG_VERSION"),
    })
    .map_err(|e| e.to_string())?;
    let out = dir.join(ONNX_FILE);
    std::fs::write(&out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {} ({} bytes)", out.display(), bytes.len());
    Ok(())
}
