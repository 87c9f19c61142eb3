//! Hostile or careless inputs never crash catdog, allocate absurd memory or reach the terminal
//! raw: a model folder's `config.json` is validated as strictly as a training config, sizes that
//! cannot fit in memory are refused before anything is allocated, and names from files or
//! folders are printed with terminal controls escaped.

mod common;

use std::path::Path;

use burn::tensor::Device;
use catdog::{
    data::{synth::write_synth_set, Layout, Normalization},
    infer::{
        model_io::{save_weights, write_json},
        ModelSpec,
    },
    model::{Classifier, MlpConfig, ModelConfig},
};
use common::{assert_ok, assert_usage_error, catdog, stderr, stdout};
use serde_json::{json, Value};

const ESC: char = '\u{1b}';

/// A change to a good `config.json`.
type Edit = Box<dyn Fn(&mut Value)>;

/// A model folder with fresh weights for a tiny MLP on 16x16 images; returns its config as JSON.
fn write_model(dir: &Path, classes: &[&str]) -> Value {
    let config = ModelSpec::new(
        ModelConfig::Mlp(MlpConfig {
            num_classes: classes.len(),
            image_size: 16,
            hidden: vec![8],
            dropout: 0.0,
        }),
        classes.iter().map(|c| c.to_string()).collect(),
        Normalization::default(),
    );
    std::fs::create_dir_all(dir).unwrap();
    let model = Classifier::new(&config.model, &Device::flex()).unwrap();
    save_weights(&model, &dir.join("model.bpk")).unwrap();
    write_json(&dir.join("config.json"), &config).unwrap();
    serde_json::to_value(&config).unwrap()
}

#[test]
fn hostile_model_configs_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = write_model(&dir.join("model"), &["cat", "dog"]);
    let images =
        write_synth_set(&dir.join("data"), &["cat", "dog"], 2, 16, Layout::Kaggle, 1).unwrap();
    let img = images[0].to_string_lossy().into_owned();
    let ok = catdog(&["predict", "--model", "model", &img], dir);
    assert_ok(&ok);

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut config = good.clone();
        edit(&mut config);
        std::fs::write(dir.join("model/config.json"), config.to_string()).unwrap();
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        // A top-level image size that disagrees with the model section: 0 used to panic in the
        // batch thread and exit 0, 32 failed a shape assertion, 1000000 aborted allocating 3 TB.
        (
            "image_size 0",
            Box::new(|c| c["image_size"] = json!(0)),
            "image_size is 0 but model.image_size is 16",
        ),
        (
            "image_size 32",
            Box::new(|c| c["image_size"] = json!(32)),
            "image_size is 32",
        ),
        (
            "image_size 1000000",
            Box::new(|c| c["image_size"] = json!(1_000_000)),
            "image_size is 1000000",
        ),
        (
            "both sizes 1000000",
            Box::new(|c| {
                c["image_size"] = json!(1_000_000);
                c["model"]["image_size"] = json!(1_000_000);
            }),
            "image_size must be between 8 and 1024",
        ),
        (
            "an MLP too big for memory",
            Box::new(|c| c["model"]["hidden"] = json!([1_000_000_000u64])),
            "hidden[0]",
        ),
        // Normalisation that turns pixels into NaN or infinity (1e39 is infinite as f32).
        (
            "std 0",
            Box::new(|c| c["normalization"]["std"] = json!([0.25, 0.0, 0.25])),
            "normalization.std[1] = 0",
        ),
        (
            "std < 0",
            Box::new(|c| c["normalization"]["std"] = json!([-0.25, 0.25, 0.25])),
            "normalization.std[0]",
        ),
        (
            "std inf",
            Box::new(|c| c["normalization"]["std"] = json!([0.25, 0.25, 1e39])),
            "normalization.std[2] = inf",
        ),
        (
            "std subnormal",
            Box::new(|c| c["normalization"]["std"] = json!([1e-45, 0.25, 0.25])),
            "normalization.std[0]",
        ),
        (
            "mean inf",
            Box::new(|c| c["normalization"]["mean"] = json!([-1e39, 0.5, 0.5])),
            "normalization.mean[0] = -inf",
        ),
        (
            "mean of 2",
            Box::new(|c| c["normalization"]["mean"] = json!([0.5, 0.5])),
            "normalization.mean",
        ),
        (
            "std of 4",
            Box::new(|c| c["normalization"]["std"] = json!([0.25, 0.25, 0.25, 0.25])),
            "normalization.std",
        ),
        // Class names that do not match the outputs one to one.
        (
            "no classes",
            Box::new(|c| c["classes"] = json!([])),
            "0 class names but the model has 2 outputs",
        ),
        (
            "zero classes everywhere",
            Box::new(|c| {
                c["classes"] = json!([]);
                c["model"]["num_classes"] = json!(0);
            }),
            "num_classes must be at least 2",
        ),
        (
            "3 names, 2 outputs",
            Box::new(|c| c["classes"] = json!(["cat", "dog", "fox"])),
            "3 class names",
        ),
        (
            "duplicate names",
            Box::new(|c| c["classes"] = json!(["cat", "cat"])),
            "classes[1] repeats \"cat\"",
        ),
        (
            "empty name",
            Box::new(|c| c["classes"] = json!(["cat", ""])),
            "classes[1] is an empty name",
        ),
    ];
    for (what, edit, needle) in &cases {
        with(edit.as_ref());
        for args in [
            &["predict", "--model", "model", &img][..],
            &["eval", "--model", "model", "--data", "data", "--no-plots"],
        ] {
            let o = catdog(args, dir);
            assert_usage_error(&o, needle);
            assert!(
                stderr(&o).contains("not a valid catdog config") && stdout(&o).is_empty(),
                "{what}: refused on loading, before any work: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn training_settings_that_cannot_fit_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 2, 16, Layout::Kaggle, 1).unwrap();
    let train = |extra: &[&str]| {
        let args = [&["train", "--data", "data", "--out", "run"][..], extra].concat();
        catdog(&args, dir)
    };
    // The default MLP on 1024x1024 inputs: 1.6 billion weights in its first layer.
    assert_usage_error(
        &train(&["--arch", "mlp", "--image-size", "1024"]),
        "hidden[0]",
    );
    // The default CNN on 1024x1024 inputs: gigabytes of activations per image.
    assert_usage_error(&train(&["--image-size", "1024"]), "activations");
    assert_usage_error(&train(&["--image-size", "2000"]), "between 8 and 1024");
    assert_usage_error(
        &train(&["--batch-size", "100000"]),
        "invalid batch-size = 100000",
    );
    std::fs::write(
        dir.join("huge.toml"),
        "[model]\narch = \"mlp\"\nhidden = [1000000000]\n",
    )
    .unwrap();
    assert_usage_error(&train(&["--config", "huge.toml"]), "hidden[0]");
    std::fs::write(
        dir.join("mix.toml"),
        "mix = { kind = \"mixup\", alpha = 0.0 }\n",
    )
    .unwrap();
    assert_usage_error(&train(&["--config", "mix.toml"]), "mix.alpha = 0");
    std::fs::write(dir.join("mix.toml"), "mix = { probability = 2.0 }\n").unwrap();
    assert_usage_error(&train(&["--config", "mix.toml"]), "mix.probability = 2");
    assert_usage_error(
        &train(&["--mix", "blend"]),
        "invalid value 'blend' for '--mix",
    );
    // Negative numbers reach the validator instead of being read as unknown flags.
    assert_usage_error(
        &train(&["--label-smoothing", "-0.1"]),
        "label-smoothing = -0.1: use a value in [0, 1)",
    );
    assert_usage_error(
        &train(&["--validation-fraction", "-0.5"]),
        "validation-fraction = -0.5",
    );
    assert_usage_error(
        &train(&["--epochs", "-1"]),
        "invalid value '-1' for '--epochs",
    );
    // An adapter index is refused, not ignored, on a CPU backend.
    let o = train(&["--device", "99"]);
    assert_usage_error(&o, "--device picks a GPU adapter");
    assert!(
        stdout(&o).is_empty(),
        "refused before training: {}",
        stdout(&o)
    );
    assert!(
        !dir.join("run").exists(),
        "nothing is written before the checks pass"
    );
    write_model(&dir.join("model"), &["cat", "dog"]);
    let img = dir.join("data/cat.0.jpg").to_string_lossy().into_owned();
    assert_usage_error(
        &catdog(
            &["predict", "--model", "model", "--device", "99", &img],
            dir,
        ),
        "--device 99 picks a GPU adapter, but the backend is flex",
    );
}

#[test]
fn names_from_files_never_reach_the_terminal_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let evil = ["\u{1b}[31mred", "two\nlines"];
    write_model(&dir.join("model"), &evil);
    let images = write_synth_set(&dir.join("data"), &evil, 2, 16, Layout::ImageFolder, 1).unwrap();
    let img = images[0].to_string_lossy().into_owned();

    let o = catdog(&["predict", "--model", "model", &img], dir);
    assert_ok(&o);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!out.contains(ESC) && !err.contains(ESC), "{out:?} {err:?}");
    assert_eq!(out.lines().count(), 1, "one line per image: {out:?}");
    assert!(
        out.contains("\\u{1b}[31mred") && out.contains("two\\u{a}lines"),
        "{out}"
    );
    // JSON keeps the names exact (JSON's own escaping makes them safe).
    let o = catdog(&["predict", "--model", "model", "--json", &img], dir);
    let preds: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(evil.contains(&preds[0]["predicted"].as_str().unwrap()));

    // eval's report: class names in the confusion matrix, per-class table and example lists,
    // and file paths (inside the evil folders).
    let o = catdog(
        &["eval", "--model", "model", "--data", "data", "--no-plots"],
        dir,
    );
    assert_ok(&o);
    let out = stdout(&o);
    let report = &out[out.find("model model on").expect("report header")..];
    assert!(!report.contains(ESC), "{report:?}");
    assert!(report.contains("two\\u{a}lines"), "{report}");
    assert!(!stderr(&o).contains(ESC), "{:?}", stderr(&o));
}

#[test]
fn eval_matches_class_names_ignoring_case_when_unambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_model(&dir.join("model"), &["cat", "dog"]);
    write_synth_set(
        &dir.join("upper"),
        &["Cat", "Dog"],
        2,
        16,
        Layout::ImageFolder,
        1,
    )
    .unwrap();
    let o = catdog(
        &[
            "eval",
            "--model",
            "model",
            "--data",
            "upper",
            "--no-plots",
            "--json",
        ],
        dir,
    );
    assert_ok(&o);
    assert!(
        stderr(&o).contains("matched data classes Cat, Dog to the model's cat, dog"),
        "{}",
        stderr(&o)
    );
    let e: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(e["classes"], json!(["cat", "dog"]));
    assert_eq!(e["images"], 4);
    // Other names are still refused.
    write_synth_set(
        &dir.join("other"),
        &["Cat", "Fox"],
        2,
        16,
        Layout::ImageFolder,
        1,
    )
    .unwrap();
    assert_usage_error(
        &catdog(
            &["eval", "--model", "model", "--data", "other", "--no-plots"],
            dir,
        ),
        "has classes [Cat, Fox] but the model was trained on [cat, dog]",
    );
}
