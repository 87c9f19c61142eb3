//! `catdog audit`: photos given the wrong label are found by out-of-fold predictions, copies of
//! a photo are listed as near-duplicates, the data folder is left as it was, and
//! `catdog train --exclude audit.csv` leaves the flagged photos out.

mod common;

use std::path::Path;

use common::{assert_ok, catdog, stdout};

/// Every file's name and bytes under `dir`, sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn mislabelled_photos_are_flagged_and_can_be_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    catdog::data::synth::write_synth_set(
        &data,
        &["cat", "dog"],
        60,
        24,
        catdog::data::Layout::Kaggle,
        5,
    )
    .unwrap();
    // Six cats given the dog label, and one photo twice under two names.
    let flipped: Vec<String> = (0..6).map(|i| format!("dog.{}.png", 100 + i)).collect();
    for (i, name) in flipped.iter().enumerate() {
        std::fs::rename(data.join(format!("cat.{}.png", 2 * i + 1)), data.join(name)).unwrap();
    }
    std::fs::copy(data.join("dog.3.png"), data.join("dog.200.png")).unwrap();
    let before = snapshot(&data);

    let o = catdog(
        &[
            "audit",
            "--data",
            "data",
            "--out",
            "audit",
            "--epochs",
            "6",
            "--image-size",
            "16",
            "--folds",
            "2",
            "--quiet",
            "--gallery",
            "8",
        ],
        dir,
    );
    assert_ok(&o);
    assert!(
        stdout(&o).contains("probably mislabelled"),
        "{}",
        stdout(&o)
    );
    assert_eq!(snapshot(&data), before, "the audit changed the data folder");

    let csv = std::fs::read_to_string(dir.join("audit/audit.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let found = flipped
        .iter()
        .filter(|f| rows.iter().any(|r| r.contains(f.as_str())))
        .count();
    assert!(found >= 4, "{found} of 6 flipped labels found in:\n{csv}");
    assert!(
        rows.len() <= 12,
        "{} photos flagged of 120:\n{csv}",
        rows.len()
    );
    for row in rows
        .iter()
        .filter(|r| flipped.iter().any(|f| r.contains(f.as_str())))
    {
        assert!(row.contains(",dog,cat,"), "given dog, suggested cat: {row}");
    }
    assert!(dir.join("audit/label-issues.png").is_file());
    let dups = std::fs::read_to_string(dir.join("audit/duplicates.csv")).unwrap();
    assert!(
        dups.lines()
            .any(|l| l.contains("dog.3.png") && l.contains("dog.200.png") && l.ends_with(",0")),
        "the copy is not listed:\n{dups}"
    );

    // Training with the audit as exclude list leaves exactly the flagged photos out.
    let o = catdog(
        &[
            "train",
            "--data",
            "data",
            "--exclude",
            "audit/audit.csv",
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--out",
            "run",
        ],
        dir,
    );
    assert_ok(&o);
    let said = format!("exclude: {} of 121 images left out", rows.len());
    assert!(
        common::stderr(&o).contains(&said) || stdout(&o).contains(&said),
        "{}",
        common::both(&o)
    );
}
