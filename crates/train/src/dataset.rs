//! The data of a run: the labelled folder decoded (or read from the pixel cache), split into
//! training and validation by seed, and the held-out folder, all checked before the first step.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::exclude::{kept_indices, read_exclude_list};
use catdog_data::printable;
use catdog_data::{
    check_splittable, discover_classes, load, stratified_split, CacheStatus, DataError, ImageSet,
    LoadOptions, Loaded, Skipped,
};

use crate::{Progress, TrainConfig};

/// The sets a run trains, validates and tests on.
pub struct RunData {
    pub classes: Vec<String>,
    pub train: Arc<ImageSet>,
    pub valid: Arc<ImageSet>,
    /// The held-out folder and its images, when the run has one.
    pub test: Option<(PathBuf, Arc<ImageSet>)>,
    /// Unusable files of every folder, with reasons.
    pub skipped: Vec<Skipped>,
    /// Those of the held-out folder (also in `skipped`), for its per-image results.
    pub test_skipped: Vec<Skipped>,
}

impl RunData {
    /// Loads `config.data` (and `config.test`) and splits it; refuses a split that leaves a
    /// class without training or validation images and a test folder with other classes.
    pub fn load(config: &TrainConfig, progress: &Progress) -> Result<RunData, DataError> {
        let loaded = load_folder(
            &config.data,
            config.image_size,
            config.pixel_cache(),
            progress,
        )?;
        let Loaded {
            mut set, skipped, ..
        } = loaded;
        let mut skipped = skipped;
        if let Some(list) = &config.exclude {
            let (excluded, missing) = read_exclude_list(list)?;
            let kept = kept_indices(&set.paths, &excluded);
            progress.say(&format!(
                "exclude: {} of {} images left out ({} listed{})",
                set.len() - kept.len(),
                set.len(),
                excluded.len() + missing,
                match missing {
                    0 => String::new(),
                    n => format!(", {n} of them not found"),
                }
            ));
            set = set.subset(&kept);
        }
        // Every class needs at least one training and one validation image.
        check_splittable(&set.labels, &set.classes, config.validation_fraction)?;
        let (train_idx, valid_idx) =
            stratified_split(&set.labels, config.validation_fraction, config.seed);
        if train_idx.is_empty() || valid_idx.is_empty() {
            return Err(DataError::Invalid(format!(
                "{} usable images in {} are too few to train on {} and hold out {} for \
                 validation (--validation-fraction {}): add images",
                set.len(),
                config.data.display(),
                train_idx.len(),
                valid_idx.len(),
                config.validation_fraction
            )));
        }
        let classes = set.classes.clone();
        let train = Arc::new(set.subset(&train_idx));
        let valid = Arc::new(set.subset(&valid_idx));
        // The subsets are copies: the full set goes before the test folder is decoded.
        drop(set);
        let mut test_skipped = Vec::new();
        let test = match &config.test {
            Some(dir) => {
                let loaded = load_folder(dir, config.image_size, config.pixel_cache(), progress)?;
                if loaded.set.classes != classes {
                    return Err(DataError::Invalid(format!(
                        "test folder {} has classes [{}] but the training data has [{}]",
                        dir.display(),
                        loaded.set.classes.join(", "),
                        classes.join(", ")
                    )));
                }
                skipped.extend(loaded.skipped.iter().cloned());
                test_skipped = loaded.skipped;
                Some((dir.clone(), Arc::new(loaded.set)))
            }
            None => None,
        };
        Ok(RunData {
            classes,
            train,
            valid,
            test,
            skipped,
            test_skipped,
        })
    }
}

/// Decodes (or reads from the cache) a labelled folder and reports skipped files.
///
/// `cache_dir`: where decoded pixels are cached; `None` decodes every image.
pub fn load_folder(
    dir: &Path,
    image_size: usize,
    cache_dir: Option<PathBuf>,
    progress: &Progress,
) -> Result<Loaded, DataError> {
    load_folder_classes(dir, image_size, cache_dir, progress, 2)
}

/// [`load_folder`] of a folder with at least `min_classes` classes (1 to evaluate photos of one
/// class).
pub fn load_folder_classes(
    dir: &Path,
    image_size: usize,
    cache_dir: Option<PathBuf>,
    progress: &Progress,
    min_classes: usize,
) -> Result<Loaded, DataError> {
    let found = discover_classes(dir, min_classes)?;
    let per_class: Vec<String> = found
        .classes
        .iter()
        .zip(found.class_counts())
        .map(|(c, n)| format!("{n} {}", printable(c)))
        .collect();
    progress.say(&format!(
        "data: {} ({}): {} images, {}",
        printable(&found.root.to_string_lossy()),
        found.layout,
        found.samples.len(),
        per_class.join(", ")
    ));
    let bar = progress.decode_bar();
    let opts = LoadOptions {
        cache_dir,
        progress: bar.as_ref().map(|bar| bar.reporter()),
        min_classes,
        ..LoadOptions::new(image_size)
    };
    let loaded = load(&found, &opts);
    drop(bar);
    let loaded = loaded?;
    for warning in &loaded.warnings {
        progress.warn(warning);
    }
    if let CacheStatus::Rebuilt(why) = &loaded.cache {
        progress.warn(&format!(
            "image cache was not usable and was rebuilt ({why})"
        ));
    }
    report_skipped(&loaded.skipped, progress);
    Ok(loaded)
}

/// Prints how many files were skipped and the first few, with reasons.
pub fn report_skipped(skipped: &[Skipped], progress: &Progress) {
    if skipped.is_empty() {
        return;
    }
    let mut lines = vec![format!("skipped {} unusable image(s):", skipped.len())];
    for s in skipped.iter().take(5) {
        lines.push(format!(
            "  {}: {}",
            printable(&s.path.to_string_lossy()),
            printable(&s.reason)
        ));
    }
    if skipped.len() > 5 {
        lines.push(format!(
            "  ... and {} more (all listed in summary.json)",
            skipped.len() - 5
        ));
    }
    progress.report(&lines);
}
