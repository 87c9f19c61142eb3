use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    fs::Metadata,
    path::{Path, PathBuf},
};

use crate::DataError;

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

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
        crate::class_counts(
            self.samples.iter().filter_map(|s| s.label),
            self.classes.len(),
        )
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

/// What a file or folder is, whichever path (or link) reaches it.
#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = PathBuf;

#[cfg(unix)]
fn file_id(_path: &Path, meta: &Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(path: &Path, _meta: &Metadata) -> FileId {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether a failed `metadata` means an entry the user would miss: not a dangling link or a
/// link loop (those are no images), but e.g. a path too long to name.
fn reported_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => false,
        #[cfg(unix)]
        _ if e.raw_os_error() == Some(libc_eloop()) => false,
        _ => true,
    }
}

/// ELOOP: 40 on Linux, 62 on the BSDs and macOS.
#[cfg(unix)]
const fn libc_eloop() -> i32 {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        40
    } else {
        62
    }
}

/// A folder, or a file with an image's name, as the listing itself says (no path lookup).
fn is_listed_image_or_dir(entry: &std::fs::DirEntry, path: &Path) -> bool {
    entry
        .file_type()
        .is_ok_and(|t| t.is_dir() || ((t.is_file() || t.is_symlink()) && is_image(path)))
}

/// An id for an entry whose metadata cannot be read: the listing's inode, on a device number no
/// real file has.
#[cfg(unix)]
fn unreachable_id(entry: &std::fs::DirEntry) -> FileId {
    use std::os::unix::fs::DirEntryExt;
    (u64::MAX, entry.ino())
}

#[cfg(not(unix))]
fn unreachable_id(entry: &std::fs::DirEntry) -> FileId {
    entry.path()
}

/// One folder's images and sub-folders, each sorted by path.
struct Listing {
    files: Vec<(PathBuf, FileId)>,
    dirs: Vec<(PathBuf, FileId)>,
}

/// Walks folders following symbolic links (data/fetch.sh may link to a copy elsewhere), but enters
/// each folder once and yields each file once, however many paths reach them: a link back to a
/// parent folder would otherwise be walked forever, and a linked file counted twice.
#[derive(Default)]
struct Walker {
    entered: HashSet<FileId>,
    yielded: HashSet<FileId>,
}

impl Walker {
    /// Marks a folder as walked; `false` when it was walked before, through another path.
    fn enter(&mut self, id: FileId) -> bool {
        self.entered.insert(id)
    }

    /// Marks a file as yielded; `false` when it was yielded before, through another path.
    fn first_visit(&mut self, id: FileId) -> bool {
        self.yielded.insert(id)
    }

    /// The images and the not yet walked sub-folders of `dir`.
    fn list(&self, dir: &Path) -> Result<Listing, DataError> {
        let io = |source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            // `metadata` follows links; a dangling link or a link loop (ELOOP) is skipped.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    let id = file_id(&path, &m);
                    if !self.entered.contains(&id) {
                        dirs.push((path, id));
                    }
                }
                // Regular files only: a FIFO or device with an image name is no image.
                Ok(m) if m.is_file() && is_image(&path) => {
                    let id = file_id(&path, &m);
                    files.push((path, id));
                }
                Ok(_) => {}
                // An entry that is listed but cannot be reached by its path (longer than
                // PATH_MAX): kept as a file, so that loading reports it as skipped with the
                // reason instead of silently dropping it (or the images under it).
                Err(e) if reported_unreachable(&e) && is_listed_image_or_dir(&entry, &path) => {
                    files.push((path, unreachable_id(&entry)));
                }
                Err(_) => {}
            }
        }
        files.sort();
        dirs.sort();
        // Two links here to one folder are one sub-folder (the first by name).
        let mut ids = HashSet::new();
        let first: Vec<bool> = dirs.iter().map(|(_, id)| ids.insert(id)).collect();
        let mut first = first.into_iter();
        dirs.retain(|_| first.next().unwrap_or(false));
        Ok(Listing { files, dirs })
    }

    /// Appends the images under `dir` (already entered) not yielded before, depth first: a
    /// folder's images in name order, then its sub-folders in name order. Returns how many images
    /// it met, those yielded before included.
    fn collect(&mut self, dir: &Path, out: &mut Vec<PathBuf>) -> Result<usize, DataError> {
        let mut met = 0;
        // A stack rather than recursion: how deep folders nest is up to the data.
        let mut stack = vec![(dir.to_path_buf(), None)];
        while let Some((d, id)) = stack.pop() {
            // Entered when reached, as in a recursive walk: the first path in name order wins.
            if id.is_some_and(|id| !self.enter(id)) {
                continue;
            }
            let listing = self.list(&d)?;
            met += listing.files.len();
            for (path, id) in listing.files {
                if self.first_visit(id) {
                    out.push(path);
                }
            }
            stack.extend(listing.dirs.into_iter().rev().map(|(p, id)| (p, Some(id))));
        }
        Ok(met)
    }
}

/// Finds labelled images under `root`, detecting the layout.
///
/// A folder holding no images and exactly one sub-folder is descended into, so both
/// `dogs-vs-cats/` and `dogs-vs-cats/train/` work. Flat folders whose image names all look like
/// `<class>.<id>.<ext>` are Kaggle; otherwise each sub-folder holding images is a class.
/// Symbolic links are followed, but each folder is walked once and each file counted once (under
/// its first path in discovery order), however many links reach it.
pub fn discover(root: &Path) -> Result<Discovered, DataError> {
    discover_classes(root, 2)
}

/// [`discover`] asking for at least `min_classes` classes: 1 to evaluate a folder of one class
/// (`cat.*.jpg` only, or a single class folder such as `test/cat/`, whose name is the class).
pub fn discover_classes(root: &Path, min_classes: usize) -> Result<Discovered, DataError> {
    let meta = std::fs::metadata(root).map_err(|_| DataError::NotFound(root.to_path_buf()))?;
    if !meta.is_dir() {
        return Err(DataError::NotADirectory(root.to_path_buf()));
    }
    let mut walk = Walker::default();
    walk.enter(file_id(root, &meta));
    let mut dir = root.to_path_buf();
    let mut listing = walk.list(&dir)?;
    let mut descended = false;
    while listing.files.is_empty() && listing.dirs.len() == 1 {
        let (sub, id) = listing.dirs.remove(0);
        walk.enter(id);
        dir = sub;
        descended = true;
        listing = walk.list(&dir)?;
    }
    let Listing { files, dirs } = listing;

    let kaggle: Option<Vec<String>> = files.iter().map(|(p, _)| kaggle_class(p)).collect();
    let (layout, labelled): (Layout, Vec<(PathBuf, String)>) = match kaggle {
        Some(classes) if !files.is_empty() => {
            let mut labelled = Vec::new();
            for ((path, id), class) in files.iter().cloned().zip(classes) {
                if walk.first_visit(id) {
                    labelled.push((path, class));
                }
            }
            (Layout::Kaggle, labelled)
        }
        _ => {
            // Every class folder is entered before any is walked, so a link from one class into
            // another is not followed: its images keep their own class.
            let class_dirs: Vec<PathBuf> = dirs
                .into_iter()
                .filter_map(|(path, id)| walk.enter(id).then_some(path))
                .collect();
            let mut labelled = Vec::new();
            let mut names: HashMap<String, &Path> = HashMap::new();
            for d in &class_dirs {
                let mut images = Vec::new();
                walk.collect(d, &mut images)?;
                if images.is_empty() {
                    continue;
                }
                let class = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Two folder names can only meet once non-UTF-8 bytes are replaced.
                if let Some(other) = names.insert(class.clone(), d) {
                    return Err(DataError::Invalid(format!(
                        "class folders {} and {} have the same name once their non-UTF-8 \
                         bytes are replaced; rename one",
                        other.display(),
                        d.display()
                    )));
                }
                labelled.extend(images.into_iter().map(|p| (p, class.clone())));
            }
            (Layout::ImageFolder, labelled)
        }
    };
    // Reached by descending through single sub-folders: that folder is the one class.
    let one_class = descended && files.iter().any(|(p, _)| kaggle_class(p).is_none());
    let (layout, labelled) = if labelled.is_empty() && one_class && min_classes <= 1 {
        let mut images = Vec::new();
        walk.collect(&dir, &mut images)?;
        let class = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let labelled = images.into_iter().map(|p| (p, class.clone())).collect();
        (Layout::ImageFolder, labelled)
    } else {
        (layout, labelled)
    };
    if labelled.is_empty() {
        // Loose images that are not `<class>.<id>.<ext>` and no class folders with images.
        return Err(
            match files.iter().find(|(p, _)| kaggle_class(p).is_none()) {
                // Reached by descending through single sub-folders: that folder is the one class.
                Some(_) if descended => DataError::TooFewClasses {
                    path: root.to_path_buf(),
                    found: 1,
                    classes: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                },
                Some((example, _)) => DataError::Unlabelled {
                    path: root.to_path_buf(),
                    images: files.len(),
                    example: example
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                },
                None => DataError::NoImages(root.to_path_buf()),
            },
        );
    }
    let classes: Vec<String> = labelled
        .iter()
        .map(|(_, c)| c.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.len() < min_classes.max(1) {
        return Err(DataError::TooFewClasses {
            path: root.to_path_buf(),
            found: classes.len(),
            classes: classes.join(", "),
        });
    }
    let mut lowercase = std::collections::BTreeMap::new();
    for class in &classes {
        if let Some(first) = lowercase.insert(class.to_lowercase(), class) {
            return Err(DataError::ClassesDifferInCase {
                path: root.to_path_buf(),
                first: first.clone(),
                second: class.clone(),
            });
        }
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
/// recursively (following links, each folder and file once, as in [`discover`]). File arguments
/// are kept as given, missing ones too, so the caller reports them per file.
pub fn discover_files(paths: &[PathBuf]) -> Result<Discovered, DataError> {
    let mut walk = Walker::default();
    let mut samples = Vec::new();
    for p in paths {
        let folder = std::fs::metadata(p)
            .ok()
            .filter(Metadata::is_dir)
            .map(|m| file_id(p, &m));
        let Some(id) = folder else {
            samples.push(Sample {
                path: p.clone(),
                label: None,
            });
            continue;
        };
        if !walk.enter(id) {
            // The same folder again (or one inside a folder already given): listed already.
            continue;
        }
        let mut images = Vec::new();
        if walk.collect(p, &mut images)? == 0 {
            // Kept so the caller reports the folder instead of silently skipping it.
            images.push(p.clone());
        }
        samples.extend(images.into_iter().map(|path| Sample { path, label: None }));
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
