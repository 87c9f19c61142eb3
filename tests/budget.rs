//! `catdog train --budget`: the epoch counts come from measurements, are recorded, and a run's
//! config.json repeats the run exactly. (The time a budget keeps: `budget::tests` on a
//! simulated clock, `scripts/budget-check.sh` on the real one.)

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
fn a_budget_records_its_epoch_counts_and_a_run_config_replays_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
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
    let replans = train["replans"]
        .as_array()
        .expect("the recorded counts")
        .clone();
    // The first count from the probe, from step 0; the last is the run's count.
    assert_eq!(replans[0]["from_step"], 0);
    assert_eq!(
        replans.last().unwrap()["epochs"].as_u64(),
        Some(epochs as u64)
    );
    let stdout = common::stdout(&o);
    let first = replans[0]["epochs"].as_u64().unwrap();
    assert!(
        stdout.contains(&format!(
            "-> {first} epochs (planned again after each epoch)"
        )),
        "the first count is reported: {stdout}"
    );
    // Every later count is reported, and takes effect at an epoch's end (288 training images
    // in batches of 8: 36 steps an epoch).
    assert_eq!(
        stdout.matches("budget: epoch ").count(),
        replans.len() - 1,
        "{stdout}"
    );
    for r in &replans[1..] {
        assert_eq!(r["from_step"].as_u64().unwrap() % 36, 0, "{r}");
    }
    let metrics = std::fs::read_to_string(dir.join("budget/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), epochs + 1, "{metrics}");

    // The run's own config.json repeats it, byte for byte, without timing the machine.
    let args = ["train", "--out", "replay", "--config", "budget/config.json"];
    let o = catdog(&args, dir);
    assert_ok(&o);
    assert!(common::stdout(&o).contains("without timing this machine"));
    let replay = std::fs::read_to_string(dir.join("replay/metrics.csv")).unwrap();
    // (compared as a bool: the files run to hundreds of lines)
    assert!(
        metrics == replay,
        "the replayed run's learning curves differ"
    );
    assert_eq!(train_config(dir, "replay"), train);

    // With one count, the run is the one `--epochs` gives: the probe trains a copy.
    let mut args = vec!["train", "--out", "fixed", "--epochs", "3"];
    args.extend(TINY);
    assert_ok(&catdog(&args, dir));
    let fixed = std::fs::read_to_string(dir.join("fixed/metrics.csv")).unwrap();
    let recorded = format!(
        r#"{{"train": {}}}"#,
        serde_json::json!({"replans": [{"from_step": 0, "epochs": 3}], "epochs": 3, "budget": "10s",
            "data": "data", "model": train["model"], "image_size": 16, "seed": 5, "batch_size": 8})
    );
    std::fs::write(dir.join("one-count.json"), recorded).unwrap();
    let o = catdog(
        &["train", "--out", "one", "--config", "one-count.json"],
        dir,
    );
    assert_ok(&o);
    let one = std::fs::read_to_string(dir.join("one/metrics.csv")).unwrap();
    assert!(one == fixed, "one recorded count differs from --epochs 3");

    // --epochs wins over a budget, and over recorded counts.
    let mut args = vec!["train", "--out", "both", "--budget", "20s", "--epochs", "2"];
    args.extend(TINY);
    assert_ok(&catdog(&args, dir));
    let train = train_config(dir, "both");
    assert_eq!(
        (train["epochs"].as_u64(), train["budget"].is_null()),
        (Some(2), true)
    );
    assert!(train["replans"].is_null(), "{train}");
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
