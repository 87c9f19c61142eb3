//! `exclude`: photos of a training folder left out of a run, listed in a file: one path per
//! line, or a CSV whose first column is `path` (`catdog audit`'s `audit.csv`). Paths are
//! compared after resolving links and `..`, so a list made with other relative paths or
//! through a link still names the same files.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use catdog_data::{read_small_text, DataError};

/// Largest exclude list read (a path per photo of a large folder).
const MAX_LIST_BYTES: u64 = 64 << 20;

/// The photos `list` names, resolved; how many of its entries name no file.
pub fn read_exclude_list(list: &Path) -> Result<(HashSet<PathBuf>, usize), DataError> {
    let text = read_small_text(list, MAX_LIST_BYTES).map_err(|e| {
        DataError::Invalid(format!(
            "cannot read the exclude list {}: {e}",
            list.display()
        ))
    })?;
    let entries: Vec<String> = if text.starts_with("path,") || text.trim_end() == "path" {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut paths = Vec::new();
        for record in reader.records() {
            let record = record
                .map_err(|e| DataError::Invalid(format!("exclude list {}: {e}", list.display())))?;
            if let Some(path) = record.get(0) {
                paths.push(path.to_string());
            }
        }
        paths
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let mut found = HashSet::new();
    let mut missing = 0;
    for entry in entries {
        match std::fs::canonicalize(&entry) {
            Ok(path) => {
                found.insert(path);
            }
            Err(_) => missing += 1,
        }
    }
    Ok((found, missing))
}

/// Indices of `paths` that `excluded` does not name.
pub fn kept_indices(paths: &[PathBuf], excluded: &HashSet<PathBuf>) -> Vec<usize> {
    (0..paths.len())
        .filter(|&i| {
            std::fs::canonicalize(&paths[i])
                .map(|p| !excluded.contains(&p))
                .unwrap_or(true)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_csv_lists_name_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let photos: Vec<PathBuf> = ["a.jpg", "b, \"odd\".jpg", "c.jpg"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        let plain = dir.path().join("list.txt");
        std::fs::write(
            &plain,
            format!(
                "{}\n\n{}\n{}\n",
                photos[0].display(),
                photos[1].display(),
                dir.path().join("gone.jpg").display()
            ),
        )
        .unwrap();
        let (found, missing) = read_exclude_list(&plain).unwrap();
        assert_eq!((found.len(), missing), (2, 1));
        assert_eq!(kept_indices(&photos, &found), [2]);

        let csv_list = dir.path().join("audit.csv");
        let quoted = photos[1].display().to_string().replace('"', "\"\"");
        std::fs::write(
            &csv_list,
            format!("path,given_label,suggested_label,score\n\"{quoted}\",cat,dog,0.9\n"),
        )
        .unwrap();
        let (found, missing) = read_exclude_list(&csv_list).unwrap();
        assert_eq!((found.len(), missing), (1, 0));
        // Through another spelling of the same folder.
        let other = dir.path().join(".").join("c.jpg");
        assert_eq!(kept_indices(&[photos[1].clone(), other], &found), [1]);
    }
}
