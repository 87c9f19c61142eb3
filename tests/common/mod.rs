//! Running the `catdog` binary from integration tests, and reading what it printed.
//!
//! Each test file includes this module; not every file uses every helper.
#![allow(dead_code)]

mod deadline;
#[allow(unused_imports)]
pub use deadline::{run_limited, wait_within, Limited};

use std::{
    ffi::OsStr,
    io::{Read, Seek},
    path::Path,
    process::{Command, Output},
    time::Duration,
};

/// `catdog ARGS` in `cwd`, with its pixel cache inside `cwd`, ready to run or spawn.
pub fn command<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>, cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_catdog"));
    command
        .args(args)
        .current_dir(cwd)
        .env("CATDOG_CACHE_DIR", cwd.join("cache"));
    command
}

/// Runs `catdog ARGS` in `cwd`, with its pixel cache inside `cwd`.
pub fn catdog(args: &[&str], cwd: &Path) -> Output {
    command(args, cwd).output().expect("catdog runs")
}

/// `catdog ARGS` in `cwd` as [`catdog`] runs it, killed after `secs`: `None` when it did not
/// end by then.
pub fn catdog_within(args: &[&str], cwd: &Path, secs: u64) -> Option<Output> {
    let run = run_limited(command(args, cwd), Duration::from_secs(secs), u64::MAX);
    run.killed.is_none().then_some(run.output)
}

/// Everything written to `f` so far, from its start.
pub fn read_back(mut f: std::fs::File) -> Vec<u8> {
    let mut bytes = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut bytes).unwrap();
    bytes
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Both streams, labelled, for assertion messages.
pub fn both(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", stdout(o), stderr(o))
}

/// The command succeeded.
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "{}", both(o));
}

/// What a crash leaves on stderr: a panic, its backtrace hint, a failed allocation.
pub const CRASH_MARKERS: [&str; 4] = [
    "panicked",
    "backtrace",
    "RUST_BACKTRACE",
    "memory allocation of",
];

/// The first crash marker in `stderr`, if any.
pub fn crash_marker(stderr: &str) -> Option<&'static str> {
    CRASH_MARKERS.into_iter().find(|m| stderr.contains(m))
}

/// No crash marker on stderr.
pub fn assert_no_crash(o: &Output) {
    let err = stderr(o);
    if let Some(crash) = crash_marker(&err) {
        panic!("`{crash}` in: {err}");
    }
}

/// Exit `code`, `needle` in the message, and no panic, backtrace or failed allocation.
pub fn assert_refused(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{}", both(o));
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert_no_crash(o);
}

/// Exit code 2 (the user's to fix), `needle` in the message, no panic.
pub fn assert_usage_error(o: &Output, needle: &str) {
    assert_refused(o, 2, needle);
}

/// The arguments of `catdog train` of `data` into `out`: one epoch of `arch` on 16x16 images.
pub fn tiny_train_args<'a>(data: &'a str, out: &'a str, arch: &'a str) -> Vec<&'a str> {
    vec![
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
        arch,
    ]
}

/// `catdog train` of `data` into `out`: one epoch of `arch` on 16x16 images.
pub fn train_tiny(dir: &Path, data: &str, out: &str, arch: &str) -> Output {
    catdog(&tiny_train_args(data, out, arch), dir)
}

/// Cat and dog folders (`Cat/`, `Dog/`) of `per_class` synthetic 16x16 images under `dir/data`.
pub fn cat_and_dog_folders(dir: &Path, per_class: usize, seed: u64) {
    catdog::data::synth::write_synth_set(
        &dir.join("data"),
        &["Cat", "Dog"],
        per_class,
        16,
        catdog::data::Layout::ImageFolder,
        seed,
    )
    .unwrap();
}

/// The path of one file in `folder` (the first the directory listing gives), as text.
pub fn any_file_in(folder: &Path) -> String {
    let entry = std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .next()
        .expect("a file in the folder");
    entry.path().to_str().expect("a UTF-8 path").to_string()
}

/// A PNG whose header claims `w x h` (with a correct CRC, so the decoder believes it).
pub fn png_claiming(png: &[u8], (w, h): (u32, u32)) -> Vec<u8> {
    let mut b = png.to_vec();
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ...; CRC over type + data.
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
