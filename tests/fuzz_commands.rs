//! Hostile inputs to whole commands: `catdog predict` and `catdog eval` run on mutated model
//! folders (config.json, burnpack and safetensors weights) and mutated images, each in its own
//! process under a time and memory limit. No case may hang, panic, abort, be killed by a signal,
//! fail without saying why, or reach 1 GiB of memory. The cases are seeded: a failure names its
//! case, and the same seed gives the same cases.
#![cfg(target_os = "linux")]

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use catdog::data::{synth::write_synth_set, Layout, SplitMix64};
use image::{GrayImage, ImageFormat};
use serde_json::{json, Value};

/// Seed of the whole case list.
const SEED: u64 = 0xCA7D06;
/// Cases per kind of input (config.json, burnpack, safetensors, images for predict, images for
/// eval): about 300 child processes in all, a few seconds on two cores.
const CONFIG_CASES: usize = 120;
const WEIGHT_CASES: usize = 40;
const SAFETENSORS_CASES: usize = 40;
const PREDICT_IMAGE_CASES: usize = 64;
const EVAL_IMAGE_CASES: usize = 32;
/// A command that succeeds with NaN in its output fails the test: loading refuses weights
/// holding NaN or infinity, so damaged bytes can no longer give NaN logits with exit 0.
const NAN_OUTPUT_IS_FAILURE: bool = true;
/// Peak resident memory allowed to one command.
const MEMORY_LIMIT: u64 = 1 << 30;
/// A command still running after this is hung.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A command above this resident size is killed at once instead of being left to grow.
const RUNAWAY: u64 = 3 << 30;

/// How one command ended.
struct Ended {
    /// Exit code, or `None` when a signal ended it.
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set size, bytes.
    peak: u64,
    seconds: f64,
}

/// Runs `catdog ARGS` in `cwd` under [`TIMEOUT`] and [`RUNAWAY`].
fn run(args: &[String], cwd: &Path) -> Result<Ended, String> {
    use std::os::unix::process::ExitStatusExt;
    let mut command = common::command(args, cwd);
    command.env_remove("RUST_BACKTRACE");
    let run = common::run_limited(command, TIMEOUT, RUNAWAY);
    let stderr = common::stderr(&run.output);
    if let Some(why) = run.killed {
        return Err(format!("{why}; stderr: {stderr}"));
    }
    Ok(Ended {
        code: run.output.status.code(),
        signal: run.output.status.signal(),
        stdout: common::stdout(&run.output),
        stderr,
        peak: run.peak,
        seconds: run.seconds,
    })
}

/// What is wrong with how a command ended, if anything.
fn verdict(e: &Ended) -> Option<String> {
    if let Some(signal) = e.signal {
        return Some(format!("killed by signal {signal}"));
    }
    match e.code {
        Some(101) => return Some("panicked (exit 101)".into()),
        Some(134) => return Some("aborted (exit 134)".into()),
        Some(0..=2) => {}
        other => return Some(format!("unexpected exit {other:?}")),
    }
    if e.code != Some(0) && !e.stderr.contains("error") {
        return Some(format!(
            "failed without an error message (exit {:?})",
            e.code
        ));
    }
    if let Some(bad) = common::crash_marker(&e.stderr) {
        return Some(format!("`{bad}` on stderr"));
    }
    if e.peak >= MEMORY_LIMIT {
        return Some(format!("peak memory {} MiB", e.peak >> 20));
    }
    if NAN_OUTPUT_IS_FAILURE && nan_output(e) {
        return Some("NaN in the output of a successful command".into());
    }
    None
}

fn nan_output(e: &Ended) -> bool {
    e.code == Some(0) && e.stdout.contains("NaN")
}

/// One hostile input and the command that reads it.
struct Case {
    name: String,
    args: Vec<String>,
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn predict(model: &str, images: &[&str]) -> Vec<String> {
    let mut a = args(&["predict", "--model", model]);
    a.extend(images.iter().map(|s| s.to_string()));
    a
}

fn eval(model: &str, data: &str) -> Vec<String> {
    args(&[
        "eval",
        "--model",
        model,
        "--data",
        data,
        "--no-plots",
        "--no-cache",
    ])
}

/// A value that a careless or hostile writer could put anywhere in a config.
fn hostile_value(rng: &mut SplitMix64) -> Value {
    match rng.below(16) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(-1e300),
        3 => json!(1e300),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1_000_000_000u64),
        7 => json!(65_536),
        8 => json!("NaN"),
        9 => json!("inf"),
        10 => json!(null),
        11 => json!([]),
        12 => json!({}),
        13 => json!(true),
        14 => json!(0.5),
        _ => json!("\u{1b}[31m\n"),
    }
}

/// JSON pointers of every value under the root.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

/// A mutated config.json and what was done to it.
fn mutate_config(good: &Value, rng: &mut SplitMix64) -> (Vec<u8>, String) {
    let text = serde_json::to_string_pretty(good).unwrap();
    match rng.below(10) {
        // The file cut short, emptied, or not JSON at all.
        0 => {
            let at = rng.below(text.len());
            (text.as_bytes()[..at].to_vec(), format!("cut at {at}"))
        }
        1 => match rng.below(4) {
            0 => (Vec::new(), "empty".into()),
            1 => ("[".repeat(100_000).into_bytes(), "deeply nested".into()),
            2 => (
                text.replacen("1", "1e999", 1).into_bytes(),
                "number out of range".into(),
            ),
            _ => {
                let mut b = text.clone().into_bytes();
                let at = rng.below(b.len());
                b[at] = 0xFF;
                (b, format!("invalid UTF-8 at {at}"))
            }
        },
        // One to three values replaced, or removed.
        _ => {
            let mut v = good.clone();
            let mut what = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let mut all = Vec::new();
                pointers(&v, String::new(), &mut all);
                // Most values sit in the `train` record, which inference only carries along:
                // aim three mutations in four at what it reads.
                let (read, carried): (Vec<String>, Vec<String>) =
                    all.into_iter().partition(|p| !p.starts_with("/train"));
                let pool = if carried.is_empty() || (!read.is_empty() && rng.below(4) != 0) {
                    read
                } else {
                    carried
                };
                let p = pool[rng.below(pool.len())].clone();
                if rng.below(6) == 0 {
                    let (parent, key) = p.rsplit_once('/').unwrap();
                    match v.pointer_mut(parent) {
                        Some(Value::Object(m)) => {
                            m.remove(key);
                        }
                        Some(Value::Array(a)) => {
                            a.pop();
                        }
                        _ => {}
                    }
                    what.push(format!("{p} removed"));
                } else {
                    let new = hostile_value(rng);
                    what.push(format!("{p} = {new}"));
                    *v.pointer_mut(&p).unwrap() = new;
                }
            }
            (v.to_string().into_bytes(), what.join(", "))
        }
    }
}

/// Damaged bytes: cut, bits flipped, or a stretch overwritten.
fn damage(bytes: &[u8], rng: &mut SplitMix64) -> (Vec<u8>, String) {
    let mut b = bytes.to_vec();
    match rng.below(4) {
        0 => {
            let at = rng.below(b.len());
            b.truncate(at);
            (b, format!("cut at {at} of {}", bytes.len()))
        }
        1 => {
            let n = 1 + rng.below(16);
            for _ in 0..n {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            (b, format!("{n} bits flipped"))
        }
        2 => {
            // The header region, where sizes and offsets live.
            let end = b.len().min(256);
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(end);
                b[i] = rng.next_u64() as u8;
            }
            (b, format!("{n} header bytes replaced"))
        }
        _ => {
            let at = rng.below(b.len());
            let len = (1 + rng.below(64)).min(b.len() - at);
            b[at..at + len].fill(0xFF);
            (b, format!("{len} bytes at {at} set to FF"))
        }
    }
}

/// Sizes a header may claim: empty, absurd, just over the limits, large but legal.
const CLAIMED: [(u32, u32); 9] = [
    (0, 0),
    (1, 1_000_000),
    (16_384, 16_384),
    (16_385, 16),
    (100_000, 100_000),
    (u32::MAX, u32::MAX),
    (8_000, 8_000),
    (12_000, 9_000),
    (3, 65_535),
];

/// A JPEG whose frame header claims `w x h` (16 bits each).
fn jpeg_claiming(jpeg: &[u8], (w, h): (u32, u32)) -> Vec<u8> {
    let mut b = jpeg.to_vec();
    let sof = b
        .windows(2)
        .position(|m| m[0] == 0xFF && matches!(m[1], 0xC0 | 0xC2))
        .expect("a frame header");
    let (w, h) = (w.min(65_535) as u16, h.min(65_535) as u16);
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

/// A mutated image (from a JPEG or PNG of the data) and what was done to it.
fn mutate_image(png: &[u8], jpeg: &[u8], rng: &mut SplitMix64) -> (Vec<u8>, String) {
    let (base, kind) = if rng.below(2) == 0 {
        (png, "png")
    } else {
        (jpeg, "jpeg")
    };
    if rng.below(3) == 0 {
        let claim = CLAIMED[rng.below(CLAIMED.len())];
        let b = if kind == "png" {
            common::png_claiming(base, claim)
        } else {
            jpeg_claiming(base, claim)
        };
        return (b, format!("{kind} claiming {}x{}", claim.0, claim.1));
    }
    let (b, what) = damage(base, rng);
    (b, format!("{kind} {what}"))
}

/// A safetensors file with its JSON header edited, or its length prefix, or its bytes damaged.
fn mutate_safetensors(bytes: &[u8], rng: &mut SplitMix64) -> (Vec<u8>, String) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = names[rng.below(names.len())].clone();
    let what = match rng.below(7) {
        0 => {
            let mut b = bytes.to_vec();
            let claim: u64 = [0, 7, u64::MAX, 1 << 40, bytes.len() as u64][rng.below(5)];
            b[..8].copy_from_slice(&claim.to_le_bytes());
            return (b, format!("header length {claim}"));
        }
        1 => {
            let shape = [
                json!([1_000_000_000u64, 1_000_000_000u64]),
                json!([]),
                json!([0]),
                json!([u64::MAX, 2]),
            ][rng.below(4)]
            .clone();
            header[&name]["shape"] = shape.clone();
            format!("{name} shape {shape}")
        }
        2 => {
            let dtype = ["F64", "I8", "BOOL", "Q4"][rng.below(4)];
            header[&name]["dtype"] = json!(dtype);
            format!("{name} dtype {dtype}")
        }
        3 => {
            let offsets = [
                json!([0, 1u64 << 60]),
                json!([100, 0]),
                json!([0, 0]),
                json!([u64::MAX - 1, u64::MAX]),
            ][rng.below(4)]
            .clone();
            header[&name]["data_offsets"] = offsets.clone();
            format!("{name} offsets {offsets}")
        }
        4 => {
            header.as_object_mut().unwrap().remove(&name);
            format!("{name} removed")
        }
        5 => {
            let v = hostile_value(rng);
            header[&name] = v.clone();
            format!("{name} = {v}")
        }
        _ => {
            let (b, what) = damage(bytes, rng);
            return (b, what);
        }
    };
    let text = header.to_string();
    let mut b = (text.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(text.as_bytes());
    b.extend_from_slice(data);
    (b, what)
}

/// A model folder `name` holding `files` (name, bytes).
fn model_folder(dir: &Path, name: &str, files: &[(&str, &[u8])]) {
    let path = dir.join(name);
    fs::create_dir_all(&path).unwrap();
    for (file, bytes) in files {
        fs::write(path.join(file), bytes).unwrap();
    }
}

#[test]
fn predict_and_eval_survive_hostile_models_and_images() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let images =
        write_synth_set(&dir.join("data"), &["cat", "dog"], 6, 24, Layout::Kaggle, 7).unwrap();
    let setup = |a: &[&str]| {
        let e = run(&args(a), dir).unwrap();
        assert_eq!(e.code, Some(0), "{a:?}: {}", e.stderr);
    };
    let mut train = common::tiny_train_args("data", "model", "mlp");
    train.push("--quiet");
    setup(&train);
    setup(&[
        "export",
        "--model",
        "model",
        "--out",
        "bundle",
        "--format",
        "safetensors",
    ]);
    let config_bytes = fs::read(dir.join("model/config.json")).unwrap();
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    let weights = fs::read(dir.join("model/model.bpk")).unwrap();
    let bundle_config = fs::read(dir.join("bundle/config.json")).unwrap();
    let safetensors = fs::read(dir.join("bundle/model.safetensors")).unwrap();
    let is = |ext: &str| {
        let p = images
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap();
        fs::read(p).unwrap()
    };
    let (png, jpeg) = (is("png"), is("jpg"));
    // Large but legal: 8000 x 8000 grey, about 250 MB to decode (a few kilobytes on disk).
    let mut big = std::io::Cursor::new(Vec::new());
    GrayImage::new(8_000, 8_000)
        .write_to(&mut big, ImageFormat::Png)
        .unwrap();
    fs::write(dir.join("big.png"), big.into_inner()).unwrap();

    let mut rng = SplitMix64::new(SEED);
    let mut cases = vec![
        Case {
            name: "the good model on a good image".into(),
            args: predict("model", &["data/cat.1.png"]),
        },
        Case {
            name: "the good model on a large legal image".into(),
            args: predict("model", &["big.png", "data/dog.0.jpg"]),
        },
        Case {
            name: "the good bundle on the data".into(),
            args: eval("bundle", "data"),
        },
    ];
    for i in 0..CONFIG_CASES {
        let (bytes, what) = mutate_config(&config, &mut rng);
        let name = format!("c{i}");
        model_folder(
            dir,
            &name,
            &[("config.json", &bytes), ("model.bpk", &weights)],
        );
        let a = if i % 2 == 0 {
            predict(&name, &["data/cat.1.png"])
        } else {
            eval(&name, "data")
        };
        cases.push(Case {
            name: format!("config.json: {what}"),
            args: a,
        });
    }
    for i in 0..WEIGHT_CASES {
        let (bytes, what) = match i % 8 {
            0 => (Vec::new(), "empty".to_string()),
            1 => (config_bytes.clone(), "config.json as weights".into()),
            2 => (safetensors.clone(), "safetensors as burnpack".into()),
            3 => (
                (0..weights.len())
                    .map(|_| rng.next_u64() as u8)
                    .collect::<Vec<u8>>(),
                "noise".into(),
            ),
            _ => damage(&weights, &mut rng),
        };
        let name = format!("w{i}");
        model_folder(
            dir,
            &name,
            &[("config.json", &config_bytes), ("model.bpk", &bytes)],
        );
        let a = if i % 2 == 0 {
            predict(&name, &["data/dog.1.png"])
        } else {
            eval(&name, "data")
        };
        cases.push(Case {
            name: format!("model.bpk: {what}"),
            args: a,
        });
    }
    for i in 0..SAFETENSORS_CASES {
        let (bytes, what) = mutate_safetensors(&safetensors, &mut rng);
        let name = format!("s{i}");
        model_folder(
            dir,
            &name,
            &[
                ("config.json", &bundle_config),
                ("model.safetensors", &bytes),
            ],
        );
        let a = if i % 2 == 0 {
            predict(&name, &["data/cat.0.jpg"])
        } else {
            eval(&name, "data")
        };
        cases.push(Case {
            name: format!("model.safetensors: {what}"),
            args: a,
        });
    }
    fs::create_dir_all(dir.join("bad")).unwrap();
    for i in 0..PREDICT_IMAGE_CASES {
        let (bytes, what) = mutate_image(&png, &jpeg, &mut rng);
        let file = format!("bad/{i}.{}", if rng.below(2) == 0 { "png" } else { "jpg" });
        fs::write(dir.join(&file), bytes).unwrap();
        cases.push(Case {
            name: format!("predict image: {what}"),
            args: predict("model", &[&file, "data/dog.1.png"]),
        });
    }
    for i in 0..EVAL_IMAGE_CASES {
        // A copy of the data with a few images replaced.
        let folder = format!("data{i}");
        fs::create_dir_all(dir.join(&folder)).unwrap();
        for p in &images {
            fs::copy(p, dir.join(&folder).join(p.file_name().unwrap())).unwrap();
        }
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let victim: &PathBuf = &images[rng.below(images.len())];
            let (bytes, w) = mutate_image(&png, &jpeg, &mut rng);
            fs::write(dir.join(&folder).join(victim.file_name().unwrap()), bytes).unwrap();
            what.push(format!(
                "{}: {w}",
                victim.file_name().unwrap().to_string_lossy()
            ));
        }
        cases.push(Case {
            name: format!("eval images: {}", what.join(", ")),
            args: eval(if i % 2 == 0 { "model" } else { "bundle" }, &folder),
        });
    }

    let mut failures = Vec::new();
    let mut largest: Option<(u64, String)> = None;
    let mut codes = [0usize; 3];
    let mut slowest = (0.0, String::new());
    let mut nan = Vec::new();
    for case in &cases {
        let label = format!("{} [catdog {}]", case.name, case.args.join(" "));
        match run(&case.args, dir) {
            Err(why) => failures.push(format!("{label}: {why}")),
            Ok(e) => {
                // One line a case (shown with --nocapture, or when the test fails).
                println!(
                    "exit {:?}  {:4} MiB  {:.2} s  {}  | {}",
                    e.code,
                    e.peak >> 20,
                    e.seconds,
                    label,
                    e.stderr.lines().last().unwrap_or_default()
                );
                if let Some(why) = verdict(&e) {
                    failures.push(format!(
                        "{label}: {why}\nstdout: {}\nstderr: {}",
                        e.stdout, e.stderr
                    ));
                }
                if nan_output(&e) {
                    nan.push(case.name.clone());
                }
                if let Some(c @ 0..=2) = e.code {
                    codes[c as usize] += 1;
                }
                if largest.as_ref().is_none_or(|(peak, _)| e.peak > *peak) {
                    largest = Some((e.peak, label.clone()));
                }
                if e.seconds > slowest.0 {
                    slowest = (e.seconds, label.clone());
                }
            }
        }
    }
    let (peak, which) = largest.unwrap();
    println!(
        "{} commands in {:.1} s: {} succeeded, {} failed, {} refused; largest peak {} MiB: {which}; \
         slowest {:.2} s: {}",
        cases.len(),
        started.elapsed().as_secs_f64(),
        codes[0],
        codes[1],
        codes[2],
        peak >> 20,
        slowest.0,
        slowest.1
    );
    if !nan.is_empty() {
        println!(
            "{} command(s) succeeded with NaN in their output: {}",
            nan.len(),
            nan.join("; ")
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    // The good cases really ran: a fuzz that only ever sees refusals tests nothing.
    assert!(codes[0] >= 3, "{codes:?}");
}
