//! Folders catdog writes into and who owns them.
//!
//! catdog writes only into a folder it created, an empty one, or one that holds its manifest
//! (`.catdog.json`, written when it claimed the folder). The manifest records the kind of folder
//! and the write token of every process that wrote into it ([`catdog_data::write_token`]), so
//! the sweep after a killed run removes exactly the temporary files those processes left and
//! never a user's file that merely looks like one.

use std::path::{Path, PathBuf};

use catdog_data::{partial_write_token, write_atomic, write_token};
use catdog_infer::model_io::Cause;
use serde::{Deserialize, Serialize};

use crate::folder::lock::LockError;

/// The manifest that marks a folder as catdog's.
pub const MANIFEST_FILE: &str = ".catdog.json";

/// What a catdog folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderKind {
    /// A training run (`catdog train`).
    Run,
    /// An exported bundle (`catdog export`).
    Bundle,
    /// A model folder made by `catdog import`.
    Model,
    /// Plots of `catdog eval`.
    Eval,
    /// A label audit (`catdog audit`).
    Audit,
}

impl FolderKind {
    fn name(self) -> &'static str {
        match self {
            FolderKind::Run => "run",
            FolderKind::Bundle => "export bundle",
            FolderKind::Model => "imported model",
            FolderKind::Eval => "evaluation",
            FolderKind::Audit => "label audit",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) kind: FolderKind,
    /// Write tokens of the processes that wrote here: their unfinished temporary files may be
    /// removed.
    writers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{path} is not empty and was not made by catdog (it holds {found}); catdog writes only \
         into a new or empty folder or one of its own: choose another folder"
    )]
    NotOurs { path: PathBuf, found: String },
    #[error("{path} already holds a catdog {}: {hint}", .kind.name())]
    Exists {
        path: PathBuf,
        kind: FolderKind,
        hint: String,
    },
    #[error("{path} holds a catdog {}, not a {}", .found.name(), .wanted.name())]
    WrongKind {
        path: PathBuf,
        found: FolderKind,
        wanted: FolderKind,
    },
    #[error("{path} is not a catdog run folder")]
    NotARun {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    #[error("{path} is not writable: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is a symbolic link: catdog writes and deletes a run's files only inside the \
         run's own folder; remove the link or choose another folder"
    )]
    Link { path: PathBuf },
    #[error(transparent)]
    Lock(#[from] LockError),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FolderError + '_ {
    move |source| FolderError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Who owns a folder that catdog is asked to write into.
pub(crate) enum Ownership {
    /// Missing or empty: free to claim.
    Free,
    Ours(Manifest),
    /// Someone else's: a short description of what is there.
    Foreign(String),
}

pub(crate) fn inspect(path: &Path) -> Result<Ownership, FolderError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ownership::Free),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut names: Vec<String> = entries
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io_error(path))?;
    // Empty, or holding only what a catdog killed while first writing its manifest left: the
    // manifest's unfinished temporary file.
    let first_manifest_write = |n: &String| {
        n.starts_with(&format!(".{MANIFEST_FILE}.tmp-")) && partial_write_token(n).is_some()
    };
    if names.iter().all(first_manifest_write) {
        return Ok(Ownership::Free);
    }
    if names.iter().any(|n| n == MANIFEST_FILE) {
        let text =
            catdog_data::read_small_text(&path.join(MANIFEST_FILE), catdog_data::MAX_CONFIG_BYTES)
                .map_err(io_error(path))?;
        return match serde_json::from_str::<Manifest>(&text) {
            Ok(m) => Ok(Ownership::Ours(m)),
            Err(e) => Ok(Ownership::Foreign(format!(
                "a {MANIFEST_FILE} catdog cannot read: {e}"
            ))),
        };
    }
    names.sort();
    let shown = names
        .iter()
        .take(3)
        .map(|n| catdog_data::printable(n).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Ownership::Foreign(match names.len() {
        n if n > 3 => format!("{shown} and {} more", n - 3),
        _ => shown,
    }))
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), FolderError> {
    let text = serde_json::to_string_pretty(manifest).map_err(std::io::Error::other);
    text.and_then(|t| write_atomic(&path.join(MANIFEST_FILE), t.as_bytes()))
        .map_err(io_error(path))
}

/// An output folder catdog may write into: created or found empty (and marked as `kind`), or
/// already marked as `kind`.
#[derive(Debug)]
pub struct OwnedDir {
    pub(crate) path: PathBuf,
    /// It held a folder of this kind before this claim.
    pub existed: bool,
}

impl OwnedDir {
    /// Claims `path` for writing a folder of `kind`. An existing folder of the same kind is
    /// taken only when `replace` is true; anything else that is not empty is refused.
    pub fn claim(path: &Path, kind: FolderKind, replace: bool) -> Result<OwnedDir, FolderError> {
        let existed = Self::may_claim(path, kind, replace)?;
        std::fs::create_dir_all(path).map_err(io_error(path))?;
        let dir = OwnedDir {
            path: path.to_path_buf(),
            existed,
        };
        dir.record_writer(kind)?;
        Ok(dir)
    }

    /// Whether [`Self::claim`] would take `path`, without writing anything: `Ok(true)` when it
    /// holds a folder of this kind already, `Ok(false)` when it is missing or empty.
    pub fn may_claim(path: &Path, kind: FolderKind, replace: bool) -> Result<bool, FolderError> {
        Ok(match inspect(path)? {
            Ownership::Free => false,
            Ownership::Ours(m) if m.kind != kind => {
                return Err(FolderError::WrongKind {
                    path: path.to_path_buf(),
                    found: m.kind,
                    wanted: kind,
                })
            }
            Ownership::Ours(_) if replace => true,
            Ownership::Ours(_) => {
                return Err(FolderError::Exists {
                    path: path.to_path_buf(),
                    kind,
                    hint: "add --force to replace it (only catdog's own files are replaced), \
                           or choose another folder"
                        .into(),
                })
            }
            Ownership::Foreign(found) => {
                return Err(FolderError::NotOurs {
                    path: path.to_path_buf(),
                    found,
                })
            }
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds this process's write token to the manifest (creating it).
    pub(crate) fn record_writer(&self, kind: FolderKind) -> Result<(), FolderError> {
        let mut manifest = match inspect(&self.path)? {
            Ownership::Ours(m) => m,
            _ => Manifest {
                kind,
                writers: Vec::new(),
            },
        };
        if !manifest.writers.iter().any(|w| w == write_token()) {
            manifest.writers.push(write_token().to_string());
        }
        write_manifest(&self.path, &manifest)
    }

    /// Removes `name` if it is there: only for names catdog itself writes into this folder.
    pub fn remove_own_file(&self, name: &str) -> Result<(), FolderError> {
        let path = self.path.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Deletes the temporary files that recorded writers left in `dirs` (inside this folder);
    /// returns how many.
    pub(crate) fn sweep_partial_writes(&self, dirs: &[PathBuf]) -> usize {
        let writers = match inspect(&self.path) {
            Ok(Ownership::Ours(m)) => m.writers,
            _ => return 0,
        };
        let mut removed = 0;
        for dir in dirs {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                // A process killed while first writing the manifest left its update unfinished
                // before its token was recorded: the one partial file named after the manifest
                // itself (`..catdog.json.tmp-TOKEN.json`) in a folder the manifest proves ours.
                let manifest_update = name.starts_with(&format!(".{MANIFEST_FILE}.tmp-"));
                let ours = partial_write_token(&name)
                    .is_some_and(|t| manifest_update || writers.iter().any(|w| w == t));
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if ours && is_file && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}
