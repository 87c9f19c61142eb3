use std::process::ExitCode;

use burn::tensor::Device;
use catdog_train::export::{self as bundle, ExportFormat, ExportOptions};

use super::{
    args::{ExportArgs, ImportArgs},
    Failure,
};

pub fn export(a: ExportArgs) -> Result<ExitCode, Failure> {
    // Re-saving weights is a copy between files: the CPU is always there and always enough.
    let opts = ExportOptions {
        format: a.format,
        probabilities: a.probabilities,
        force: a.force,
    };
    let card = bundle::export(&a.model, &a.out, &opts, &Device::flex())?;
    println!(
        "exported {} to {} ({}, {} + config.json)",
        a.model.display(),
        a.out.display(),
        match a.format {
            ExportFormat::Burnpack => "burnpack",
            ExportFormat::Safetensors => "safetensors, PyTorch names and layouts",
            ExportFormat::Onnx if a.probabilities =>
                "ONNX opset 17, outputs logits and probabilities",
            ExportFormat::Onnx => "ONNX opset 17, output logits",
        },
        card.weights_file
    );
    if let Some(t) = &card.held_out_test {
        println!(
            "model card: held-out accuracy {:.2}% on {} images, expected calibration error {:.2}%",
            100.0 * t.accuracy,
            t.images,
            100.0 * t.ece
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(a: ImportArgs) -> Result<ExitCode, Failure> {
    let config = bundle::import(
        &a.weights,
        a.config.as_deref(),
        &a.out,
        a.force,
        &Device::flex(),
    )?;
    println!(
        "imported {} into {} ({} model, classes {})",
        a.weights.display(),
        a.out.display(),
        config.spec.model.name(),
        config.spec.classes.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
