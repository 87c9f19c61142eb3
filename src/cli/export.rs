use std::process::ExitCode;

use burn::tensor::Device;
use catdog_train::{
    export::{self as bundle, WeightsFormat},
    model_io::ModelIoError,
};

use super::{
    args::{ExportArgs, ImportArgs},
    usage, Failure,
};

/// A bad model or file is the user's to fix (exit 2); a failed write is a runtime failure (1).
fn classify(e: ModelIoError) -> Failure {
    match e {
        ModelIoError::Write { .. } => Failure::Runtime(e.into()),
        other => usage(other),
    }
}

pub fn export(a: ExportArgs) -> Result<ExitCode, Failure> {
    // Re-saving weights is a copy between files: the CPU is always there and always enough.
    let card =
        bundle::export(&a.model, &a.out, a.format, a.force, &Device::flex()).map_err(classify)?;
    println!(
        "exported {} to {} ({}, {} + config.json)",
        a.model.display(),
        a.out.display(),
        match a.format {
            WeightsFormat::Burnpack => "burnpack",
            WeightsFormat::Safetensors => "safetensors, PyTorch names and layouts",
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
    )
    .map_err(classify)?;
    println!(
        "imported {} into {} ({} model, classes {})",
        a.weights.display(),
        a.out.display(),
        config.model.name(),
        config.classes.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
