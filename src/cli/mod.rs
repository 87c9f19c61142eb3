mod args;
mod eval;
mod export;
mod predict;
mod train;

use std::process::ExitCode;

pub use args::Cli;
use args::Command;

/// A failure and how it ends the process: usage errors exit 2, runtime failures exit 1.
pub enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Runtime(e.into())
    }
}

pub(crate) fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Export(a) => export::export(a),
        Command::Import(a) => export::import(a),
    }
}
