//! Bad input never hurts: each case exits with code 2 (the user's to fix) or, for a predict
//! that goes on past a bad file, 1, with a clear message and no panic.

mod common;

use common::{assert_ok, assert_usage_error, catdog, stderr, stdout, train_tiny};

use catdog::data::{synth::write_synth_set, Layout};

#[test]
fn wrong_or_damaged_model_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("two"), &["cat", "dog"], 8, 16, Layout::Kaggle, 1).unwrap();
    write_synth_set(
        &dir.join("three"),
        &["a", "b", "c"],
        8,
        16,
        Layout::Kaggle,
        2,
    )
    .unwrap();
    assert_ok(&train_tiny(dir, "two", "mlp", "mlp"));
    assert_ok(&train_tiny(dir, "two", "cnn", "cnn"));
    assert_ok(&train_tiny(dir, "three", "mlp3", "mlp"));
    let img = dir.join("two/cat.0.jpg").to_string_lossy().into_owned();
    let predict = |model: &str| catdog(&["predict", "--model", model, &img], dir);

    let copy = |from: &str, to: &str| {
        let _ = std::fs::remove_dir_all(dir.join(to));
        std::fs::create_dir_all(dir.join(to)).unwrap();
        std::fs::copy(
            dir.join(from).join("config.json"),
            dir.join(to).join("config.json"),
        )
        .unwrap();
        std::fs::copy(
            dir.join(from).join("model.bpk"),
            dir.join(to).join("model.bpk"),
        )
        .unwrap();
    };
    // Weights of another architecture.
    copy("mlp", "x");
    std::fs::copy(dir.join("cnn/model.bpk"), dir.join("x/model.bpk")).unwrap();
    assert_usage_error(&predict("x"), "cannot load weights");
    // Weights of another class count.
    copy("mlp", "x");
    std::fs::copy(dir.join("mlp3/model.bpk"), dir.join("x/model.bpk")).unwrap();
    assert_usage_error(&predict("x"), "cannot load weights");
    // Truncated and random-bytes weights.
    copy("mlp", "x");
    let bytes = std::fs::read(dir.join("x/model.bpk")).unwrap();
    std::fs::write(dir.join("x/model.bpk"), &bytes[..bytes.len() / 2]).unwrap();
    assert_usage_error(&predict("x"), "cannot load weights");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(dir.join("x/model.bpk"), noise).unwrap();
    assert_usage_error(&predict("x"), "cannot load weights");
    // config.json with a missing field, and with a wrongly typed one.
    copy("mlp", "x");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mlp/config.json")).unwrap())
            .unwrap();
    let mut missing = config.clone();
    missing.as_object_mut().unwrap().remove("classes");
    std::fs::write(dir.join("x/config.json"), missing.to_string()).unwrap();
    assert_usage_error(&predict("x"), "classes");
    let mut wrong = config.clone();
    wrong["image_size"] = serde_json::json!("big");
    std::fs::write(dir.join("x/config.json"), wrong.to_string()).unwrap();
    assert_usage_error(&predict("x"), "image_size");
    // eval of a model on data with other classes.
    assert_usage_error(
        &catdog(&["eval", "--model", "mlp", "--data", "three"], dir),
        "classes",
    );
}

#[test]
fn unusable_data_and_output_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("empty")).unwrap();
    std::fs::write(dir.join("file"), b"x").unwrap();
    write_synth_set(&dir.join("one"), &["cat"], 4, 16, Layout::Kaggle, 3).unwrap();
    write_synth_set(&dir.join("two"), &["cat", "dog"], 4, 16, Layout::Kaggle, 4).unwrap();
    let train = |data: &str, out: &str| {
        catdog(
            &["train", "--data", data, "--out", out, "--epochs", "1"],
            dir,
        )
    };
    assert_usage_error(&train("missing", "r1"), "missing");
    assert_usage_error(&train("empty", "r2"), "no images");
    assert_usage_error(&train("file", "r3"), "is a file");
    assert_usage_error(&train("one", "r4"), "1 class");
    // An output path that cannot be created is refused before training starts.
    let o = train("two", "file/run");
    assert_usage_error(&o, "not writable");
    assert!(
        !stdout(&o).contains("epoch 1"),
        "refused before the first epoch"
    );
    // predict on a directory without images, a missing file and a non-image, beside a good one.
    std::fs::write(dir.join("notes.jpg"), b"this is text").unwrap();
    assert_ok(&train_tiny(dir, "two", "ok", "mlp"));
    let o = catdog(
        &[
            "predict",
            "--model",
            "ok",
            "two/cat.0.jpg",
            "nope.jpg",
            "notes.jpg",
            "empty",
        ],
        dir,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed file makes the exit code 1"
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        out.contains("cat.0.jpg  logits"),
        "the good file is still predicted: {out}"
    );
    assert!(
        err.contains("nope.jpg") && err.contains("notes.jpg"),
        "{err}"
    );
    assert!(common::crash_marker(&err).is_none(), "{err}");
}
