//! Hostile data through the binary: link loops, special and oversized files, names that are not
//! UTF-8, one-class folders. Each command ends, and says what was wrong with which file.
#![cfg(unix)]

mod common;

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt, fs::symlink},
    process::Command,
};

use common::{
    assert_ok, assert_usage_error, catdog, catdog_within, command, stderr, stdout, train_tiny,
};

use catdog::data::{synth::write_synth_set, Layout};

#[test]
fn train_and_predict_end_despite_link_loops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::cat_and_dog_folders(dir, 8, 1);
    // Each class links back to the data folder: without loop detection the walk never ends.
    symlink("..", dir.join("data/Cat/loop")).unwrap();
    symlink("..", dir.join("data/Dog/loop")).unwrap();
    let args = common::tiny_train_args("data", "run", "mlp");
    let o = catdog_within(&args, dir, 120).expect("train ends");
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("16 images, 8 Cat, 8 Dog"), "{out}");

    let o = catdog_within(&["predict", "--model", "run", "data"], dir, 120).expect("predict ends");
    assert_ok(&o);
    let out = stdout(&o);
    assert_eq!(out.matches("logits").count(), 16, "each image once: {out}");
}

#[test]
fn predict_refuses_special_and_oversized_files_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("two"), &["cat", "dog"], 4, 16, Layout::Kaggle, 2).unwrap();
    let o = train_tiny(dir, "two", "ok", "mlp");
    assert_ok(&o);
    // A FIFO without a writer: opening it would block forever.
    let made = Command::new("mkfifo")
        .arg(dir.join("pipe.jpg"))
        .status()
        .unwrap();
    assert!(made.success());
    // 200 MB on paper (sparse): refused by its size, before any byte is read.
    std::fs::File::create(dir.join("big.jpg"))
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let o = catdog_within(
        &[
            "predict",
            "--model",
            "ok",
            "pipe.jpg",
            "/dev/null",
            "big.jpg",
            "two/cat.0.jpg",
        ],
        dir,
        120,
    )
    .expect("predict ends");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.contains("cat.0.jpg  logits"), "still predicted: {out}");
    for expected in [
        "pipe.jpg  error: not a regular file (a FIFO)",
        "/dev/null  error: not a regular file (a character device)",
        "big.jpg  error: file too large (200 MiB",
    ] {
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
}

#[test]
fn names_that_are_not_utf8_do_not_fail_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::cat_and_dog_folders(dir, 6, 3);
    std::fs::write(
        dir.join("data/Dog").join(OsStr::from_bytes(b"\xfe.jpg")),
        b"not an image",
    )
    .unwrap();
    // Before, all epochs ran and then summary.json could not be written.
    let o = train_tiny(dir, "data", "run", "mlp");
    assert_ok(&o);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    let skipped = summary["skipped"][0]["path"].as_str().unwrap_or_default();
    assert!(skipped.ends_with("Dog/\u{FFFD}.jpg"), "{summary}");

    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "data",
            "--json",
            "--no-plots",
        ],
        dir,
    );
    assert_ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let skipped = report["skipped"][0]["path"].as_str().unwrap_or_default();
    assert!(skipped.ends_with("Dog/\u{FFFD}.jpg"), "{report}");
}

#[test]
fn predict_json_names_a_file_that_is_not_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("two"), &["cat", "dog"], 4, 16, Layout::Kaggle, 4).unwrap();
    let o = train_tiny(dir, "two", "ok", "mlp");
    assert_ok(&o);
    let odd = dir.join(OsStr::from_bytes(b"\xff.jpg"));
    std::fs::copy(dir.join("two/cat.0.jpg"), &odd).unwrap();
    let o = command(["predict", "--model", "ok", "--json"], dir)
        .arg(&odd)
        .output()
        .unwrap();
    assert_ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = report[0]["path"].as_str().unwrap_or_default();
    assert!(path.ends_with("\u{FFFD}.jpg"), "{report}");
}

#[test]
fn one_class_folder_error_names_the_given_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("x"), &["Cat"], 4, 16, Layout::ImageFolder, 5).unwrap();
    let o = train_tiny(dir, "x", "run", "mlp");
    assert_usage_error(&o, "x has 1 class(es) (Cat)");
    assert!(!stderr(&o).contains("no images"), "{}", stderr(&o));
}

#[test]
fn an_image_deeper_than_path_max_is_reported_as_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::cat_and_dog_folders(dir, 6, 3);
    let image = common::any_file_in(&dir.join("data/Dog"));
    // 20 folders of 250 characters: the image's path is longer than PATH_MAX (4096), so it
    // can only be reached by changing into each folder in turn.
    let name = "d".repeat(250);
    let script = format!(
        "cd data/Dog && for i in $(seq 20); do mkdir {name} && cd {name} || exit 1; done && cp '{image}' deep.png"
    );
    let made = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(made.success());
    let o = train_tiny(dir, "data", "run", "mlp");
    assert_ok(&o);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    let skipped = &summary["skipped"][0];
    let path = skipped["path"].as_str().unwrap_or_default();
    assert!(path.contains(&name), "{summary}");
    let reason = skipped["reason"].as_str().unwrap_or_default();
    assert!(reason.to_lowercase().contains("too long"), "{summary}");
}
