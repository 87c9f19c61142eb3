//! Kill anywhere, lose at most one epoch: SIGKILL a real training process at random moments
//! (during steps and checkpoint writes), check the run folder after each kill, resume, and
//! compare the final metrics with an uninterrupted run.

mod common;

use std::{
    path::Path,
    process::{Child, Stdio},
    time::Instant,
};

use burn::tensor::Device;
use catdog::{
    data::{synth::write_synth_set, Layout, SplitMix64},
    infer::model_io::{load_weights, read_spec},
};

const KILLS: usize = 12;

fn start<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Child {
    common::command(args, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("catdog starts")
}

fn finish(child: Child) {
    common::assert_ok(&child.wait_with_output().expect("wait"));
}

/// What a reader finds after a kill must load: config, the committed checkpoint's weights.
fn check_run_folder(run: &Path) {
    if !run.join("config.json").exists() {
        return; // killed before the run wrote anything
    }
    let config = read_spec(run).expect("config.json is whole").model;
    let latest = run.join("checkpoints/latest.json");
    if let Ok(text) = std::fs::read_to_string(&latest) {
        let v: serde_json::Value = serde_json::from_str(&text).expect("latest.json is whole");
        let dir = run
            .join("checkpoints")
            .join(v["dir"].as_str().expect("dir"));
        load_weights(&config, &dir.join("model.bpk"), &Device::flex()).expect("checkpoint loads");
        assert!(dir.join("optim.bpk").is_file());
    }
    if run.join("best.bpk").exists() {
        load_weights(&config, &run.join("best.bpk"), &Device::flex()).expect("best.bpk loads");
    }
}

/// Epochs committed by `checkpoints/latest.json` (0 before the first).
fn committed_epochs(run: &Path) -> usize {
    std::fs::read_to_string(run.join("checkpoints/latest.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["state"]["epoch"].as_u64())
        .map_or(0, |e| e as usize)
}

/// Temporary files of unfinished writes in the run folder and its checkpoints.
fn partial_writes(run: &Path) -> usize {
    let mut dirs = vec![run.to_path_buf()];
    let mut n = 0;
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            } else if catdog::data::is_partial_write(&e.file_name().to_string_lossy()) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn sigkill_at_random_moments_then_resume_matches_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        40,
        24,
        Layout::Kaggle,
        5,
    )
    .unwrap();
    fn args(out: &str) -> [&str; 13] {
        [
            "train",
            "--data",
            "data",
            "--out",
            out,
            "--epochs",
            "30",
            "--image-size",
            "16",
            "--batch-size",
            "8",
            "--seed",
            "9",
        ]
    }

    let t = Instant::now();
    finish(start(dir, &args("reference")));
    let full = t.elapsed();

    // Kills are timed by what the run has written, not by the clock, so the test behaves the
    // same on a slow and a fast machine: each round lets the run commit at most two more
    // epochs, so 12 kills never reach the end of 30 epochs.
    let mut rng = SplitMix64::new(2024);
    let run = dir.join("killed");
    let mut kills = 0;
    let mut moments = [0usize; 3];
    while kills < KILLS {
        let mut child = if run.join("config.json").exists() {
            start(dir, &["train", "--resume", "killed"])
        } else {
            start(dir, &args("killed"))
        };
        let target = committed_epochs(&run) + rng.below(2);
        let moment = rng.below(3);
        let hit = |run: &Path| match moment {
            // Between checkpoints: during the steps of the next epoch.
            0 => committed_epochs(run) >= target,
            // During a checkpoint write, before latest.json commits it.
            1 => run
                .join(format!("checkpoints/epoch-{:04}", target + 1))
                .exists(),
            // While any file of the run is half-written (or, if the polling misses every
            // write, one epoch later).
            _ => {
                let done = committed_epochs(run);
                (done >= target && partial_writes(run) > 0) || done > target
            }
        };
        while child.try_wait().unwrap().is_none() && !hit(&run) {
            std::thread::yield_now();
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
            moments[moment] += 1;
        }
        let _ = child.wait();
        check_run_folder(&run);
        assert!(
            !run.join("summary.json").exists(),
            "the run finished after {kills} kills"
        );
    }
    finish(start(dir, &["train", "--resume", "killed"]));
    let a = std::fs::read_to_string(dir.join("reference/metrics.csv")).unwrap();
    let b = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(
        a, b,
        "killed {kills} times and resumed: metrics differ from the uninterrupted run"
    );
    // The resumed runs removed the partial files the killed ones left.
    let mut partial = Vec::new();
    let mut dirs = vec![run.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                dirs.push(e.path());
            } else if catdog::data::is_partial_write(&name) {
                partial.push(e.path());
            }
        }
    }
    assert!(partial.is_empty(), "partial files left: {partial:?}");
    eprintln!(
        "survived {kills} SIGKILLs ({} between checkpoints, {} during a checkpoint, {} during \
         a partial write; uninterrupted run: {:.2}s)",
        moments[0],
        moments[1],
        moments[2],
        full.as_secs_f64()
    );
}
