use std::path::PathBuf;

/// Why a data folder cannot be used at all (single bad images are [`crate::Skipped`], not errors).
///
/// Paths name the folder the user gave, not a sub-folder discovery descended into.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("the batch thread failed: {0}")]
    Worker(String),
    #[error("data folder {0} does not exist (run data/fetch.sh, or pass --data DIR)")]
    NotFound(PathBuf),
    #[error("{0} is a file, not a folder of images")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no images (.jpg, .jpeg, .png) found in {0}")]
    NoImages(PathBuf),
    #[error(
        "{path} has {found} class(es) ({classes}); training needs at least 2: use `<class>.<id>.jpg` \
         names or one sub-folder per class"
    )]
    TooFewClasses {
        path: PathBuf,
        found: usize,
        classes: String,
    },
    #[error(
        "{path} has the classes `{first}` and `{second}`, which differ only in case: they would \
         be trained as two classes; merge or rename one of them"
    )]
    ClassesDifferInCase {
        path: PathBuf,
        first: String,
        second: String,
    },
    #[error(
        "{path} has {images} image(s) but no labels: `{example}` is not named `<class>.<id>.<ext>` \
         and there are no class sub-folders; use `cat.1.jpg`-style names or one sub-folder per class"
    )]
    Unlabelled {
        path: PathBuf,
        images: usize,
        /// One image name that is not `<class>.<id>.<ext>`, shown lossily.
        example: String,
    },
    #[error("none of the {total} images in {path} could be decoded (first problem: {first})")]
    NothingDecoded {
        path: PathBuf,
        total: usize,
        first: String,
    },
    #[error(
        "class `{class}` has {count} usable image(s): too few to train on at least one and \
         validate on at least one with validation fraction {validation_fraction}; it needs at \
         least {needed} (add images to it, or remove it)"
    )]
    ClassTooSmall {
        /// The class name as found (shown escaped by the command line).
        class: String,
        count: usize,
        /// The smallest image count that this validation fraction splits.
        needed: usize,
        validation_fraction: f64,
    },
    #[error("{0}")]
    Invalid(String),
}
