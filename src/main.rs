//! The `catdog` command line: train, eval, predict, export.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    catdog::tune_allocator();
    // The matches travel with the parsed arguments: they say which flags were given at all.
    let matches = cli::Cli::command().get_matches();
    let args = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli::run(args, &matches) {
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
