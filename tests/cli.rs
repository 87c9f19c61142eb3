//! The `catdog` binary as a user runs it: exit codes, messages, predict output.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use common::{assert_ok, assert_usage_error, catdog, stdout, train_tiny};

use catdog::data::{synth::write_synth_set, Layout};

/// A run trained by `catdog train` in `dir`: 16 generated images per class (24x24) in `data`,
/// one epoch of a small MLP from `run.toml` with seed 3 into `run` (well under a second).
/// Returns the images and the train command's output.
fn trained(dir: &Path) -> (Vec<PathBuf>, Output) {
    let paths = write_synth_set(
        &dir.join("data"),
        &["cat", "dog"],
        16,
        24,
        Layout::Kaggle,
        2,
    )
    .unwrap();
    let toml =
        "epochs = 1\nimage_size = 16\nbatch_size = 8\n[model]\narch = \"mlp\"\nhidden = [16]\n";
    std::fs::write(dir.join("run.toml"), toml).unwrap();
    let o = catdog(
        &[
            "train", "--config", "run.toml", "--data", "data", "--out", "run", "--seed", "3",
        ],
        dir,
    );
    assert_ok(&o);
    (paths, o)
}

/// `catdog predict --model MODEL --json IMAGE`'s standard output.
fn predict_json(dir: &Path, model: &str, image: &str) -> String {
    let o = catdog(&["predict", "--model", model, "--json", image], dir);
    assert_ok(&o);
    stdout(&o)
}

#[test]
fn invalid_values_are_refused_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 4, 16, Layout::Kaggle, 1).unwrap();
    let base = ["train", "--data", "data", "--out", "run"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> { [&base[..], extra].concat() };
    assert_usage_error(&catdog(&with(&["--epochs", "0"]), dir), "epochs");
    assert_usage_error(&catdog(&with(&["--lr", "-1"]), dir), "lr");
    assert_usage_error(
        &catdog(&with(&["--lr", "0"]), dir),
        "learning rate must be positive",
    );
    assert_usage_error(&catdog(&with(&["--batch-size", "0"]), dir), "batch");
    assert_usage_error(
        &catdog(&with(&["--backend", "tpu"]), dir),
        "[possible values: flex, ndarray, wgpu]",
    );
    assert_usage_error(
        &catdog(&["train", "--data", "missing", "--out", "run"], dir),
        "missing",
    );
    assert_usage_error(&catdog(&["train", "--nonsense"], dir), "--nonsense");
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "epochs = \"many\"\n").unwrap();
    assert_usage_error(&catdog(&["train", "--config", "bad.toml"], dir), "bad.toml");
    assert!(
        !dir.join("run").exists(),
        "nothing is written before the checks pass"
    );
}

#[test]
fn train_writes_its_config_and_plots_and_refuses_a_second_run_into_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, o) = trained(dir);
    assert!(
        stdout(&o).contains("epoch 1/1"),
        "one line per epoch when not a terminal:\n{}",
        stdout(&o)
    );
    let config = std::fs::read_to_string(dir.join("run/config.json")).unwrap();
    assert!(
        config.contains("\"arch\": \"mlp\"") && config.contains("\"seed\": 3"),
        "{config}"
    );

    // A second train into the same folder is refused.
    let again = catdog(&["train", "--data", "data", "--out", "run"], dir);
    assert_usage_error(&again, "--resume");

    // Training draws its curves; the final evaluation its confusion matrix and reliability.
    for file in ["curves.png", "confusion.png", "calibration.png"] {
        let png = image::open(dir.join("run").join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            png.width() >= 500 && png.height() >= 500,
            "{file} is too small"
        );
        let rgb = png.to_rgb8();
        let ink = rgb.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(ink > 5_000, "{file} has only {ink} drawn pixels");
    }
}

#[test]
fn eval_reports_json_and_draws_its_plots_beside_the_model_or_where_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "data",
            "--json",
            "--plots",
            "evalplots",
        ],
        dir,
    );
    assert_ok(&o);
    let e: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(e["images"], 32);
    assert_eq!(e["confusion"].as_array().unwrap().len(), 2);
    let ece = e["calibration"]["ece"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ece), "ECE {ece}");
    assert!(dir.join("evalplots/confusion.png").is_file());
    assert!(dir.join("evalplots/calibration.png").is_file());
    // Without --plots they go beside the model, per data folder, keeping the run's own plots.
    let before = std::fs::read(dir.join("run/confusion.png")).unwrap();
    let o = catdog(&["eval", "--model", "run", "--data", "data"], dir);
    assert_ok(&o);
    assert!(dir.join("run/eval-data/calibration.png").is_file());
    // Flip TTA by default, and said; --no-tta says one pass.
    assert!(stdout(&o).contains("flip TTA"));
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "data",
            "--no-tta",
            "--no-plots",
        ],
        dir,
    );
    assert_ok(&o);
    assert!(stdout(&o).contains("one forward pass per image"));
    assert_eq!(
        std::fs::read(dir.join("run/confusion.png")).unwrap(),
        before
    );
}

#[test]
fn eval_refuses_a_plot_folder_it_cannot_use_or_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    // A plot folder under a file is refused before any work.
    std::fs::write(dir.join("a-file"), b"").unwrap();
    assert_usage_error(
        &catdog(
            &[
                "eval",
                "--model",
                "run",
                "--data",
                "data",
                "--plots",
                "a-file/plots",
            ],
            dir,
        ),
        "cannot use the plot folder",
    );
    // Nor is a folder of the user's own files, whose pictures stay as they were.
    std::fs::create_dir(dir.join("photos")).unwrap();
    std::fs::write(dir.join("photos/confusion.png"), b"my picture").unwrap();
    assert_usage_error(
        &catdog(
            &[
                "eval", "--model", "run", "--data", "data", "--plots", "photos",
            ],
            dir,
        ),
        "was not made by catdog",
    );
    assert_eq!(
        std::fs::read(dir.join("photos/confusion.png")).unwrap(),
        b"my picture"
    );
}

#[test]
fn predict_gives_the_softmax_of_the_logits_and_goes_on_past_a_bad_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (paths, _) = trained(dir);
    std::fs::write(dir.join("broken.jpg"), b"").unwrap();
    let img = paths[0].to_string_lossy().into_owned();
    let o = catdog(
        &[
            "predict",
            "--model",
            "run",
            "--json",
            &img,
            "broken.jpg",
            "nope.png",
        ],
        dir,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed file makes the exit code 1"
    );
    let preds: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let preds = preds.as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let floats = |key: &str| -> Vec<f64> {
        let values = preds[0][key].as_array().unwrap();
        values.iter().map(|v| v.as_f64().unwrap()).collect()
    };
    let (logits, probs) = (floats("logits"), floats("probabilities"));
    // Training fitted a temperature on the validation split and stored it in config.json.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap())
            .unwrap();
    let t = config["temperature"].as_f64().unwrap();
    assert!(t > 0.0 && t.is_finite(), "{t}");
    assert_eq!(preds[0]["temperature"].as_f64(), Some(t));
    assert_close(&probs, &softmax(&logits, t));
    assert!(preds[1]["error"].as_str().unwrap().contains("empty"));
    assert!(preds[2]["error"].is_string());

    let o = catdog(&["predict", "--model", "run", &img], dir);
    let line = stdout(&o);
    assert!(line.contains("logits cat") && line.contains("->"), "{line}");
}

fn softmax(logits: &[f64], temperature: f64) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = logits
        .iter()
        .map(|l| ((l - m) / temperature).exp())
        .collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

fn assert_close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

/// `predict --json` of one image: its logits, probabilities and temperature.
fn predict_probabilities(dir: &Path, extra: &[&str], img: &str) -> (Vec<f64>, Vec<f64>, f64) {
    let mut args = vec!["predict", "--model", "run", "--json", img];
    args.extend(extra);
    let o = catdog(&args, dir);
    assert_ok(&o);
    let preds: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let floats = |key: &str| -> Vec<f64> {
        let values = preds[0][key].as_array().unwrap();
        values.iter().map(|v| v.as_f64().unwrap()).collect()
    };
    let t = preds[0]["temperature"].as_f64().unwrap();
    (floats("logits"), floats("probabilities"), t)
}

#[test]
fn probabilities_follow_the_stored_temperature_unless_calibration_is_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (paths, _) = trained(dir);
    let img = paths[0].to_string_lossy().into_owned();
    let config_path = dir.join("run/config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["temperature"] = serde_json::json!(0.25);
    std::fs::write(&config_path, config.to_string()).unwrap();

    let (logits, probs, t) = predict_probabilities(dir, &[], &img);
    assert_eq!(t, 0.25);
    assert_close(&probs, &softmax(&logits, 0.25));
    let (raw_logits, raw, t) = predict_probabilities(dir, &["--no-calibration"], &img);
    assert_eq!((t, &raw_logits), (1.0, &logits), "the logits never change");
    assert_close(&raw, &softmax(&logits, 1.0));

    // eval reports both calibration errors and the temperature.
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
    let e: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(e["temperature"].as_f64(), Some(0.25));
    assert!(e["uncalibrated"]["ece"].is_f64(), "{e}");
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "data",
            "--json",
            "--no-plots",
            "--no-calibration",
        ],
        dir,
    );
    let e: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(e["temperature"].as_f64(), Some(1.0));
    assert!(e.get("uncalibrated").is_none(), "{e}");

    // A temperature that is not positive is refused, naming the field.
    for bad in [serde_json::json!(0.0), serde_json::json!(-2.0)] {
        config["temperature"] = bad;
        std::fs::write(&config_path, config.to_string()).unwrap();
        let o = catdog(&["predict", "--model", "run", &img], dir);
        assert_eq!(o.status.code(), Some(2), "{}", common::both(&o));
        assert!(
            common::both(&o).contains("temperature"),
            "{}",
            common::both(&o)
        );
    }
}

#[test]
fn exported_and_imported_models_predict_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (paths, _) = trained(dir);
    let img = paths[0].to_string_lossy().into_owned();
    assert_ok(&catdog(
        &["export", "--model", "run", "--out", "bundle"],
        dir,
    ));
    let a = predict_json(dir, "run", &img);
    assert_eq!(
        a,
        predict_json(dir, "bundle", &img),
        "the bundle predicts bit-identically"
    );

    // safetensors out, predicted from directly, and imported back: the same logits.
    assert_ok(&catdog(
        &[
            "export",
            "--model",
            "run",
            "--out",
            "st",
            "--format",
            "safetensors",
        ],
        dir,
    ));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("st/config.json")).unwrap())
            .unwrap();
    assert_eq!(card["export"]["weights_file"], "model.safetensors");
    assert_eq!(card["export"]["tensors"][0]["name"], "hidden.0.bias");
    assert!(card["export"]["validation"]["ece"].is_f64(), "{card}");
    assert_eq!(a, predict_json(dir, "st", &img), "safetensors bundle");
    let import = [
        "import",
        "--weights",
        "st/model.safetensors",
        "--out",
        "imported",
    ];
    assert_ok(&catdog(&import, dir));
    assert_eq!(a, predict_json(dir, "imported", &img), "imported model");
    // A safetensors bundle exports back to burnpack, keeping its card's metrics.
    assert_ok(&catdog(
        &["export", "--model", "st", "--out", "st-bpk"],
        dir,
    ));
    assert_eq!(a, predict_json(dir, "st-bpk", &img), "re-exported bundle");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("st-bpk/config.json")).unwrap())
            .unwrap();
    assert!(card["export"]["validation"]["accuracy"].is_f64(), "{card}");
    assert_usage_error(
        &catdog(&import, dir),
        "already holds a catdog imported model",
    );
}

#[test]
fn a_resnet_trains_exports_and_imports_with_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let paths =
        write_synth_set(&dir.join("data"), &["cat", "dog"], 8, 16, Layout::Kaggle, 4).unwrap();
    let toml = "epochs = 1\nimage_size = 16\nbatch_size = 4\n[model]\narch = \"resnet\"\n\
                stem = 4\nchannels = [6, 8]\nresidual = [1, 1]\n";
    std::fs::write(dir.join("run.toml"), toml).unwrap();
    let o = catdog(
        &[
            "train", "--config", "run.toml", "--data", "data", "--out", "run",
        ],
        dir,
    );
    assert_ok(&o);
    assert!(stdout(&o).contains("resnet") || common::both(&o).contains("resnet"));
    let img = paths[0].to_string_lossy().into_owned();
    let a = predict_json(dir, "run", &img);
    let export = |format: &str, out: &str| {
        assert_ok(&catdog(
            &["export", "--model", "run", "--out", out, "--format", format],
            dir,
        ))
    };
    export("safetensors", "st");
    assert_eq!(a, predict_json(dir, "st", &img), "safetensors bundle");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("st/config.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = card["export"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "stem.conv.weight",
        "stages.0.down.convs.0.weight",
        "stages.1.residual.0.second.norm.running_mean",
        "output.weight",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(card["export"]["architecture"]
        .as_str()
        .unwrap()
        .contains("x + second(first(x))"));
    let import = [
        "import",
        "--weights",
        "st/model.safetensors",
        "--out",
        "back",
    ];
    assert_ok(&catdog(&import, dir));
    assert_eq!(a, predict_json(dir, "back", &img), "imported model");
    export("onnx", "onnx");
    assert!(dir.join("onnx/model.onnx").is_file());
}

#[test]
fn onnx_export_writes_the_graph_and_probabilities_need_onnx() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    trained(dir);
    assert_ok(&catdog(
        &[
            "export", "--model", "run", "--out", "onnx", "--format", "onnx",
        ],
        dir,
    ));
    assert!(dir.join("onnx/model.onnx").is_file());
    assert!(dir.join("onnx/config.json").is_file());
    assert_usage_error(
        &catdog(
            &["export", "--model", "run", "--out", "x", "--probabilities"],
            dir,
        ),
        "use it with --format onnx",
    );
    assert!(
        !dir.join("x").exists(),
        "nothing written for a refused export"
    );
}

#[test]
fn model_folder_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 4, 16, Layout::Kaggle, 4).unwrap();
    assert_usage_error(
        &catdog(&["eval", "--model", "nowhere", "--data", "data"], dir),
        "does not exist",
    );
    std::fs::create_dir(dir.join("empty")).unwrap();
    assert_usage_error(
        &catdog(&["predict", "--model", "empty", "x.jpg"], dir),
        "config.json is missing",
    );
    let bad = dir.join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("config.json"), "{\"model\": 3}").unwrap();
    assert_usage_error(
        &catdog(&["predict", "--model", "bad", "x.jpg"], dir),
        "not a valid catdog config",
    );
}

#[test]
fn eval_plots_never_go_inside_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 6, 16, Layout::Kaggle, 1).unwrap();
    assert_ok(&train_tiny(dir, "data", "run", "mlp"));
    let files = std::fs::read_dir(dir.join("data")).unwrap().count();
    let o = catdog(
        &[
            "eval",
            "--model",
            "run",
            "--data",
            "data",
            "--plots",
            "data/cat/plots",
        ],
        dir,
    );
    assert_usage_error(&o, "inside the --data folder");
    assert_eq!(std::fs::read_dir(dir.join("data")).unwrap().count(), files);
}

/// `src` (a safetensors file of f32 tensors) rewritten with every tensor stored as `dtype`
/// (`BF16`: the upper half of each f32; `F64`: widened).
fn safetensors_as(src: &Path, dst: &Path, dtype: &str) {
    let bytes = std::fs::read(src).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let data = &bytes[8 + len..];
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            out_header.insert(name.clone(), info.clone());
            continue;
        }
        let [start, end] = [0, 1].map(|i| info["data_offsets"][i].as_u64().unwrap() as usize);
        let from = out_data.len();
        for v in data[start..end].chunks_exact(4) {
            let v = f32::from_le_bytes(v.try_into().unwrap());
            match dtype {
                "BF16" => out_data.extend_from_slice(&v.to_le_bytes()[2..]),
                _ => out_data.extend_from_slice(&f64::from(v).to_le_bytes()),
            }
        }
        let mut info = info.clone();
        info["dtype"] = dtype.into();
        info["data_offsets"] = serde_json::json!([from, out_data.len()]);
        out_header.insert(name.clone(), info);
    }
    let text = serde_json::to_vec(&out_header).unwrap();
    let mut file = (text.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&text);
    file.extend_from_slice(&out_data);
    std::fs::write(dst, file).unwrap();
}

#[test]
fn weights_stored_as_bfloat16_or_float64_load_as_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 6, 16, Layout::Kaggle, 1).unwrap();
    for arch in ["mlp", "cnn"] {
        let run = format!("run-{arch}");
        assert_ok(&train_tiny(dir, "data", &run, arch));
        let bundle = format!("{arch}-f32");
        let args = [
            "export",
            "--model",
            &run,
            "--out",
            &bundle,
            "--format",
            "safetensors",
        ];
        assert_ok(&catdog(&args, dir));
        let photo = common::any_file_in(&dir.join("data"));
        let photo = photo.as_str();
        let f32_out = predict_json(dir, &bundle, photo);
        for dtype in ["BF16", "F64"] {
            let other = format!("{arch}-{dtype}");
            std::fs::create_dir(dir.join(&other)).unwrap();
            // A config written by hand (no checksum of the weights it goes with).
            let config = std::fs::read_to_string(dir.join(&bundle).join("config.json")).unwrap();
            let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
            config.as_object_mut().unwrap().remove("weights_crc32");
            std::fs::write(dir.join(&other).join("config.json"), config.to_string()).unwrap();
            safetensors_as(
                &dir.join(&bundle).join("model.safetensors"),
                &dir.join(&other).join("model.safetensors"),
                dtype,
            );
            // Predict and eval run (no panic); float64 holds every f32 exactly.
            let out = predict_json(dir, &other, photo);
            if dtype == "F64" {
                assert_eq!(out, f32_out, "{arch}: float64 weights predict otherwise");
            }
            assert_ok(&catdog(
                &["eval", "--model", &other, "--data", "data", "--no-plots"],
                dir,
            ));
        }
    }
}

#[test]
fn a_folder_with_both_weight_files_says_which_it_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 6, 16, Layout::Kaggle, 1).unwrap();
    assert_ok(&train_tiny(dir, "data", "run", "mlp"));
    let args = [
        "export",
        "--model",
        "run",
        "--out",
        "st",
        "--format",
        "safetensors",
    ];
    assert_ok(&catdog(&args, dir));
    let photo = common::any_file_in(&dir.join("data"));
    let photo = photo.as_str();
    let alone = predict_json(dir, "st", photo);
    // Another model's burnpack beside the bundle's safetensors: the checksum in config.json
    // names the safetensors file, which is used, and the user is told.
    assert_ok(&train_tiny(dir, "data", "other", "mlp"));
    std::fs::copy(dir.join("other/model.bpk"), dir.join("st/model.bpk")).unwrap();
    let o = catdog(&["predict", "--model", "st", "--json", photo], dir);
    assert_ok(&o);
    assert_eq!(stdout(&o), alone);
    let err = common::stderr(&o);
    assert!(
        err.contains("model.safetensors is used, model.bpk ignored"),
        "{err}"
    );
}

#[test]
fn eval_answers_for_photos_of_one_class() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 8, 16, Layout::Kaggle, 1).unwrap();
    assert_ok(&train_tiny(dir, "data", "run", "mlp"));
    // Kaggle names of one class, and a single class folder (`cats/cat/...`).
    write_synth_set(&dir.join("cats-only"), &["cat"], 5, 16, Layout::Kaggle, 2).unwrap();
    write_synth_set(&dir.join("cats"), &["cat"], 5, 16, Layout::ImageFolder, 3).unwrap();
    for folder in ["cats-only", "cats"] {
        let o = catdog(
            &[
                "eval",
                "--model",
                "run",
                "--data",
                folder,
                "--json",
                "--no-plots",
            ],
            dir,
        );
        assert_ok(&o);
        let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let per_class = report["per_class"].as_array().expect("per-class metrics");
        let support = |class: &str| {
            per_class
                .iter()
                .find(|c| c["class"] == class)
                .map(|c| c["support"].clone())
        };
        assert_eq!(support("cat"), Some(5.into()), "{folder}: {report}");
        assert_eq!(support("dog"), Some(0.into()), "{folder}: {report}");
    }
    // A class the model does not know is still refused.
    write_synth_set(&dir.join("foxes"), &["fox"], 3, 16, Layout::Kaggle, 4).unwrap();
    let o = catdog(
        &["eval", "--model", "run", "--data", "foxes", "--no-plots"],
        dir,
    );
    assert_usage_error(&o, "the model was trained on");
}

/// A backend left out of the build is named with the command that builds it, before any work.
#[test]
fn a_backend_not_built_says_how_to_build_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_synth_set(&dir.join("data"), &["cat", "dog"], 4, 16, Layout::Kaggle, 4).unwrap();
    let mut missing = Vec::new();
    if !cfg!(feature = "ndarray") {
        missing.push("ndarray");
    }
    if !cfg!(feature = "wgpu") {
        missing.push("wgpu");
    }
    for backend in missing {
        let args = [
            "train",
            "--data",
            "data",
            "--epochs",
            "1",
            "--backend",
            backend,
        ];
        let o = catdog(&args, dir);
        assert!(!o.status.success());
        let err = common::stderr(&o);
        assert!(
            err.contains(&format!("cargo build --release --features {backend}")),
            "{err}"
        );
        assert!(!dir.join("runs").exists(), "nothing written");
    }
}
