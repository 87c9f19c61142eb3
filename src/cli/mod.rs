mod args;
mod audit;
mod eval;
mod export;
mod lr_find;
mod predict;
mod serve;
mod train;
mod world;

use std::process::ExitCode;

pub use args::Cli;
use args::Command;

/// A failure and how it ends the process: usage errors exit 2, runtime failures exit 1.
pub enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
}

/// Every library error becomes a failure through [`exit_kind`], the one rule for exit codes.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let e = e.into();
        if exit_kind(&e) == ExitKind::Usage {
            Failure::Usage(e)
        } else {
            Failure::Runtime(e)
        }
    }
}

/// A failure the command line itself finds in what the user asked for.
pub(crate) fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

#[derive(Debug, PartialEq, Eq)]
enum ExitKind {
    /// The user's to fix before anything runs: a flag, a folder, data, a model file (exit 2).
    Usage,
    /// Went wrong while running: a write, a device, a diverging run (exit 1).
    Runtime,
}

/// Classifies an error by the first error in its chain that says which kind it is.
fn exit_kind(e: &anyhow::Error) -> ExitKind {
    use catdog_data::DataError;
    use catdog_infer::{BackendError, ModelIoError, SpecError};
    use catdog_train::{
        evaluate::EvalError, export::ExportError, ConfigFileError, FolderError, InvalidSetting,
        TrainError,
    };
    use ExitKind::{Runtime, Usage};

    let model_io = |e: &ModelIoError| match e {
        ModelIoError::Write { .. } => Runtime,
        _ => Usage,
    };
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<TrainError>() {
            return match e {
                TrainError::Setting(_)
                | TrainError::Folder(_)
                | TrainError::Resume { .. }
                | TrainError::BudgetTooShort(_)
                | TrainError::Data(_) => Usage,
                _ => Runtime,
            };
        }
        if let Some(e) = cause.downcast_ref::<EvalError>() {
            return match e {
                EvalError::Data(_) | EvalError::Classes { .. } => Usage,
                _ => Runtime,
            };
        }
        if let Some(e) = cause.downcast_ref::<ExportError>() {
            return match e {
                ExportError::ModelIo(e) => model_io(e),
                _ => Usage,
            };
        }
        if let Some(e) = cause.downcast_ref::<ModelIoError>() {
            return model_io(e);
        }
        if cause.is::<catdog_serve::ServeError>() {
            return Usage;
        }
        if let Some(e) = cause.downcast_ref::<BackendError>() {
            return match e {
                BackendError::DeviceNeedsWgpu { .. } => Usage,
                _ => Runtime,
            };
        }
        if cause.is::<DataError>()
            || cause.is::<InvalidSetting>()
            || cause.is::<ConfigFileError>()
            || cause.is::<FolderError>()
            || cause.is::<SpecError>()
        {
            return Usage;
        }
    }
    Runtime
}

/// Runs the parsed command; `matches` are the parse it came from.
pub fn run(cli: Cli, matches: &clap::ArgMatches) -> Result<ExitCode, Failure> {
    let given = args::GivenFlags::of(matches);
    match cli.command {
        Command::Train(a) => train::run(*a, &given),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Export(a) => export::export(a),
        Command::Import(a) => export::import(a),
        Command::LrFind(a) => lr_find::run(*a, &given),
        Command::Serve(a) => serve::run(a),
        Command::Audit(a) => audit::run(*a, &given),
    }
}
