//! From a folder of real photos to training batches.
//!
//! [`discover`] finds labelled images (Kaggle `cat.0.jpg` or ImageFolder `Cat/0.jpg` layouts),
//! [`load`] decodes and resizes them once into a compact u8 [`ImageSet`] (cached on disk),
//! [`split`] and [`Normalization`] prepare training, and [`ImageBatcher`] with [`Prefetcher`]
//! turn index lists into normalised, augmented `[N, 3, H, W]` batches ahead of the model.

mod augment;
mod batcher;
mod budget;
mod cache;
mod decode;
mod discover;
mod error;
mod imageset;
mod load;
mod mix;
mod normalize;
mod rng;
mod small_file;
mod split;
pub mod synth;
mod text;

pub use augment::Augment;
pub use batcher::{epoch_plan, Batch, BatchItem, HostBatch, ImageBatcher, Order, Prefetcher};
pub use budget::{decode_budget, ByteBudget, Reservation, DECODE_BUDGET_BYTES, MAX_DECODE_BYTES};
pub use cache::{
    default_cache_dir, is_partial_write, partial_write_token, write_atomic, write_atomic_with,
    write_token, CacheStatus,
};
pub use decode::{decode_image, decode_image_bytes, DecodeError, MAX_FILE_BYTES, MAX_IMAGE_SIDE};
pub use discover::{
    discover, discover_classes, discover_files, Discovered, Layout, Sample, IMAGE_EXTENSIONS,
};
pub use error::DataError;
pub use imageset::ImageSet;
pub use load::{load, lossy_path, DecodeProgress, LoadOptions, Loaded, Skipped};
pub use mix::{Mix, MixKind, MixedLabels};
pub use normalize::Normalization;
pub use rng::SplitMix64;
pub use small_file::{read_small, read_small_text, MAX_CONFIG_BYTES, MAX_STATE_BYTES};
pub use split::{check_splittable, class_counts, stratified_split};
pub use text::printable;
