//! The `catdog` command line: train, eval, predict, export.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    catdog::tune_allocator();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        // Errors quote file and class names: escaped, so they cannot drive the terminal.
        Err(cli::Failure::Usage(e)) => {
            eprintln!("error: {}", catdog::data::printable(&format!("{e:#}")));
            ExitCode::from(2)
        }
        Err(cli::Failure::Runtime(e)) => {
            eprintln!("error: {}", catdog::data::printable(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
