//! Hostile data folders and files: link loops, special files, oversized files, decompression
//! bombs, names that are not UTF-8. Each ends quickly with the images counted once or a reason.
#![cfg(unix)]

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt, fs::symlink},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use catdog_data::{
    decode_image, decode_image_bytes, discover, discover_files, load, synth::write_synth_set,
    DataError, Layout, LoadOptions, Skipped,
};

/// Runs `f` on its own thread; `None` when it has not returned within `secs` (a hang: the thread
/// is left behind and ends with the test process) or panicked.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

fn no_cache(size: usize) -> LoadOptions {
    LoadOptions {
        threads: Some(2),
        ..LoadOptions::new(size)
    }
}

/// Writes deflate bits: fields least significant bit first, Huffman codes most significant first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn field(&mut self, value: u64, len: u32) {
        self.acc |= value << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | ((code >> i) & 1) << (len - 1 - i));
        self.field(reversed, len);
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A real, valid PNG of `w x h` black 8-bit grey pixels, deflated by hand: one literal zero,
/// then "copy 258 bytes from 1 back" (13 bits) over and over, so 256 MB of pixels take 1.6 MB.
fn grey_png(w: u32, h: u32) -> Vec<u8> {
    let raw = (u64::from(w) + 1) * u64::from(h); // each row: filter byte 0, then w zeros
    let mut bits = Bits::default();
    bits.field(1, 1); // last block
    bits.field(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    let mut left = raw - 1;
    while left >= 258 {
        bits.code(0xC5, 8); // length code 285: 258 bytes
        bits.code(0, 5); // distance code 0: 1 byte back
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    let mut zlib = vec![0x78, 0x01];
    zlib.extend(bits.finish());
    // Adler-32 of zeros: a stays 1, b counts the bytes.
    zlib.extend_from_slice(&((((raw % 65521) as u32) << 16) | 1).to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, not interlaced
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &zlib);
    chunk(b"IEND", &[]);
    png
}

fn names(samples: &[PathBuf], root: &Path) -> Vec<String> {
    samples
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_link_back_to_the_root_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    write_synth_set(&root, &["Cat", "Dog"], 3, 16, Layout::ImageFolder, 1).unwrap();
    symlink("..", root.join("Cat/loop")).unwrap();
    let found = within(20, move || discover(&root).unwrap()).expect("discovery ends");
    assert_eq!(found.classes, ["Cat", "Dog"]);
    assert_eq!(
        found.class_counts(),
        [3, 3],
        "the Dog images are not Cat images too"
    );
}

#[test]
fn link_loops_end_and_each_file_counts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    write_synth_set(&root, &["Cat", "Dog"], 3, 16, Layout::ImageFolder, 2).unwrap();
    // Two links back up: without loop detection, 2^40 paths (until ELOOP) to walk.
    symlink("..", root.join("Cat/loop")).unwrap();
    symlink("..", root.join("Dog/loop")).unwrap();
    // A link from one class into another keeps the images in their own class.
    symlink("../Dog", root.join("Cat/dogs")).unwrap();
    // One file by two names: counted once, under the first name.
    symlink("0.jpg", root.join("Cat/again.jpg")).unwrap();
    std::fs::hard_link(root.join("Cat/1.png"), root.join("Dog/hard.png")).unwrap();
    // A class that is a link to a copy elsewhere (data/fetch.sh may link) still counts.
    write_synth_set(
        &tmp.path().join("elsewhere"),
        &["Bird"],
        2,
        16,
        Layout::ImageFolder,
        3,
    )
    .unwrap();
    symlink(tmp.path().join("elsewhere/Bird"), root.join("Bird")).unwrap();
    // Two names for one class folder are one class.
    symlink("Cat", root.join("Kitty")).unwrap();

    let r = root.clone();
    let found = within(20, move || discover(&r).unwrap()).expect("discovery ends");
    assert_eq!(found.classes, ["Bird", "Cat", "Dog"]);
    assert_eq!(
        names(
            &found
                .samples
                .iter()
                .map(|s| s.path.clone())
                .collect::<Vec<_>>(),
            &root
        ),
        [
            "Bird/0.jpg",
            "Bird/1.png",
            "Cat/0.jpg",
            "Cat/1.png",
            "Cat/2.jpg",
            "Dog/0.jpg",
            "Dog/1.png",
            "Dog/2.jpg"
        ]
    );
    assert_eq!(found.class_counts(), [2, 3, 3]);

    // Prediction's folder walk follows the links too (Cat/dogs/loop/Bird is Bird), and the same
    // folder given three ways is walked once: every image once, under its first path.
    let args = vec![
        root.join("Cat"),
        root.join("Kitty"),
        root.join("Cat/loop/Cat"),
    ];
    let files = within(20, move || discover_files(&args).unwrap()).expect("discovery ends");
    let files: Vec<PathBuf> = files.samples.into_iter().map(|s| s.path).collect();
    assert_eq!(files.len(), 8, "{files:?}");
    assert_eq!(files[0], root.join("Cat/0.jpg"));
    let canonical = |paths: Vec<PathBuf>| {
        let mut paths: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap())
            .collect();
        paths.sort();
        paths
    };
    assert_eq!(
        canonical(files),
        canonical(found.samples.into_iter().map(|s| s.path).collect())
    );
}

#[test]
fn a_lone_link_to_itself_is_no_images_in_the_given_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    symlink(".", root.join("only")).unwrap();
    let r = root.clone();
    let e = within(20, move || discover(&r).unwrap_err()).expect("discovery ends");
    assert!(matches!(&e, DataError::NoImages(p) if *p == root), "{e}");
}

#[test]
fn errors_name_the_given_folder_and_what_was_found() {
    let tmp = tempfile::tempdir().unwrap();
    // One class folder: descended into, yet the message is about `one`, not `one/Cat`.
    let one = tmp.path().join("one");
    write_synth_set(&one, &["Cat"], 3, 16, Layout::ImageFolder, 4).unwrap();
    let e = discover(&one).unwrap_err();
    assert!(
        matches!(&e, DataError::TooFewClasses { path, found: 1, classes } if *path == one && classes == "Cat"),
        "{e}"
    );
    // Kaggle names of one class inside a wrapper folder.
    let wrapped = tmp.path().join("wrapped");
    write_synth_set(&wrapped.join("train"), &["cat"], 3, 16, Layout::Kaggle, 5).unwrap();
    let e = discover(&wrapped).unwrap_err();
    assert!(
        matches!(&e, DataError::TooFewClasses { path, found: 1, .. } if *path == wrapped),
        "{e}"
    );
    // Images without labels are not "no images".
    let loose = tmp.path().join("loose");
    write_synth_set(&loose, &["cat", "dog"], 1, 16, Layout::Kaggle, 6).unwrap();
    std::fs::rename(loose.join("cat.0.jpg"), loose.join("photo.jpg")).unwrap();
    let e = discover(&loose).unwrap_err().to_string();
    assert!(
        !e.contains("no images") && e.contains("photo.jpg") && e.contains("loose"),
        "{e}"
    );
}

#[test]
fn special_files_are_refused_without_being_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.jpg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a FIFO without a writer blocks forever.
    let e = within(20, move || decode_image(&fifo, 16).unwrap_err()).expect("no hang");
    assert!(e.to_string().contains("not a regular file (a FIFO)"), "{e}");
    let e = decode_image(Path::new("/dev/null"), 16).unwrap_err();
    assert!(e.to_string().contains("a character device"), "{e}");
    let e = decode_image(tmp.path(), 16).unwrap_err();
    assert!(e.to_string().contains("a folder"), "{e}");
    // In a folder, a FIFO with an image name is not listed at all.
    write_synth_set(tmp.path(), &["cat", "dog"], 2, 16, Layout::Kaggle, 7).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(tmp.path().join("cat.9.jpg"))
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(discover(tmp.path()).unwrap().samples.len(), 4);
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    // Sparse: 200 MB on paper, nothing on disk. A PNG signature, so only the size refuses it.
    let big = tmp.path().join("big.png");
    let file = std::fs::File::create(&big).unwrap();
    std::io::Write::write_all(&mut &file, b"\x89PNG\r\n\x1a\n").unwrap();
    file.set_len(200 << 20).unwrap();
    let e = decode_image(&big, 16).unwrap_err();
    assert!(e.to_string().contains("file too large (200 MiB"), "{e}");
}

#[test]
fn png_bomb_is_refused_from_its_header() {
    // The generator makes real PNGs: a small one decodes to black.
    let small = decode_image_bytes(&grey_png(300, 200), 16).unwrap();
    assert!(small.iter().all(|&v| v == 0));
    // 16000x16000 grey: 1.6 MB of file, 256 MB of pixels, 768 MB more as RGB8.
    let bomb = grey_png(16_000, 16_000);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let t = Instant::now();
    let e = decode_image_bytes(&bomb, 16).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "refused in {:?}",
        t.elapsed()
    );
    let e = e.to_string();
    assert!(e.contains("too large") && e.contains("16000x16000"), "{e}");
}

#[test]
fn names_that_are_not_utf8_are_read_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    write_synth_set(&root, &["Cat", "Dog"], 3, 16, Layout::ImageFolder, 8).unwrap();
    let good = root.join("Cat").join(OsStr::from_bytes(b"\xff.jpg"));
    std::fs::copy(root.join("Cat/0.jpg"), &good).unwrap();
    let bad = root.join("Dog").join(OsStr::from_bytes(b"\xfe.png"));
    std::fs::write(&bad, b"not an image").unwrap();

    let found = discover(&root).unwrap();
    assert_eq!(found.class_counts(), [4, 4]);
    assert_eq!(decode_image(&good, 16).unwrap().len(), 16 * 16 * 3);
    let loaded = load(&found, &no_cache(16)).unwrap();
    assert_eq!(loaded.set.len(), 7);
    assert!(loaded.set.paths.contains(&good));
    assert_eq!(loaded.skipped.len(), 1);
    // Shown lossily, and read back as shown.
    let json = serde_json::to_string(&loaded.skipped).unwrap();
    assert!(json.contains("Dog/\u{FFFD}.png"), "{json}");
    let back: Vec<Skipped> = serde_json::from_str(&json).unwrap();
    assert_eq!(back[0].path, root.join("Dog/\u{FFFD}.png"));
    assert_eq!(back[0].reason, loaded.skipped[0].reason);

    let files = discover_files(&[root.join("Cat")]).unwrap();
    assert!(files.samples.iter().any(|s| s.path == good));
}
