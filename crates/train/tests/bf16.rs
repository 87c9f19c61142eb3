//! Training with bf16 gemms (`precision = "bf16"`), in its own test binary: the precision is
//! process-wide while a run's steps hold it, so no other test's kernels may run beside it.

use std::path::Path;

use catdog_data::{synth::write_synth_set, Layout};
use catdog_infer::Backend;
use catdog_model::{kernels::precision::Precision, Architecture, ResNetArch};
use catdog_train::{train, ProgressMode, TrainConfig, TrainRequest};

fn config(data: &Path, cache: &Path, precision: Precision) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        // A residual network: 3x3 convolutions through im2col and Winograd, the linear head.
        model: Architecture::ResNet(ResNetArch {
            stem: 8,
            channels: vec![16, 24, 32],
            residual: vec![1, 0, 1],
            ..Default::default()
        }),
        image_size: 24,
        epochs: 3,
        budget: None,
        batch_size: 16,
        validation_fraction: 0.2,
        cache_dir: Some(cache.to_path_buf()),
        precision,
        ..TrainConfig::default()
    }
}

fn run(config: TrainConfig, out: &Path) -> Result<String, catdog_train::TrainError> {
    train(TrainRequest {
        config,
        out: out.to_path_buf(),
        resume: false,
        force: false,
        progress: ProgressMode::Quiet,
        world: None,
    })?;
    Ok(std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv"))
}

#[test]
fn bf16_training_learns_repeats_and_leaves_f32_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synth_set(&data, &["cat", "dog"], 60, 32, Layout::Kaggle, 7).unwrap();
    let cache = tmp.path().join("cache");
    let bf16 = config(&data, &cache, Precision::Bf16);

    // bf16 runs in catdog's CPU kernels only.
    let other = TrainConfig {
        backend: Backend::Ndarray,
        ..bf16.clone()
    };
    let refused = other.validate().unwrap_err();
    assert_eq!(refused.field, "precision");

    if !Precision::Bf16.supported() {
        let refused = bf16.validate().unwrap_err();
        assert!(refused.fix.contains("AVX512-BF16"), "{refused}");
        let err = run(bf16, &tmp.path().join("refused")).unwrap_err();
        assert!(err.to_string().contains("AVX512-BF16"), "{err}");
        eprintln!("skipped the bf16 runs: this CPU has no AVX512-BF16");
        return;
    }
    bf16.validate().unwrap();
    let a = run(bf16.clone(), &tmp.path().join("a")).unwrap();
    // The scope ended with the run's last step: what runs next multiplies in f32.
    assert_eq!(Precision::current(), Precision::F32);
    let b = run(bf16, &tmp.path().join("b")).unwrap();
    assert_eq!(a, b, "the same seed gives the same bf16 run");
    let f32 = run(
        config(&data, &cache, Precision::F32),
        &tmp.path().join("f32"),
    )
    .unwrap();
    assert_ne!(a, f32, "the bf16 run multiplied in f32");

    let last = a.lines().last().unwrap();
    let val_acc: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
    assert!(val_acc >= 0.9, "bf16 validation accuracy {val_acc}:\n{a}");
    let config = std::fs::read_to_string(tmp.path().join("a/config.json")).unwrap();
    assert!(config.contains("\"precision\": \"bf16\""), "{config}");
    let plain = std::fs::read_to_string(tmp.path().join("f32/config.json")).unwrap();
    assert!(
        !plain.contains("precision"),
        "f32 is the default, left out: {plain}"
    );
}
