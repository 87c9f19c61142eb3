//! End-to-end training on generated, learnable images (real JPEG/PNG files).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use catdog_data::{synth::write_synth_set, Layout};
use catdog_infer::{load_model, model_io::read_json, model_io::CONFIG_FILE};
use catdog_model::{Architecture, CnnArch, MlpArch};
use catdog_train::{
    export::{export, import, safetensors_tensors, ExportError, ExportFormat, ExportOptions},
    train, FolderError, ProgressMode, RunConfig, TrainConfig, TrainRequest,
};

fn small_config(data: &Path, cache: &Path) -> TrainConfig {
    TrainConfig {
        data: data.to_path_buf(),
        model: Architecture::Cnn(CnnArch {
            channels: vec![8, 16, 32],
            ..Default::default()
        }),
        image_size: 24,
        epochs: 3,
        budget: None,
        batch_size: 16,
        validation_fraction: 0.2,
        cache_dir: Some(cache.to_path_buf()),
        ..TrainConfig::default()
    }
}

/// burn's random generator is per process: tests that train take turns, so one test's draws
/// never land in another's run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(config: TrainConfig, out: &Path, resume: bool) -> catdog_train::Summary {
    train(TrainRequest {
        config,
        out: out.to_path_buf(),
        resume,
        force: false,
        progress: ProgressMode::Quiet,
        world: None,
    })
    .unwrap()
}

fn dataset(dir: &Path, per_class: usize) -> PathBuf {
    let data = dir.join("data");
    write_synth_set(&data, &["cat", "dog"], per_class, 32, Layout::Kaggle, 99).unwrap();
    data
}

#[test]
fn learns_a_learnable_set_and_writes_the_run_folder() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 80);
    let out = tmp.path().join("run");
    let summary = run(small_config(&data, &tmp.path().join("cache")), &out, false);
    assert!(
        summary.validation.accuracy >= 0.95,
        "validation accuracy {}",
        summary.validation.accuracy
    );
    for f in [
        "config.json",
        "model.bpk",
        "metrics.csv",
        "timing.csv",
        "summary.json",
        "checkpoints/latest.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header + one row per epoch:\n{csv}");
}

#[test]
fn same_seed_gives_identical_metrics() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 30);
    let cache = tmp.path().join("cache");
    let mut config = small_config(&data, &cache);
    config.epochs = 2;
    run(config.clone(), &tmp.path().join("a"), false);
    run(config, &tmp.path().join("b"), false);
    let a = std::fs::read_to_string(tmp.path().join("a/metrics.csv")).unwrap();
    let b = std::fs::read_to_string(tmp.path().join("b/metrics.csv")).unwrap();
    assert_eq!(a, b);
}

/// `metrics.csv` of run folder `name` under `dir`.
fn metrics(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name).join("metrics.csv")).unwrap()
}

/// Trains `config` (3 epochs) in one go into `full`, and as 1 epoch then a resume into `split`.
fn full_and_split(dir: &Path, config: &TrainConfig) {
    run(config.clone(), &dir.join("full"), false);
    let first = TrainConfig {
        epochs: 1,
        ..config.clone()
    };
    run(first, &dir.join("split"), false);
    // `epochs` from the request raises the stored count on resume.
    run(config.clone(), &dir.join("split"), true);
}

#[test]
fn resume_after_stop_matches_an_uninterrupted_run() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 30);
    let mut config = small_config(&data, &tmp.path().join("cache"));
    config.epochs = 3;
    full_and_split(tmp.path(), &config);
    assert_eq!(metrics(tmp.path(), "full"), metrics(tmp.path(), "split"));
}

#[test]
fn weight_average_is_checkpointed_and_resumes_as_an_uninterrupted_run() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dataset(dir, 30);
    let mut config = small_config(&data, &dir.join("cache"));
    config.epochs = 3;
    config.ema = Some(0.9);
    full_and_split(dir, &config);
    assert!(dir
        .join("split/checkpoints/epoch-0003/average.bpk")
        .is_file());
    assert_eq!(metrics(dir, "full"), metrics(dir, "split"));
    let plain = TrainConfig {
        ema: None,
        ..config
    };
    run(plain, &dir.join("plain"), false);
    // Validation sees the average, not the last weights: the same training draws (losses),
    // other validation numbers.
    let columns = |name: &str, range: std::ops::Range<usize>| -> Vec<String> {
        metrics(dir, name)
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .skip(range.start)
                    .take(range.len())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    assert_ne!(columns("full", 4..6), columns("plain", 4..6));
    assert_eq!(columns("full", 2..3), columns("plain", 2..3));
}

#[test]
fn lookahead_learns_and_resumes_as_an_uninterrupted_run() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dataset(dir, 30);
    let mut config = small_config(&data, &dir.join("cache"));
    config.lookahead = Some(catdog_train::LookaheadConfig {
        steps: 3,
        alpha: 0.5,
    });
    full_and_split(dir, &config);
    assert_eq!(metrics(dir, "full"), metrics(dir, "split"));
    let last = |name: &str| -> f64 {
        let csv = metrics(dir, name);
        let row = csv.lines().last().unwrap().to_string();
        let header: Vec<_> = csv.lines().next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == "val_acc").unwrap();
        row.split(',').nth(at).unwrap().parse().unwrap()
    };
    assert!(last("full") >= 0.9, "validation accuracy {}", last("full"));
    // Lookahead changes the weights the run trains from: other training losses.
    let plain = TrainConfig {
        lookahead: None,
        ..config
    };
    run(plain, &dir.join("plain"), false);
    assert_ne!(metrics(dir, "full"), metrics(dir, "plain"));
}

/// Trains `variant` twice into `<name>-a` and `<name>-b` under `dir`: it must learn (>= 0.9
/// validation accuracy), reproduce byte for byte, and train otherwise than the plain run in
/// `plain` (trained there first if it is not yet).
fn learns_reproduces_and_differs(
    dir: &Path,
    name: &str,
    variant: &TrainConfig,
    plain: &TrainConfig,
) {
    let a = run(variant.clone(), &dir.join(format!("{name}-a")), false);
    run(variant.clone(), &dir.join(format!("{name}-b")), false);
    assert!(
        a.validation.accuracy >= 0.9,
        "{name}: validation accuracy {}",
        a.validation.accuracy
    );
    let (a, b) = (format!("{name}-a"), format!("{name}-b"));
    assert_eq!(metrics(dir, &a), metrics(dir, &b));
    if !dir.join("plain").exists() {
        run(plain.clone(), &dir.join("plain"), false);
    }
    assert_ne!(metrics(dir, &a), metrics(dir, "plain"));
}

#[test]
fn mixed_batches_learn_reproduce_and_differ_from_whole_images() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dataset(dir, 60);
    let mut config = small_config(&data, &dir.join("cache"));
    config.epochs = 4;
    for kind in [catdog_data::MixKind::Cutmix, catdog_data::MixKind::Mixup] {
        let mixed = TrainConfig {
            mix: Some(catdog_data::Mix {
                kind,
                ..Default::default()
            }),
            ..config.clone()
        };
        learns_reproduces_and_differs(dir, &kind.to_string(), &mixed, &config);
    }
}

#[test]
fn whitened_first_convolution_learns_reproduces_and_differs_from_random() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dataset(dir, 60);
    let mut config = small_config(&data, &dir.join("cache"));
    config.epochs = 4;
    let whitened = TrainConfig {
        whiten: true,
        ..config.clone()
    };
    learns_reproduces_and_differs(dir, "whitened", &whitened, &config);
}

#[test]
fn progressive_resizing_learns_and_reproduces() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 80);
    let cache = tmp.path().join("cache");
    let mut config = small_config(&data, &cache);
    config.epochs = 4;
    config.progressive = Some(catdog_train::Progressive {
        start_size: 16,
        ramp_start: 0.25,
        ramp_end: 0.5,
    });
    assert_eq!(
        (1..=4)
            .map(|e| config.train_size(e, 10))
            .collect::<Vec<_>>(),
        [16, 16, 24, 24]
    );
    let a = run(config.clone(), &tmp.path().join("a"), false);
    run(config, &tmp.path().join("b"), false);
    assert!(
        a.validation.accuracy >= 0.9,
        "validation accuracy {}",
        a.validation.accuracy
    );
    let csv =
        |run: &str| std::fs::read_to_string(tmp.path().join(run).join("metrics.csv")).unwrap();
    assert_eq!(csv("a"), csv("b"));
}

/// An error and its causes, as the command line prints them (`a: b: c`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

/// Logits of a model folder's model on a fixed random batch.
fn logits_of(dir: &Path, device: &Device) -> (catdog_train::RunConfig, Vec<f32>) {
    let trained = load_model(dir, device).unwrap();
    device.seed(7);
    let x = burn::tensor::Tensor::<4>::random(
        [3, 3, 24, 24],
        burn::tensor::Distribution::Default,
        device,
    );
    let logits = trained.model.forward(x).into_data().iter::<f32>().collect();
    let config: RunConfig = read_json(&dir.join(CONFIG_FILE)).unwrap();
    (config, logits)
}

#[test]
fn export_and_import_round_trips_give_identical_logits() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 20);
    let mut config = small_config(&data, &tmp.path().join("cache"));
    config.epochs = 1;
    // A held-out folder of its own: 20 more images of each class.
    let test = tmp.path().join("test");
    write_synth_set(&test, &["cat", "dog"], 20, 32, Layout::Kaggle, 7).unwrap();
    config.test = Some(test);
    let out = tmp.path().join("run");
    run(config, &out, false);
    let device = Device::flex();
    let (original_config, original) = logits_of(&out, &device);

    for format in [ExportFormat::Burnpack, ExportFormat::Safetensors] {
        let bundle = tmp.path().join(format!("bundle-{format:?}"));
        let opts = ExportOptions {
            format,
            ..Default::default()
        };
        let card = export(&out, &bundle, &opts, &device).unwrap();
        assert!(bundle.join(format.file_name()).is_file());
        let held_out = card.held_out_test.as_ref().expect("the run had a test set");
        // The test set is its whole folder: 20 images of each class.
        assert_eq!(held_out.images, 40);
        assert_eq!(held_out.per_class.len(), 2);
        assert!((0.0..=1.0).contains(&held_out.ece), "{held_out:?}");
        let (mut bundle_config, logits) = logits_of(&bundle, &device);
        assert_eq!(bundle_config.export.take(), Some(card));
        // The checksum is its own weights file's.
        let crc = catdog_infer::model_io::weights_checksum(&bundle.join(format.file_name()));
        assert_eq!(bundle_config.spec.weights_crc32.take(), Some(crc.unwrap()));
        // Apart from the card and the checksum, the bundle's config is the run's, field for
        // field.
        let mut original_config = original_config.clone();
        original_config.spec.weights_crc32 = None;
        assert_eq!(bundle_config, original_config);
        assert_eq!(logits, original, "{format:?}: bit-identical logits");
    }

    // PyTorch's names and layouts: no enum variant, Linear [out, in], BatchNorm statistics.
    let bundle = tmp.path().join("bundle-Safetensors");
    let tensors = safetensors_tensors(&bundle.join("model.safetensors")).unwrap();
    let shape_of = |name: &str| {
        tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {tensors:?}"))
            .shape
            .clone()
    };
    assert_eq!(shape_of("blocks.0.convs.0.weight"), vec![8, 3, 3, 3]);
    for stat in ["weight", "bias", "running_mean", "running_var"] {
        assert_eq!(shape_of(&format!("blocks.2.norms.0.{stat}")), vec![32]);
    }
    assert_eq!(
        shape_of("output.weight"),
        vec![2, 32],
        "Linear weight is [out, in]"
    );
    assert_eq!(shape_of("output.bias"), vec![2]);
    assert_eq!(tensors.len(), 3 + 3 * 4 + 2, "{tensors:?}");

    // Back into a catdog model folder: same logits, burnpack weights.
    let imported = tmp.path().join("imported");
    import(
        &bundle.join("model.safetensors"),
        None,
        &imported,
        false,
        &device,
    )
    .unwrap();
    assert!(imported.join("model.bpk").is_file());
    let (imported_config, logits) = logits_of(&imported, &device);
    assert_eq!(imported_config.export, None);
    assert_eq!(logits, original, "import: bit-identical logits");
    // A second import into the same folder is refused, the first left as it was.
    let before = std::fs::read(imported.join("model.bpk")).unwrap();
    let err = import(
        &bundle.join("model.safetensors"),
        None,
        &imported,
        false,
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(err, ExportError::Folder(FolderError::Exists { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(imported.join("model.bpk")).unwrap(), before);
}

#[test]
fn safetensors_for_another_architecture_is_refused() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 10);
    let mut config = small_config(&data, &tmp.path().join("cache"));
    config.epochs = 1;
    config.model = Architecture::Mlp(MlpArch {
        hidden: vec![16],
        ..Default::default()
    });
    let out = tmp.path().join("run");
    run(config, &out, false);
    let device = Device::flex();
    let bundle = tmp.path().join("bundle");
    let opts = ExportOptions {
        format: ExportFormat::Safetensors,
        ..Default::default()
    };
    export(&out, &bundle, &opts, &device).unwrap();
    // The same weights read with a config that has one more hidden layer: missing tensors.
    let mut text = std::fs::read_to_string(bundle.join("config.json")).unwrap();
    text = text.replacen("\"hidden\": [\n      16\n    ]", "\"hidden\": [16, 16]", 1);
    assert!(text.contains("[16, 16]"), "{text}");
    let other = tmp.path().join("other.json");
    std::fs::write(&other, text).unwrap();
    let err = import(
        &bundle.join("model.safetensors"),
        Some(&other),
        &tmp.path().join("imported"),
        false,
        &device,
    )
    .unwrap_err();
    let err = with_causes(&err);
    assert!(
        err.contains("missing: hidden.1.bias, hidden.1.weight"),
        "{err}"
    );
    assert!(
        !err.contains("skip_enum_variants"),
        "no burn-internal advice: {err}"
    );
    assert!(!tmp.path().join("imported/model.bpk").exists());
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), 20);
    let mut config = small_config(&data, &tmp.path().join("cache"));
    config.epochs = 1;
    config.model = Architecture::Mlp(MlpArch::default());
    let out = tmp.path().join("run");
    run(config.clone(), &out, false);
    let good = std::fs::read(out.join("model.bpk")).unwrap();
    let latest = std::fs::read(out.join("checkpoints/latest.json")).unwrap();
    config.epochs = 3;
    config.optim.lr = 1e12;
    config.optim.warmup_epochs = 0.0;
    // Resume keeps the stored lr; a fresh run in another folder shows the message.
    let err = train(TrainRequest {
        config,
        out: tmp.path().join("run2"),
        resume: false,
        force: false,
        progress: ProgressMode::Quiet,
        world: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("epoch 1") && err.contains("lower --lr"),
        "{err}"
    );
    // No NaN weights were written by the diverged run.
    for f in ["model.bpk", "best.bpk", "checkpoints/latest.json"] {
        assert!(
            !tmp.path().join("run2").join(f).exists(),
            "{f} written by a diverged run"
        );
    }
    assert_eq!(std::fs::read(out.join("model.bpk")).unwrap(), good);
    assert_eq!(
        std::fs::read(out.join("checkpoints/latest.json")).unwrap(),
        latest
    );
}

#[test]
fn mlp_beats_chance_on_real_photos() {
    let _serial = serial();
    let Some(root) = std::env::var_os("CATDOG_DATA") else {
        eprintln!("skipped: set CATDOG_DATA to the dogs-vs-cats folder to run this test");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // 2,000 images: every 10th photo.
    let subset = tmp.path().join("subset");
    std::fs::create_dir_all(&subset).unwrap();
    let train_dir = Path::new(&root).join("train");
    for class in ["cat", "dog"] {
        for i in (0..10_000).step_by(10) {
            let name = format!("{class}.{i}.jpg");
            std::os::unix::fs::symlink(train_dir.join(&name), subset.join(&name)).unwrap();
        }
    }
    let config = TrainConfig {
        data: subset,
        model: Architecture::Mlp(MlpArch::default()),
        epochs: 1,
        budget: None,
        optim: catdog_train::OptimConfig {
            lr: 1e-3,
            warmup_epochs: 0.0,
            ..Default::default()
        },
        validation_fraction: 0.2,
        cache_dir: Some(tmp.path().join("cache")),
        ..TrainConfig::default()
    };
    let summary = run(config, &tmp.path().join("run"), false);
    assert!(
        summary.validation.accuracy > 0.55,
        "MLP validation accuracy {}",
        summary.validation.accuracy
    );
}
