//! Hostile data through the binary: link loops, special and oversized files, names that are not
//! UTF-8, one-class folders. Each command ends, and says what was wrong with which file.
#![cfg(unix)]

mod common;

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt, fs::symlink},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::catdog;

use catdog::data::{synth::write_synth_set, Layout};

/// `catdog ARGS` in `cwd` as [`common::catdog`] runs it, killed after `secs`: `None` when it
/// did not end by then. Output goes through files, so a chatty hung process cannot block on a
/// full pipe.
fn catdog_within(args: &[&str], cwd: &Path, secs: u64) -> Option<Output> {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(args)
        .current_dir(cwd)
        .env("CATDOG_CACHE_DIR", cwd.join("cache"))
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .expect("catdog starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut bytes = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Some(Output {
        status,
        stdout: read(out),
        stderr: read(err),
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn train_mlp(dir: &Path, data: &str, out: &str) -> Output {
    catdog(
        &[
            "train",
            "--data",
            data,
            "--out",
            out,
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--arch",
            "mlp",
        ],
        dir,
    )
}

#[test]
fn train_and_predict_end_despite_link_loops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(
        &dir.join("data"),
        &["Cat", "Dog"],
        8,
        16,
        Layout::ImageFolder,
        1,
    )
    .unwrap();
    // Each class links back to the data folder: without loop detection the walk never ends.
    symlink("..", dir.join("data/Cat/loop")).unwrap();
    symlink("..", dir.join("data/Dog/loop")).unwrap();
    let args = [
        "train",
        "--data",
        "data",
        "--out",
        "run",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--arch",
        "mlp",
    ];
    let o = catdog_within(&args, dir, 120).expect("train ends");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("16 images, 8 Cat, 8 Dog"), "{out}");

    let o = catdog_within(&["predict", "--model", "run", "data"], dir, 120).expect("predict ends");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.matches("logits").count(), 16, "each image once: {out}");
}

#[test]
fn predict_refuses_special_and_oversized_files_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("two"), &["cat", "dog"], 4, 16, Layout::Kaggle, 2).unwrap();
    let o = train_mlp(dir, "two", "ok");
    assert!(o.status.success(), "{}", text(&o.stderr));
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
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
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
    write_synth_set(
        &dir.join("data"),
        &["Cat", "Dog"],
        6,
        16,
        Layout::ImageFolder,
        3,
    )
    .unwrap();
    std::fs::write(
        dir.join("data/Dog").join(OsStr::from_bytes(b"\xfe.jpg")),
        b"not an image",
    )
    .unwrap();
    // Before, all epochs ran and then summary.json could not be written.
    let o = train_mlp(dir, "data", "run");
    assert!(o.status.success(), "{}", text(&o.stderr));
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
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let skipped = report["skipped"][0]["path"].as_str().unwrap_or_default();
    assert!(skipped.ends_with("Dog/\u{FFFD}.jpg"), "{report}");
}

#[test]
fn predict_json_names_a_file_that_is_not_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("two"), &["cat", "dog"], 4, 16, Layout::Kaggle, 4).unwrap();
    let o = train_mlp(dir, "two", "ok");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let odd = dir.join(OsStr::from_bytes(b"\xff.jpg"));
    std::fs::copy(dir.join("two/cat.0.jpg"), &odd).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_catdog"))
        .args(["predict", "--model", "ok", "--json"])
        .arg(&odd)
        .current_dir(dir)
        .env("CATDOG_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = report[0]["path"].as_str().unwrap_or_default();
    assert!(path.ends_with("\u{FFFD}.jpg"), "{report}");
}

#[test]
fn one_class_folder_error_names_the_given_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("x"), &["Cat"], 4, 16, Layout::ImageFolder, 5).unwrap();
    let o = train_mlp(dir, "x", "run");
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("x has 1 class(es) (Cat)") && !err.contains("no images"),
        "{err}"
    );
}
