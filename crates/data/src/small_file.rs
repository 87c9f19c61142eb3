//! Reading catdog's own small files (configs, manifests, checkpoints' state, locks) with the
//! guards images have: only a regular file is opened, and only up to a size that such a file
//! can have. A FIFO in a file's place would block the read forever, `/dev/zero` or a sparse
//! file of gigabytes would fill memory.

use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

use crate::decode::describe;

/// A configuration file (`config.json`, a TOML config, a manifest, a summary) is kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A checkpoint's `latest.json` carries the run's history: about 200 bytes an epoch.
pub const MAX_STATE_BYTES: u64 = 16 << 20;

/// The bytes of `path` when it is a regular file of at most `limit` bytes; an `InvalidData`
/// error naming what it is otherwise.
pub fn read_small(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    // `metadata` first: opening a FIFO blocks until a writer comes.
    check(&std::fs::metadata(path)?, limit)?;
    let mut file = open_nonblocking(path)?;
    // What was opened may have been replaced since the check: check it too.
    check(&file.metadata()?, limit)?;
    let mut bytes = Vec::new();
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// [`read_small`] as UTF-8 text.
pub fn read_small_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_small(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn check(meta: &std::fs::Metadata, limit: u64) -> io::Result<()> {
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}, not a regular file", describe(meta.file_type())),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit));
    }
    Ok(())
}

fn too_large(len: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{len} bytes, more than such a file can be ({limit} at most)"),
    )
}

/// Opens without blocking when a FIFO took the file's place after the check (the read then
/// fails instead of waiting for a writer).
fn open_nonblocking(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: 0o4000 on Linux and the BSDs, 0x4 on macOS.
        #[cfg(target_os = "macos")]
        options.custom_flags(0x4);
        #[cfg(not(target_os = "macos"))]
        options.custom_flags(0o4000);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_limit_are_read_and_the_rest_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, b"{\"a\": 1}").unwrap();
        assert_eq!(read_small_text(&file, 100).unwrap(), "{\"a\": 1}");
        let e = read_small(&file, 4).unwrap_err().to_string();
        assert!(
            e.contains("8 bytes, more than such a file can be (4 at most)"),
            "{e}"
        );
        let e = read_small(dir.path(), 100).unwrap_err().to_string();
        assert!(e.contains("a folder, not a regular file"), "{e}");
        #[cfg(target_os = "linux")]
        {
            let e = read_small(Path::new("/dev/zero"), 100)
                .unwrap_err()
                .to_string();
            assert!(e.contains("a character device"), "{e}");
            let fifo = dir.path().join("fifo");
            let status = std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap();
            assert!(status.success());
            let e = read_small(&fifo, 100).unwrap_err().to_string();
            assert!(e.contains("a FIFO"), "{e}");
            // A sparse file of 2 GB is refused from its size, not read.
            let sparse = dir.path().join("sparse.json");
            File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
            let e = read_small(&sparse, MAX_CONFIG_BYTES)
                .unwrap_err()
                .to_string();
            assert!(e.contains("2147483648 bytes"), "{e}");
        }
    }
}
