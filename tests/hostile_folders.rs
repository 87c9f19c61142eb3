//! Hostile and careless use of output folders: catdog never deletes or overwrites a file it did
//! not write, keeps no diverged weights, and checks every input before the first step.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Output,
};

use common::{assert_ok, assert_refused, catdog, stderr};

use catdog::data::{synth::write_synth_set, Layout};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    files
}

fn train_into(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let args = common::tiny_train_args("data", out, "mlp");
    catdog(&[&args[..], extra].concat(), dir)
}

fn data_set(dir: &Path) {
    write_synth_set(&dir.join("data"), &["cat", "dog"], 6, 16, Layout::Kaggle, 1).unwrap();
}

#[test]
fn a_folder_of_the_users_files_is_never_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    let mine = dir.join("mine");
    std::fs::create_dir_all(mine.join("checkpoints")).unwrap();
    for (name, text) in [
        ("notes.txt", "my notes"),
        (".draft.tmp-42", "a draft"),
        (".bashrc-backup.tmp-1.txt", "backup"),
        (
            ".x.tmp-0123456789abcdef",
            "looks exactly like a temporary name",
        ),
        ("metrics.csv", "my,metrics"),
        ("summary.json", "{}"),
        ("checkpoints/latest.json", "mine"),
    ] {
        std::fs::write(mine.join(name), text).unwrap();
    }
    let before = snapshot(&mine);
    for force in [false, true] {
        let extra: &[&str] = if force { &["--force"] } else { &[] };
        assert_refused(&train_into(dir, "mine", extra), 2, "was not made by catdog");
        assert_eq!(snapshot(&mine), before, "the user's files are unchanged");
    }
    // Nor as a resume, nor as an export or import target.
    assert_refused(
        &catdog(&["train", "--resume", "mine"], dir),
        2,
        "not a catdog run folder",
    );
    assert_ok(&train_into(dir, "run", &[]));
    for format in ["burnpack", "safetensors"] {
        let args = [
            "export", "--model", "run", "--out", "mine", "--format", format, "--force",
        ];
        assert_refused(&catdog(&args, dir), 2, "was not made by catdog");
    }
    assert_eq!(snapshot(&mine), before, "the user's files are unchanged");
}

#[test]
fn a_finished_run_is_replaced_only_with_force_and_only_its_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    std::fs::write(dir.join("run/notes.txt"), "kept").unwrap();
    // A file named like a temporary file but not written by a recorded catdog process.
    std::fs::write(dir.join("run/.plot.tmp-0123456789abcdef.png"), "kept").unwrap();
    assert_refused(&train_into(dir, "run", &[]), 2, "--resume");
    assert_ok(&train_into(dir, "run", &["--force", "--seed", "7"]));
    assert_eq!(std::fs::read(dir.join("run/notes.txt")).unwrap(), b"kept");
    assert!(dir.join("run/.plot.tmp-0123456789abcdef.png").is_file());
    let config = std::fs::read_to_string(dir.join("run/config.json")).unwrap();
    assert!(
        config.contains("\"seed\": 7"),
        "the new run's config: {config}"
    );
}

#[test]
fn a_run_that_failed_before_training_can_be_retried_in_the_same_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    // An empty --test folder fails the run before the first step.
    std::fs::create_dir(dir.join("empty")).unwrap();
    let o = train_into(dir, "run", &["--test", "empty"]);
    assert_refused(&o, 2, "no images");
    assert!(!dir.join("run/metrics.csv").exists(), "no epoch ran");
    assert!(!dir.join("run/.lock").exists(), "the lock was released");
    assert_ok(&train_into(dir, "run", &[]));
}

#[test]
fn a_bad_test_folder_is_found_before_training_and_resume_takes_a_corrected_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    write_synth_set(
        &dir.join("other"),
        &["ant", "bee"],
        3,
        16,
        Layout::Kaggle,
        2,
    )
    .unwrap();
    write_synth_set(&dir.join("test"), &["cat", "dog"], 3, 16, Layout::Kaggle, 3).unwrap();
    let o = train_into(dir, "run", &["--test", "other"]);
    assert_refused(&o, 2, "has classes [ant, bee]");
    assert!(!dir.join("run/metrics.csv").exists(), "no epoch ran");

    // A run whose stored --test went bad after it started: --resume --test replaces it.
    assert_ok(&train_into(dir, "run2", &["--test", "test"]));
    let config = dir.join("run2/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"test\": \"test\"", "\"test\": \"other\""),
    )
    .unwrap();
    std::fs::remove_file(dir.join("run2/summary.json")).unwrap();
    assert_refused(
        &catdog(&["train", "--resume", "run2", "--epochs", "2"], dir),
        2,
        "has classes [ant, bee]",
    );
    let o = catdog(
        &[
            "train",
            "--resume",
            "run2",
            "--epochs",
            "2",
            "--test",
            "test",
            "--lr",
            "0.1",
            "--whiten",
            "--backend",
            "flex",
            "--no-ema",
        ],
        dir,
    );
    assert_ok(&o);
    // Every settings flag it does not take is named, in the order `--help` lists them; the two
    // it takes are not.
    assert!(
        stderr(&o).contains("ignored: --lr, --no-ema, --whiten, --backend\n"),
        "resume names the flags it ignores: {}",
        stderr(&o)
    );
    let summary = std::fs::read_to_string(dir.join("run2/summary.json")).unwrap();
    assert!(summary.contains("\"epochs_run\": 2"), "{summary}");
}

#[test]
fn a_diverging_run_keeps_no_diverged_weights_and_stays_resumable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    for epochs in ["1", "2"] {
        let out = format!("run{epochs}");
        let args: Vec<&str> = [
            "train",
            "--data",
            "data",
            "--image-size",
            "16",
            "--arch",
            "mlp",
            "--lr",
            "1e30",
            "--epochs",
            epochs,
            "--out",
            &out,
        ]
        .to_vec();
        let o = catdog(&args, dir);
        assert_refused(&o, 1, "try a lower --lr");
        assert!(
            !stderr(&o).contains("cannot load weights"),
            "{}",
            stderr(&o)
        );
        // Whatever was committed has finite metrics and reads back.
        let latest = dir.join(&out).join("checkpoints/latest.json");
        if let Ok(text) = std::fs::read_to_string(&latest) {
            assert!(!text.contains("NaN") && !text.contains("null"), "{text}");
        }
        let resumed = catdog(&["train", "--resume", &out], dir);
        assert!(
            !stderr(&resumed).contains("invalid type"),
            "{}",
            stderr(&resumed)
        );
    }
}

#[test]
fn export_replaces_its_own_bundle_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    assert_ok(&catdog(
        &["export", "--model", "run", "--out", "bundle"],
        dir,
    ));
    std::fs::write(dir.join("bundle/README.txt"), "mine").unwrap();
    let before = snapshot(&dir.join("bundle"));
    let to_safetensors = [
        "export",
        "--model",
        "run",
        "--out",
        "bundle",
        "--format",
        "safetensors",
    ];
    assert_refused(&catdog(&to_safetensors, dir), 2, "--force");
    assert_eq!(snapshot(&dir.join("bundle")), before);
    assert_ok(&catdog(&[&to_safetensors[..], &["--force"]].concat(), dir));
    // The old burnpack weights are gone: predict cannot prefer them over the new export.
    assert!(!dir.join("bundle/model.bpk").exists());
    assert!(dir.join("bundle/model.safetensors").is_file());
    assert_eq!(
        std::fs::read(dir.join("bundle/README.txt")).unwrap(),
        b"mine"
    );
    // A run folder is not a bundle: exporting over one is refused.
    assert_refused(
        &catdog(
            &["export", "--model", "run", "--out", "run", "--force"],
            dir,
        ),
        2,
        "holds a catdog run",
    );
}

#[test]
fn a_stale_lock_whose_pid_was_reused_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    std::fs::remove_file(dir.join("run/summary.json")).unwrap();
    // A live process that is not catdog now has the PID the lock names.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(dir.join("run/.lock"), format!("{} 1", other.id())).unwrap();
    let o = catdog(&["train", "--resume", "run", "--epochs", "2"], dir);
    other.kill().ok();
    other.wait().ok();
    assert_ok(&o);
}

#[test]
fn the_run_folder_cannot_be_inside_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_refused(&train_into(dir, "data", &[]), 2, "inside the --data folder");
    assert_refused(
        &train_into(dir, "data/run", &[]),
        2,
        "inside the --data folder",
    );
    assert!(!dir.join("data/run").exists());
}

#[test]
fn one_image_per_class_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 1, 16, Layout::Kaggle, 1).unwrap();
    assert_refused(&train_into(dir, "run", &[]), 2, "too few");
}

#[test]
fn a_copied_run_config_does_not_make_a_folder_of_the_users_catdogs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    // The user's own folder, with a copy of a run's config.json among their files.
    let mine = dir.join("mine");
    std::fs::create_dir_all(mine.join("checkpoints/epoch-0001")).unwrap();
    std::fs::copy(dir.join("run/config.json"), mine.join("config.json")).unwrap();
    for name in [
        "metrics.csv",
        "model.bpk",
        "checkpoints/epoch-0001/important.txt",
    ] {
        std::fs::write(mine.join(name), "the user's").unwrap();
    }
    let before = snapshot(&mine);
    // A resume that fails on its data, one that would work, then --force: all refused, and
    // nothing written (no manifest that would make the folder catdog's).
    std::fs::rename(dir.join("data"), dir.join("away")).unwrap();
    let o = catdog(&["train", "--resume", "mine"], dir);
    assert_eq!(o.status.code(), Some(2), "{}", common::both(&o));
    assert_eq!(
        snapshot(&mine),
        before,
        "a refused resume wrote into the folder"
    );
    std::fs::rename(dir.join("away"), dir.join("data")).unwrap();
    let o = catdog(&["train", "--resume", "mine"], dir);
    assert_refused(&o, 2, "not a catdog run folder");
    assert_refused(
        &train_into(dir, "mine", &["--force"]),
        2,
        "was not made by catdog",
    );
    assert_eq!(snapshot(&mine), before, "the user's files are unchanged");
}

#[test]
fn a_refused_command_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    let before = snapshot(&dir.join("run"));
    // Refused for the folder (a finished run without --force), for the data (a held-out folder
    // that is missing), on resume for a held-out folder of other classes.
    assert_refused(&train_into(dir, "run", &[]), 2, "--resume");
    assert_refused(
        &train_into(dir, "run", &["--force", "--test", "nowhere"]),
        2,
        "nowhere",
    );
    write_synth_set(
        &dir.join("other"),
        &["ant", "bee"],
        3,
        16,
        Layout::Kaggle,
        1,
    )
    .unwrap();
    let o = catdog(
        &[
            "train", "--resume", "run", "--epochs", "2", "--test", "other",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::both(&o));
    assert_eq!(
        snapshot(&dir.join("run")),
        before,
        "a refused command wrote"
    );
}

#[test]
fn force_removes_only_catdogs_checkpoint_files_and_never_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    let kept = dir.join("run/checkpoints/epoch-0001/important.txt");
    std::fs::write(&kept, "the user's").unwrap();
    assert_ok(&train_into(dir, "run", &["--force", "--seed", "3"]));
    assert_eq!(std::fs::read(&kept).unwrap(), b"the user's");
    assert_ok(&train_into(dir, "run", &["--force", "--seed", "5"]));
    assert_eq!(std::fs::read(&kept).unwrap(), b"the user's");

    // `checkpoints` as a link to another folder: refused, and nothing there touched.
    let victim = dir.join("victim");
    std::fs::create_dir_all(victim.join("epoch-0007")).unwrap();
    std::fs::write(victim.join("epoch-0007/data.txt"), "theirs").unwrap();
    std::fs::write(victim.join("latest.json"), "theirs").unwrap();
    std::fs::rename(dir.join("run/checkpoints"), dir.join("moved")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("run/checkpoints")).unwrap();
    let before = snapshot(&victim);
    assert_refused(
        &train_into(dir, "run", &["--force"]),
        2,
        "is a symbolic link",
    );
    let o = catdog(&["train", "--resume", "run", "--epochs", "3"], dir);
    assert_refused(&o, 2, "is a symbolic link");
    assert_eq!(snapshot(&victim), before, "a file behind the link changed");
}

#[test]
fn unreadable_or_blocking_state_files_are_refused_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "run", &[]));
    let metrics = std::fs::read(dir.join("run/metrics.csv")).unwrap();
    // An unreadable latest.json is an error, never a silent restart from epoch 1.
    let latest = dir.join("run/checkpoints/latest.json");
    let saved = std::fs::read(&latest).unwrap();
    std::fs::remove_file(&latest).unwrap();
    std::fs::create_dir(&latest).unwrap();
    let o = catdog(&["train", "--resume", "run", "--epochs", "2"], dir);
    assert_refused(&o, 2, "latest.json");
    assert_eq!(std::fs::read(dir.join("run/metrics.csv")).unwrap(), metrics);
    std::fs::remove_dir(&latest).unwrap();
    std::fs::write(&latest, saved).unwrap();

    // FIFOs where catdog reads its own files: refused at once instead of waiting for a writer.
    let fifo = |path: &Path| {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success());
    };
    fifo(&dir.join("settings.toml"));
    let args = ["train", "--config", "settings.toml", "--out", "x"];
    let o = common::catdog_within(&args, dir, 60).expect("--config as a FIFO hung");
    assert_refused(&o, 2, "a FIFO");
    let photo = common::any_file_in(&dir.join("data"));
    let photo = photo.as_str();
    for (file, args) in [
        (
            "run/summary.json",
            &["train", "--resume", "run", "--epochs", "2"][..],
        ),
        ("run/config.json", &["predict", "--model", "run", photo][..]),
        (
            "run/.lock",
            &["train", "--resume", "run", "--epochs", "2"][..],
        ),
    ] {
        let saved = std::fs::read(dir.join(file)).ok();
        let _ = std::fs::remove_file(dir.join(file));
        fifo(&dir.join(file));
        let o = common::catdog_within(args, dir, 60)
            .unwrap_or_else(|| panic!("{file} as a FIFO: `{}` hung", args.join(" ")));
        let err = stderr(&o);
        assert!(common::crash_marker(&err).is_none(), "{file}: {err}");
        // (A stale lock is replaced, and removed when the command ends.)
        let _ = std::fs::remove_file(dir.join(file));
        if let Some(saved) = saved {
            std::fs::write(dir.join(file), saved).unwrap();
        }
    }
}

#[test]
fn a_half_replaced_bundle_or_a_flipped_bit_is_refused_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    assert_ok(&train_into(dir, "a", &[]));
    assert_ok(&train_into(dir, "b", &["--seed", "9"]));
    for (model, out) in [("a", "bundle"), ("b", "other")] {
        assert_ok(&catdog(&["export", "--model", model, "--out", out], dir));
    }
    let photo = common::any_file_in(&dir.join("data"));
    let predict = |model: &str| catdog(&["predict", "--model", model, &photo], dir);
    assert_ok(&predict("bundle"));
    // What an export killed between its two writes leaves: the new weights, the old config.
    std::fs::copy(dir.join("other/model.bpk"), dir.join("bundle/model.bpk")).unwrap();
    assert_refused(&predict("bundle"), 2, "does not match");
    // One flipped bit in a run's weights.
    let weights = dir.join("a/model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&weights, bytes).unwrap();
    assert_refused(&predict("a"), 2, "does not match");
}

#[test]
fn a_held_out_folder_overlapping_the_data_and_classes_differing_in_case_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    // The training folder itself, a folder inside it, a folder holding it.
    std::fs::create_dir(dir.join("data/more")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = elsewhere.path().join("run");
    for test in ["data", "data/more", "."] {
        let o = train_into(dir, out.to_str().unwrap(), &["--test", test]);
        assert_refused(&o, 2, "must not overlap the --data folder");
    }
    assert!(!out.exists());
    // `Cat/` and `cat/` would be two classes.
    let classes = ["Cat", "cat", "dog"];
    write_synth_set(
        &dir.join("folders"),
        &classes,
        3,
        16,
        Layout::ImageFolder,
        1,
    )
    .unwrap();
    let o = catdog(
        &[
            "train", "--data", "folders", "--epochs", "1", "--out", "r2", "--arch", "mlp",
        ],
        dir,
    );
    assert_refused(&o, 2, "differ only in case");
}

#[test]
fn a_folder_left_by_a_kill_during_the_first_manifest_write_can_be_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    data_set(dir);
    // All a process killed inside its first write of `.catdog.json` leaves behind.
    std::fs::create_dir(dir.join("run")).unwrap();
    std::fs::write(dir.join("run/..catdog.json.tmp-0123456789abcdef"), "{\"ki").unwrap();
    assert_ok(&train_into(dir, "run", &[]));
    assert!(dir.join("run/metrics.csv").is_file());
}
