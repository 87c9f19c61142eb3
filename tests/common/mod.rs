//! Running the `catdog` binary from integration tests.

use std::{
    path::Path,
    process::{Command, Output},
};

/// Runs `catdog ARGS` in `cwd`, with its pixel cache inside `cwd`.
pub fn catdog(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(args)
        .current_dir(cwd)
        .env("CATDOG_CACHE_DIR", cwd.join("cache"))
        .output()
        .expect("catdog runs")
}
