use std::{path::PathBuf, sync::Arc};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    cache::{self, CacheStatus},
    decode_image, DataError, Discovered, ImageSet,
};

/// Told `(decoded, total)` after each decoded image, from the decoding threads (e.g. to draw
/// a progress bar).
pub type DecodeProgress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// How to turn discovered files into pixels.
#[derive(Clone)]
pub struct LoadOptions {
    /// Images become `image_size x image_size` (validated by the caller against
    /// `catdog_model::IMAGE_SIZE`; [`load`] only refuses sizes it cannot work with).
    pub image_size: usize,
    /// Where decoded pixels are cached; `None` decodes every time.
    pub cache_dir: Option<PathBuf>,
    /// Decoding threads; `None` uses every core.
    pub threads: Option<usize>,
    pub progress: Option<DecodeProgress>,
    /// Fewest classes with usable images: 2 to train on, 1 to evaluate a folder of one class.
    pub min_classes: usize,
}

impl LoadOptions {
    /// Decode to `image_size x image_size` on every core, without a cache or progress reports.
    pub fn new(image_size: usize) -> Self {
        Self {
            image_size,
            cache_dir: None,
            threads: None,
            progress: None,
            min_classes: 2,
        }
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("image_size", &self.image_size)
            .field("cache_dir", &self.cache_dir)
            .field("threads", &self.threads)
            .field("progress", &self.progress.is_some())
            .field("min_classes", &self.min_classes)
            .finish()
    }
}

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Written lossily: a name that is not UTF-8 is shown, never a reason to fail.
    #[serde(with = "lossy_path")]
    pub path: PathBuf,
    pub reason: String,
    /// Its position among the folder's discovered files, so that per-image reports can list it
    /// in the data set's order (not written to JSON).
    #[serde(skip)]
    pub index: usize,
    /// Its class (an index into the folder's classes) when the layout names one (not written to
    /// JSON).
    #[serde(skip)]
    pub label: Option<usize>,
}

/// Serde for paths that are only shown: written as text with bytes that are not UTF-8 replaced
/// by U+FFFD (Linux allows any bytes in a name; JSON holds text), read back as written. Use as
/// `#[serde(with = "catdog_data::lossy_path")]` on a `PathBuf` field.
pub mod lossy_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<P: AsRef<Path>, S: Serializer>(path: P, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&path.as_ref().to_string_lossy())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        PathBuf::deserialize(d)
    }
}

#[derive(Debug)]
pub struct Loaded {
    pub set: ImageSet,
    pub skipped: Vec<Skipped>,
    pub cache: CacheStatus,
    /// Problems that cost speed, not correctness (e.g. a cache that could not be written).
    pub warnings: Vec<String>,
}

/// Decodes every discovered image (or reads them from the cache). Bad images are skipped and
/// listed in [`Loaded::skipped`]; it is an error only when none can be decoded.
pub fn load(found: &Discovered, opts: &LoadOptions) -> Result<Loaded, DataError> {
    if opts.image_size == 0 || opts.image_size > 4096 {
        return Err(DataError::Invalid(format!(
            "image size must be between 1 and 4096 pixels, got {}",
            opts.image_size
        )));
    }
    let key = cache::cache_key(&found.samples, opts.image_size);
    let path = opts.cache_dir.as_ref().map(|d| cache::cache_path(d, key));
    let mut status = CacheStatus::Disabled;
    let mut decoded = None;
    let mut warnings = Vec::new();
    if let Some(p) = &path {
        status = CacheStatus::Miss;
        if p.exists() {
            match cache::read(p, key, found.samples.len(), opts.image_size) {
                Ok(d) => {
                    decoded = Some(d);
                    status = CacheStatus::Hit;
                }
                Err(why) => status = CacheStatus::Rebuilt(format!("{}: {why}", p.display())),
            }
        }
    }
    let decoded = match decoded {
        Some(d) => d,
        None => {
            let d = decode_all(found, opts)?;
            if let Some(p) = &path {
                // A cache that cannot be written costs speed, not correctness.
                if let Err(e) = cache::write(p, key, opts.image_size, &d) {
                    warnings.push(format!("could not write image cache {}: {e}", p.display()));
                }
            }
            d
        }
    };
    let mut loaded = assemble(found, opts, decoded, status)?;
    loaded.warnings = warnings;
    Ok(loaded)
}

fn decode_all(found: &Discovered, opts: &LoadOptions) -> Result<cache::Decoded, DataError> {
    let total = found.samples.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let size = opts.image_size as u32;
    let work = || -> cache::Decoded {
        found
            .samples
            .par_iter()
            .map(|s| {
                let r = decode_image(&s.path, size).map_err(|e| e.to_string());
                if let Some(report) = &opts.progress {
                    report(
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                        total,
                    );
                }
                r
            })
            .collect()
    };
    let decoded = match opts.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| DataError::Invalid(format!("cannot start {n} decoding threads: {e}")))?
            .install(work),
        None => work(),
    };
    Ok(decoded)
}

fn assemble(
    found: &Discovered,
    opts: &LoadOptions,
    decoded: cache::Decoded,
    cache: CacheStatus,
) -> Result<Loaded, DataError> {
    let image_size = opts.image_size;
    let ok = decoded.iter().filter(|d| d.is_ok()).count();
    let mut set = ImageSet {
        image_size,
        classes: found.classes.clone(),
        pixels: Vec::with_capacity(ok * image_size * image_size * 3),
        labels: Vec::with_capacity(ok),
        paths: Vec::with_capacity(ok),
    };
    let mut skipped = Vec::new();
    for (index, (sample, d)) in found.samples.iter().zip(decoded).enumerate() {
        match d {
            Ok(pixels) => {
                set.pixels.extend_from_slice(&pixels);
                set.labels.push(sample.label.unwrap_or(0));
                set.paths.push(sample.path.clone());
            }
            Err(reason) => skipped.push(Skipped {
                path: sample.path.clone(),
                reason,
                index,
                label: sample.label,
            }),
        }
    }
    if set.is_empty() {
        return Err(DataError::NothingDecoded {
            path: found.root.clone(),
            total: found.samples.len(),
            first: skipped
                .first()
                .map(|s| format!("{}: {}", s.path.display(), s.reason))
                .unwrap_or_default(),
        });
    }
    if found.layout != crate::Layout::Unlabelled {
        // Name the classes that are left, not those discovered.
        let present: Vec<&str> = crate::class_counts(set.labels.iter().copied(), set.classes.len())
            .iter()
            .zip(&found.classes)
            .filter(|(&n, _)| n > 0)
            .map(|(_, c)| c.as_str())
            .collect();
        if present.len() < opts.min_classes {
            return Err(DataError::TooFewClasses {
                path: found.root.clone(),
                found: present.len(),
                classes: present.join(", "),
            });
        }
    }
    Ok(Loaded {
        set,
        skipped,
        cache,
        warnings: Vec::new(),
    })
}
