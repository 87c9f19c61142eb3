//! On-disk cache of decoded, resized pixels, so that no JPEG is decoded twice.
//!
//! One file per (file list, sizes, mtimes, preprocessing) key. Layout, little-endian:
//! `MAGIC | key u64 | count u64 | image_size u32 | status u8 x count | reasons_len u64 |
//! reasons JSON | pixels | crc32 u32`, the CRC covering everything before it. A file that fails
//! any check is reported and rebuilt, never trusted.

use std::{
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use crate::Sample;

const MAGIC: &[u8; 8] = b"CATDOGC\x02";
/// Bump when decoding or resizing changes, so old caches are not reused.
const PREPROCESS_VERSION: &str = "exif-upright+center-square+triangle/v2";

/// What happened with the cache in a load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Pixels came from the cache: nothing was decoded.
    Hit,
    /// No usable cache: images were decoded (and the cache written, if possible).
    Miss,
    /// A cache file existed but was corrupt or truncated; it was rebuilt.
    Rebuilt(String),
    /// Caching was turned off.
    Disabled,
}

/// `$CATDOG_CACHE_DIR`, else `$XDG_CACHE_HOME/catdog`, else `~/.cache/catdog`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CATDOG_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("catdog"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("catdog"))
}

/// FNV-1a: small, stable across Rust versions (unlike `DefaultHasher`).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        // Separator, so ("ab","c") and ("a","bc") differ.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

/// Key of a file list: paths, sizes and modification times, plus the preprocessing.
pub(crate) fn cache_key(samples: &[Sample], image_size: usize) -> u64 {
    let mut h = Fnv::new();
    h.write(PREPROCESS_VERSION.as_bytes());
    h.write(&(image_size as u64).to_le_bytes());
    for s in samples {
        h.write(s.path.to_string_lossy().as_bytes());
        match std::fs::metadata(&s.path) {
            Ok(m) => {
                h.write(&m.len().to_le_bytes());
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                let nanos = mtime.map_or(0, |d| d.as_nanos());
                h.write(&nanos.to_le_bytes());
            }
            Err(_) => h.write(b"missing"),
        }
    }
    h.0
}

pub(crate) fn cache_path(dir: &Path, key: u64) -> PathBuf {
    dir.join(format!("pixels-{key:016x}.bin"))
}

/// Decoded results of a whole file list: `Ok(pixels)` or the reason it was skipped.
pub(crate) type Decoded = Vec<Result<Vec<u8>, String>>;

pub(crate) fn write(
    path: &Path,
    key: u64,
    image_size: usize,
    decoded: &Decoded,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(decoded.len() * (image_size * image_size * 3 + 1) + 64);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&key.to_le_bytes());
    buf.extend_from_slice(&(decoded.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(image_size as u32).to_le_bytes());
    buf.extend(decoded.iter().map(|d| d.is_ok() as u8));
    let reasons: Vec<(usize, String)> = decoded
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.as_ref().err().map(|e| (i, e.clone())))
        .collect();
    let reasons = serde_json::to_vec(&reasons).map_err(std::io::Error::other)?;
    buf.extend_from_slice(&(reasons.len() as u64).to_le_bytes());
    buf.extend_from_slice(&reasons);
    for pixels in decoded.iter().flatten() {
        buf.extend_from_slice(pixels);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    write_atomic(path, &buf)
}

/// Writes to a temporary file in the same folder, syncs, then renames: readers never see half a
/// file, and a crash leaves the old file (or none).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// [`write_atomic`] for writers that need a path of their own (burn's `save_file`): `write`
/// fills the temporary file, which is then synced and renamed onto `path`. The temporary file
/// keeps `path`'s extension (burn adds `.bpk` to a name without one) and is removed on failure;
/// one left by a killed process is recognised by [`is_partial_write`] and carries this
/// process's [`write_token`].
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{PARTIAL}{}{extension}", write_token()));
    let written = write(&tmp)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Marks the temporary files of [`write_atomic_with`]: `.NAME.tmp-TOKEN[.EXT]`.
const PARTIAL: &str = ".tmp-";

/// A random token naming this process's temporary files (16 hex digits, fixed for the
/// process). A folder that records the tokens of the processes writing into it can later
/// remove exactly their leftovers, and never a file that merely looks like one.
pub fn write_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let stack = &nanos as *const u64 as u64; // differs between processes (ASLR)
        let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ stack.rotate_left(17);
        format!(
            "{:016x}",
            crate::SplitMix64::derive(seed, 0x5eed).next_u64()
        )
    })
}

/// Whether a file name looks like the temporary file of an atomic write that never completed.
pub fn is_partial_write(name: &str) -> bool {
    partial_write_token(name).is_some()
}

/// The writer's token in the name of an unfinished atomic write (`.NAME.tmp-TOKEN[.EXT]`).
pub fn partial_write_token(name: &str) -> Option<&str> {
    if !name.starts_with('.') {
        return None;
    }
    let (_, rest) = name.rsplit_once(PARTIAL)?;
    let token = rest.split('.').next().unwrap_or_default();
    (token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
}

/// Reads a cache file back; `Err` says why it cannot be trusted.
pub(crate) fn read(
    path: &Path,
    key: u64,
    count: usize,
    image_size: usize,
) -> Result<Decoded, String> {
    let buf = std::fs::read(path).map_err(|e| e.to_string())?;
    if buf.len() < MAGIC.len() + 4 {
        return Err("truncated".into());
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("checksum mismatch (corrupt or truncated)".into());
    }
    let mut r = Reader { buf: body, pos: 0 };
    if r.take(8)? != MAGIC {
        return Err("not a catdog cache file".into());
    }
    if r.u64()? != key || r.u64()? != count as u64 || r.u32()? != image_size as u32 {
        return Err("written for other files or settings".into());
    }
    let status = r.take(count)?.to_vec();
    let reasons_len = r.u64()? as usize;
    let reasons: Vec<(usize, String)> =
        serde_json::from_slice(r.take(reasons_len)?).map_err(|e| e.to_string())?;
    let mut reasons = reasons.into_iter();
    let per_image = image_size * image_size * 3;
    let mut out = Vec::with_capacity(count);
    for &ok in &status {
        if ok == 1 {
            out.push(Ok(r.take(per_image)?.to_vec()));
        } else {
            let (_, reason) = reasons.next().ok_or("missing skip reason")?;
            out.push(Err(reason));
        }
    }
    if r.pos != body.len() {
        return Err("trailing bytes".into());
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "truncated")?,
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "truncated")?,
        ))
    }
}
