use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
};

use crate::DataError;

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// How labels are read from a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One flat folder of `<class>.<id>.<ext>` files (Kaggle's dogs-vs-cats).
    Kaggle,
    /// `root/<class>/**/*.<ext>` (Microsoft's PetImages, torchvision's ImageFolder).
    ImageFolder,
    /// Images without labels, for prediction.
    Unlabelled,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Kaggle => "kaggle (<class>.<id>.<ext> files)",
            Layout::ImageFolder => "image-folder (one sub-folder per class)",
            Layout::Unlabelled => "unlabelled",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into [`Discovered::classes`]; `None` for unlabelled images.
    pub label: Option<usize>,
}

/// The images found under a folder, in a deterministic order, with sorted class names.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The folder the images were read from (after descending through single sub-folders).
    pub root: PathBuf,
    pub layout: Layout,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

impl Discovered {
    /// Number of images per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            if let Some(l) = s.label {
                counts[l] += 1;
            }
        }
        counts
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// `cat.12.jpg` -> `Some("cat")`: a class prefix, a numeric id, an image extension.
fn kaggle_class(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let mut parts = name.split('.');
    let (class, id, _ext) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || class.is_empty() || id.is_empty() {
        return None;
    }
    id.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| class.to_string())
}

fn read_dir_sorted(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        // Follow symlinks: data/fetch.sh may link to an existing copy.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => dirs.push(path),
            Ok(m) if m.is_file() && is_image(&path) => files.push(path),
            _ => {}
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let (files, dirs) = read_dir_sorted(dir)?;
    out.extend(files);
    for d in dirs {
        collect_images(&d, out)?;
    }
    Ok(())
}

/// Finds labelled images under `root`, detecting the layout.
///
/// A folder holding no images and exactly one sub-folder is descended into, so both
/// `dogs-vs-cats/` and `dogs-vs-cats/train/` work. Flat folders whose image names all look like
/// `<class>.<id>.<ext>` are Kaggle; otherwise each sub-folder holding images is a class.
pub fn discover(root: &Path) -> Result<Discovered, DataError> {
    let meta = std::fs::metadata(root).map_err(|_| DataError::NotFound(root.to_path_buf()))?;
    if !meta.is_dir() {
        return Err(DataError::NotADirectory(root.to_path_buf()));
    }
    let mut dir = root.to_path_buf();
    let (mut files, mut dirs) = read_dir_sorted(&dir)?;
    while files.is_empty() && dirs.len() == 1 {
        dir = dirs.remove(0);
        (files, dirs) = read_dir_sorted(&dir)?;
    }

    let kaggle: Option<Vec<String>> = files.iter().map(|p| kaggle_class(p)).collect();
    let (layout, labelled): (Layout, Vec<(PathBuf, String)>) = match kaggle {
        Some(classes) if !files.is_empty() => {
            (Layout::Kaggle, files.into_iter().zip(classes).collect())
        }
        _ => {
            let mut labelled = Vec::new();
            for d in &dirs {
                let class = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut images = Vec::new();
                collect_images(d, &mut images)?;
                labelled.extend(images.into_iter().map(|p| (p, class.clone())));
            }
            (Layout::ImageFolder, labelled)
        }
    };
    if labelled.is_empty() {
        return Err(DataError::NoImages(dir));
    }
    let classes: Vec<String> = labelled
        .iter()
        .map(|(_, c)| c.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.len() < 2 {
        return Err(DataError::TooFewClasses {
            path: dir,
            found: classes.len(),
            classes: classes.join(", "),
        });
    }
    let samples = labelled
        .into_iter()
        .map(|(path, class)| {
            let label = classes.binary_search(&class).ok();
            Sample { path, label }
        })
        .collect();
    Ok(Discovered {
        root: dir,
        layout,
        classes,
        samples,
    })
}

/// Unlabelled images for prediction: each argument is an image file or a folder searched
/// recursively. Missing paths are kept, so the caller reports them per file.
pub fn discover_files(paths: &[PathBuf]) -> Result<Discovered, DataError> {
    let mut samples = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut images = Vec::new();
            collect_images(p, &mut images)?;
            if images.is_empty() {
                // Kept so the caller reports the folder instead of silently skipping it.
                images.push(p.clone());
            }
            samples.extend(images.into_iter().map(|path| Sample { path, label: None }));
        } else {
            samples.push(Sample {
                path: p.clone(),
                label: None,
            });
        }
    }
    Ok(Discovered {
        root: PathBuf::from("."),
        layout: Layout::Unlabelled,
        classes: Vec::new(),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaggle_names() {
        assert_eq!(
            kaggle_class(Path::new("cat.12.jpg")).as_deref(),
            Some("cat")
        );
        assert_eq!(
            kaggle_class(Path::new("x/dog.0.JPEG")).as_deref(),
            Some("dog")
        );
        assert_eq!(kaggle_class(Path::new("cat.jpg")), None);
        assert_eq!(kaggle_class(Path::new("cat.a1.jpg")), None);
        assert_eq!(kaggle_class(Path::new("my.cat.1.jpg")), None);
    }
}
