//! The same seed gives the same run: the same `metrics.csv` and the same weights, in one
//! process or another, and under a rayon pool of 1, 2 or 4 threads; `model.bpk` byte for byte. At batch 64 the
//! convolution's weight gradient sums eight chunks of images, more than there are threads, so
//! a reduction whose grouping followed the scheduling would show here.

mod common;

use std::path::Path;

use catdog::data::{synth::write_synth_set, Layout};
use common::{assert_ok, command};

/// Trains `arch` for two epochs in `out` with a pool of `threads`, exports its weights as
/// safetensors; returns `metrics.csv`, the safetensors' bytes and the run's `model.bpk`.
fn run(dir: &Path, arch: &str, threads: usize, out: &str) -> (String, Vec<u8>, Vec<u8>) {
    let o = command(
        [
            "train",
            "--data",
            "data",
            "--arch",
            arch,
            "--image-size",
            "24",
            "--batch-size",
            "64",
            "--epochs",
            "2",
            "--seed",
            "11",
            "--out",
            out,
        ],
        dir,
    )
    .env("RAYON_NUM_THREADS", threads.to_string())
    .output()
    .unwrap();
    assert_ok(&o);
    let bundle = format!("{out}-weights");
    let args = [
        "export",
        "--model",
        out,
        "--out",
        &bundle,
        "--format",
        "safetensors",
    ];
    assert_ok(&command(args, dir).output().unwrap());
    (
        std::fs::read_to_string(dir.join(out).join("metrics.csv")).unwrap(),
        std::fs::read(dir.join(&bundle).join("model.safetensors")).unwrap(),
        std::fs::read(dir.join(out).join("model.bpk")).unwrap(),
    )
}

fn same_runs(arch: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 150 images a class, 24x24: 270 for training, four batches of 64 an epoch.
    write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        150,
        24,
        Layout::Kaggle,
        3,
    )
    .unwrap();
    let first = run(dir, arch, 2, "first");
    for (threads, name) in [(2, "again"), (1, "one"), (4, "four")] {
        let other = run(dir, arch, threads, name);
        assert!(
            other.0 == first.0,
            "{arch}, {threads} thread(s): metrics.csv differs\n{}\n{}",
            first.0,
            other.0
        );
        assert!(
            other.1 == first.1,
            "{arch}, {threads} thread(s): the weights differ"
        );
        // burn gives every parameter a random id, stored in the burnpack file: the model
        // numbers them, so the file is the same bytes too.
        assert!(
            other.2 == first.2,
            "{arch}, {threads} thread(s): model.bpk differs"
        );
    }
}

#[test]
fn the_cnn_repeats_across_processes_and_thread_counts() {
    same_runs("cnn");
}

#[test]
fn the_resnet_repeats_across_processes_and_thread_counts() {
    same_runs("resnet");
}
