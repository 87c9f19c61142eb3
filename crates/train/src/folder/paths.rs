//! Outputs never go inside a folder of input images: the next run would read them as images
//! (a plots folder as a new class, a plot as a training photo).

use std::path::{Path, PathBuf};

use crate::InvalidSetting;

/// Refuses `out` (the setting `field`) when it lies inside `data`, symlinks resolved, with
/// `fix` as the advice.
pub fn refuse_inside(
    field: &'static str,
    out: &Path,
    data: &Path,
    fix: &'static str,
) -> Result<(), InvalidSetting> {
    if absolute(out).starts_with(absolute(data)) {
        return Err(InvalidSetting {
            field,
            value: out.display().to_string(),
            fix,
        });
    }
    Ok(())
}

/// `path` made absolute and resolved through symlinks as far as it exists.
fn absolute(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    loop {
        if let Ok(real) = p.canonicalize() {
            return missing
                .into_iter()
                .rev()
                .fold(real, |acc, part| acc.join(part));
        }
        match (p.file_name().map(|n| n.to_os_string()), p.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                p = parent.to_path_buf();
            }
            _ => return p,
        }
    }
}
