//! `catdog train --budget`: the epoch count comes from a measurement, is stored, and changes
//! nothing else about the run.

mod common;

use catdog::data::{synth::write_synth_set, Layout};
use common::{assert_ok, assert_usage_error, catdog};

fn train_config(dir: &std::path::Path, run: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(run).join("config.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["train"].clone()
}

const TINY: [&str; 10] = [
    "--data",
    "data",
    "--arch",
    "mlp",
    "--image-size",
    "16",
    "--seed",
    "5",
    "--batch-size",
    "8",
];

#[test]
fn a_budget_sets_and_stores_the_epoch_count_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 36 steps per epoch: the warm-up's 18 are enough to refit the count on.
    write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        160,
        16,
        Layout::Kaggle,
        2,
    )
    .unwrap();
    let mut args = vec!["train", "--out", "budget", "--budget", "10s"];
    args.extend(TINY);
    let o = catdog(&args, dir);
    assert_ok(&o);
    let train = train_config(dir, "budget");
    assert_eq!(train["budget"], "10s");
    let epochs = train["epochs"].as_u64().expect("an epoch count") as usize;
    assert!(epochs >= 1);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("-> {epochs} epochs")),
        "the chosen (or refitted) count is reported: {stdout}"
    );
    let metrics = std::fs::read_to_string(dir.join("budget/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), epochs + 1, "{metrics}");

    // The measurement runs on a copy of the model: the same seed and epoch count without a
    // budget give the same learning curves, byte for byte.
    let n = epochs.to_string();
    let mut args = vec!["train", "--out", "fixed", "--epochs", &n];
    args.extend(TINY);
    assert_ok(&catdog(&args, dir));
    // (compared as a bool: the files run to hundreds of lines)
    let fixed = std::fs::read_to_string(dir.join("fixed/metrics.csv")).unwrap();
    assert!(
        metrics == fixed,
        "the budgeted run's learning curves differ"
    );

    // --epochs wins over a budget.
    let mut args = vec!["train", "--out", "both", "--budget", "20s", "--epochs", "2"];
    args.extend(TINY);
    assert_ok(&catdog(&args, dir));
    let train = train_config(dir, "both");
    assert_eq!(
        (train["epochs"].as_u64(), train["budget"].is_null()),
        (Some(2), true)
    );
}

#[test]
fn impossible_budgets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 4, 16, Layout::Kaggle, 2).unwrap();
    let mut args = vec!["train", "--out", "run", "--budget", "5s"];
    args.extend(TINY);
    assert_usage_error(&catdog(&args, dir), "invalid budget = 5s");
    let mut args = vec!["train", "--out", "run", "--budget", "15x"];
    args.extend(TINY);
    assert_usage_error(&catdog(&args, dir), "is not a duration");
    assert!(!dir.join("run").exists());
}
