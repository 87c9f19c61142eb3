//! `catdog lr-find`: a suggestion a short training run learns with, clear refusals, no files
//! but its plot.

mod common;

use catdog::data::{synth::write_synth_set, Layout};
use common::{assert_ok, assert_usage_error, catdog};

const MODEL: [&str; 6] = ["--arch", "mlp", "--image-size", "16", "--seed", "3"];

#[test]
fn the_suggestion_trains_a_model_that_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        40,
        16,
        Layout::Kaggle,
        8,
    )
    .unwrap();
    let mut args = vec![
        "lr-find", "--data", "data", "--json", "--steps", "120", "--epochs", "3",
    ];
    args.extend(MODEL);
    let o = catdog(&args, dir);
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lr-find sweeps the learning rate itself; ignored: --epochs"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let suggested = v["suggested"].as_f64().expect("a suggestion");
    assert!((1e-7..10.0).contains(&suggested), "{suggested}");
    assert_eq!(v["min_over_10"].as_f64(), Some(suggested));
    let points = v["points"].as_array().unwrap();
    assert!(
        points.len() >= 10 && points.len() <= 120,
        "{}",
        points.len()
    );
    // Only the plot is written: no run folder.
    let png = image::open(dir.join("lr-find.png")).expect("the plot decodes");
    assert_eq!((png.width(), png.height()), (1000, 620));
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["cache", "data", "lr-find.png"]);

    // Training with the suggestion learns the generated classes.
    let lr = format!("{suggested}");
    let mut train = vec![
        "train", "--data", "data", "--out", "run", "--epochs", "4", "--lr", &lr, "--quiet",
    ];
    train.extend(MODEL);
    let o = catdog(&train, dir);
    assert_ok(&o);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    let accuracy = summary["validation"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracy >= 0.85,
        "validation accuracy {accuracy} at lr {lr}"
    );
}

#[test]
fn bad_inputs_are_refused_and_an_existing_plot_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        10,
        16,
        Layout::Kaggle,
        8,
    )
    .unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    let refused = |args: &[&str], needle: &str| assert_usage_error(&catdog(args, dir), needle);
    refused(&["lr-find", "--data", "empty"], "no images");
    refused(
        &[
            "lr-find", "--data", "data", "--min-lr", "1", "--max-lr", "1",
        ],
        "--max-lr above --min-lr",
    );
    refused(
        &["lr-find", "--data", "data", "--min-lr", "-1"],
        "invalid min-lr = -1",
    );
    std::fs::write(dir.join("mine.png"), b"my picture").unwrap();
    refused(
        &["lr-find", "--data", "data", "--plot", "mine.png"],
        "never replaces a file",
    );
    assert_eq!(std::fs::read(dir.join("mine.png")).unwrap(), b"my picture");
    assert!(!dir.join("lr-find.png").exists());
}

#[test]
fn each_run_gets_its_own_plot_and_none_goes_inside_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        10,
        16,
        Layout::Kaggle,
        8,
    )
    .unwrap();
    let sweep = ["lr-find", "--data", "data", "--steps", "10"];
    let args = [&sweep[..], &MODEL[..]].concat();
    assert_ok(&catdog(&args, dir));
    let first = std::fs::read(dir.join("lr-find.png")).unwrap();
    // A second run in the same folder takes the next free name and leaves the first plot.
    assert_ok(&catdog(&args, dir));
    assert_eq!(std::fs::read(dir.join("lr-find.png")).unwrap(), first);
    assert!(image::open(dir.join("lr-find-2.png")).is_ok());
    // A plot inside the data folder would be read as a photo by the next run.
    let inside = [&args[..], &["--plot", "data/lr.png"][..]].concat();
    assert_usage_error(&catdog(&inside, dir), "inside the --data folder");
    assert!(!dir.join("data/lr.png").exists());
}
