use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    cache::{self, CacheStatus},
    decode_image, DataError, Discovered, ImageSet,
};

/// How to turn discovered files into pixels.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Images become `image_size x image_size`.
    pub image_size: usize,
    /// Where decoded pixels are cached; `None` decodes every time.
    pub cache_dir: Option<PathBuf>,
    /// Decoding threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Show a progress bar while decoding.
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            image_size: 64,
            cache_dir: cache::default_cache_dir(),
            threads: None,
            progress: false,
        }
    }
}

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Written lossily: a name that is not UTF-8 is shown, never a reason to fail.
    #[serde(with = "lossy_path")]
    pub path: PathBuf,
    pub reason: String,
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
                    eprintln!("warning: could not write image cache {}: {e}", p.display());
                }
            }
            d
        }
    };
    assemble(found, opts.image_size, decoded, status)
}

fn decode_all(found: &Discovered, opts: &LoadOptions) -> Result<cache::Decoded, DataError> {
    let bar = if opts.progress {
        let bar = ProgressBar::new(found.samples.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("decoding {bar:30} {pos}/{len} images  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let size = opts.image_size as u32;
    let work = || -> cache::Decoded {
        found
            .samples
            .par_iter()
            .map(|s| {
                let r = decode_image(&s.path, size).map_err(|e| e.to_string());
                bar.inc(1);
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
    bar.finish_and_clear();
    Ok(decoded)
}

fn assemble(
    found: &Discovered,
    image_size: usize,
    decoded: cache::Decoded,
    cache: CacheStatus,
) -> Result<Loaded, DataError> {
    let ok = decoded.iter().filter(|d| d.is_ok()).count();
    let mut set = ImageSet {
        image_size,
        classes: found.classes.clone(),
        pixels: Vec::with_capacity(ok * image_size * image_size * 3),
        labels: Vec::with_capacity(ok),
        paths: Vec::with_capacity(ok),
    };
    let mut skipped = Vec::new();
    for (sample, d) in found.samples.iter().zip(decoded) {
        match d {
            Ok(pixels) => {
                set.pixels.extend_from_slice(&pixels);
                set.labels.push(sample.label.unwrap_or(0));
                set.paths.push(sample.path.clone());
            }
            Err(reason) => skipped.push(Skipped {
                path: sample.path.clone(),
                reason,
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
        let present: Vec<&str> = set
            .class_counts()
            .iter()
            .zip(&found.classes)
            .filter(|(&n, _)| n > 0)
            .map(|(_, c)| c.as_str())
            .collect();
        if present.len() < 2 {
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
    })
}
