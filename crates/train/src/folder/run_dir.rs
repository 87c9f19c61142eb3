//! The run folder: its files (only this module names them), lock, checkpoints and resume. A run
//! folder is an [`OwnedDir`] of kind [`FolderKind::Run`].

use std::path::{Path, PathBuf};

use burn::{module::Module, optim::ModuleOptimizer, tensor::Device};
use catdog_data::{read_small, write_atomic, write_atomic_with, MAX_CONFIG_BYTES, MAX_STATE_BYTES};
use catdog_model::{Classifier, ModelConfig};
use serde::{Deserialize, Serialize};

use catdog_infer::model_io::{
    load_weights, save_weights, weights_checksum, write_json, Cause, ModelIoError, CONFIG_FILE,
    WEIGHTS_FILE,
};

pub use crate::folder::owned_dir::{FolderError, FolderKind, OwnedDir, MANIFEST_FILE};
use crate::{
    checkpoint::{Checkpoint, CheckpointSink, TrainState},
    folder::{
        lock::RunLock,
        owned_dir::{inspect, io_error, Ownership},
    },
    report::{files::ReportFiles, summary::Summary},
    RunConfig,
};

const BEST_FILE: &str = "best.bpk";
const METRICS_FILE: &str = "metrics.csv";
const TIMING_FILE: &str = "timing.csv";
const SUMMARY_FILE: &str = "summary.json";
const CHECKPOINTS: &str = "checkpoints";
const LATEST: &str = "latest.json";
const CHECKPOINT_MODEL: &str = "model.bpk";
const CHECKPOINT_OPTIM: &str = "optim.bpk";
const CHECKPOINT_AVERAGE: &str = "average.bpk";
const CURVES_FILE: &str = "curves.png";

/// `checkpoints/latest.json`: the commit point of the last checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Latest {
    dir: String,
    state: TrainState,
}

/// A run folder, claimed and locked by this process: the only place that names its files.
///
/// Layout: `config.json`, `model.bpk` (the best epoch's weights), `best.bpk`, `metrics.csv`,
/// `timing.csv`, `summary.json`, the plots, `predictions.csv` and the galleries of the final
/// evaluation, and `checkpoints/epoch-NNNN/{model,optim}.bpk`
/// committed by `checkpoints/latest.json`.
#[derive(Debug)]
pub struct RunDir {
    dir: OwnedDir,
    _lock: RunLock,
    /// Partial files of interrupted writes removed when the folder was opened.
    pub swept: usize,
}

/// What a run folder opened to continue it holds.
#[derive(Debug)]
pub struct Resumed {
    pub config: RunConfig,
    /// The last committed checkpoint's progress; `None` when the run stopped before its first
    /// checkpoint (it starts over).
    pub state: Option<TrainState>,
    checkpoint: Option<String>,
}

impl RunDir {
    /// Claims `path` for a new run. A folder holding one of catdog's runs is refused unless
    /// `force` (or the run never reached its first checkpoint, e.g. it failed on bad data); then
    /// only the run's own files are replaced.
    pub fn create(path: &Path, force: bool) -> Result<RunDir, FolderError> {
        RunDir::may_create(path, force)?;
        let run = RunDir::lock(OwnedDir::claim(path, FolderKind::Run, true)?)?;
        // Starting over: nothing of the previous run may be mistaken for this one's.
        for name in [
            CONFIG_FILE,
            WEIGHTS_FILE,
            BEST_FILE,
            METRICS_FILE,
            TIMING_FILE,
            SUMMARY_FILE,
            CURVES_FILE,
        ]
        .into_iter()
        .chain(ReportFiles::NAMES)
        {
            run.dir.remove_own_file(name)?;
        }
        run.clear_checkpoints()?;
        Ok(run)
    }

    /// Whether [`Self::create`] would take `path`, checked without writing anything.
    pub fn may_create(path: &Path, force: bool) -> Result<(), FolderError> {
        let existed = OwnedDir::may_claim(path, FolderKind::Run, true)?;
        let unfinished =
            path.join(CHECKPOINTS).join(LATEST).exists() || path.join(SUMMARY_FILE).exists();
        if existed && unfinished && !force {
            return Err(FolderError::Exists {
                path: path.to_path_buf(),
                kind: FolderKind::Run,
                hint: format!(
                    "continue it with --resume {p}, start it over with --force (only catdog's own \
                     files are replaced), or choose another --out",
                    p = path.display()
                ),
            });
        }
        if existed {
            no_link(&path.join(CHECKPOINTS))?;
        }
        Ok(())
    }

    /// The `config.json` of the run in `path` if it can be continued, read without writing
    /// anything.
    pub fn resumable(path: &Path) -> Result<RunConfig, FolderError> {
        let not_a_run = |source: Cause| FolderError::NotARun {
            path: path.to_path_buf(),
            source,
        };
        match inspect(path)? {
            Ownership::Ours(m) if m.kind == FolderKind::Run => {}
            Ownership::Ours(m) => {
                return Err(FolderError::WrongKind {
                    path: path.to_path_buf(),
                    found: m.kind,
                    wanted: FolderKind::Run,
                })
            }
            Ownership::Free => return Err(not_a_run("it is empty or missing".into())),
            Ownership::Foreign(found) => {
                return Err(not_a_run(
                    format!("no {MANIFEST_FILE} (it holds {found})").into(),
                ))
            }
        }
        let config = RunConfig::read(path).map_err(|e| not_a_run(e.into()))?;
        if config.train.is_none() {
            return Err(not_a_run("config.json has no training settings".into()));
        }
        no_link(&path.join(CHECKPOINTS))?;
        Ok(config)
    }

    /// Opens the run in `path` to continue it: its config and last checkpoint.
    pub fn resume(path: &Path) -> Result<(RunDir, Resumed), FolderError> {
        let not_a_run = |source: Cause| FolderError::NotARun {
            path: path.to_path_buf(),
            source,
        };
        let config = RunDir::resumable(path)?;
        let dir = OwnedDir {
            path: path.to_path_buf(),
            existed: true,
        };
        let run = RunDir::lock(dir)?;
        let latest_path = run.checkpoints().join(LATEST);
        // No latest.json: no epoch was committed yet. One that cannot be read is an error,
        // never a silent start from scratch.
        let unreadable = |e: String| not_a_run(format!("{}: {e}", latest_path.display()).into());
        let latest: Option<Latest> = match read_small(&latest_path, MAX_STATE_BYTES) {
            Ok(bytes) => {
                Some(serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(unreadable(e.to_string())),
        };
        let resumed = Resumed {
            config,
            state: latest.as_ref().map(|l| l.state.clone()),
            checkpoint: latest.map(|l| l.dir),
        };
        Ok((run, resumed))
    }

    /// Takes the lock, records this process as a writer and sweeps the partial writes of
    /// earlier ones: holding the lock, no other process writes here.
    fn lock(dir: OwnedDir) -> Result<RunDir, FolderError> {
        let lock = RunLock::acquire(dir.path())?;
        dir.record_writer(FolderKind::Run)?;
        let checkpoints = dir.path.join(CHECKPOINTS);
        no_link(&checkpoints)?;
        std::fs::create_dir_all(&checkpoints).map_err(io_error(&checkpoints))?;
        let mut dirs = vec![dir.path.clone(), checkpoints.clone()];
        for entry in std::fs::read_dir(&checkpoints)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
        let swept = dir.sweep_partial_writes(&dirs);
        Ok(RunDir {
            dir,
            _lock: lock,
            swept,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Writes the run's `config.json`.
    pub fn write_config(&self, config: &RunConfig) -> Result<(), ModelIoError> {
        write_json(&self.path().join(CONFIG_FILE), config)
    }
    /// Keeps the best epoch's weights so far (`best.bpk`).
    pub fn save_best(&self, model: &Classifier) -> Result<(), ModelIoError> {
        save_weights(model, &self.path().join(BEST_FILE))
    }
    /// The best epoch's weights, in inference mode.
    pub fn load_best(
        &self,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<Classifier, ModelIoError> {
        Ok(load_weights(config, &self.path().join(BEST_FILE), device)?.valid())
    }
    /// Writes the run's model (`model.bpk`), what `predict`, `eval` and `export` load; returns
    /// its checksum for `config.json`.
    pub fn save_model(&self, model: &Classifier) -> Result<u32, ModelIoError> {
        save_weights(model, &self.weights_file())?;
        weights_checksum(&self.weights_file())
    }
    /// The run's model file.
    pub fn weights_file(&self) -> PathBuf {
        self.path().join(WEIGHTS_FILE)
    }
    /// Writes `metrics.csv` and `timing.csv` (their text, see `report::metrics`).
    pub fn write_history(&self, metrics_csv: &str, timing_csv: &str) -> Result<(), ModelIoError> {
        self.write_text(&self.path().join(METRICS_FILE), metrics_csv)?;
        self.write_text(&self.path().join(TIMING_FILE), timing_csv)
    }
    pub fn write_summary(&self, summary: &Summary) -> Result<(), ModelIoError> {
        write_json(&self.path().join(SUMMARY_FILE), summary)
    }
    pub fn curves_file(&self) -> PathBuf {
        self.path().join(CURVES_FILE)
    }
    /// Where the run's final evaluation goes.
    pub fn report_files(&self) -> ReportFiles {
        ReportFiles::in_folder(self.path())
    }

    /// The `summary.json` of the run in `dir`, if it finished and the file is readable.
    pub fn read_summary(dir: &Path) -> Option<Summary> {
        let bytes = read_small(&dir.join(SUMMARY_FILE), MAX_CONFIG_BYTES).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
    fn checkpoints(&self) -> PathBuf {
        self.path().join(CHECKPOINTS)
    }

    fn clear_checkpoints(&self) -> Result<(), FolderError> {
        let root = self.checkpoints();
        for entry in std::fs::read_dir(&root).map_err(io_error(&root))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if name == LATEST {
                std::fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
            } else if is_dir && is_checkpoint_dir(&name) {
                remove_checkpoint(&entry.path()).map_err(io_error(&entry.path()))?;
            }
        }
        Ok(())
    }

    /// Writes `text` to a file of the run atomically.
    fn write_text(&self, path: &Path, text: &str) -> Result<(), ModelIoError> {
        write_atomic(path, text.as_bytes()).map_err(|e| ModelIoError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}

impl CheckpointSink for RunDir {
    /// Saves the model and optimiser after an epoch; `latest.json` commits it, then older
    /// checkpoints are removed.
    fn save_checkpoint(
        &self,
        model: &Classifier,
        average: Option<&Classifier>,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<(), ModelIoError> {
        let root = self.checkpoints();
        let name = format!("epoch-{:04}", state.epoch);
        let dir = root.join(&name);
        let write_error = |path: &Path, e: std::io::Error| ModelIoError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
        save_weights(model, &dir.join(CHECKPOINT_MODEL))?;
        if let Some(average) = average {
            save_weights(average, &dir.join(CHECKPOINT_AVERAGE))?;
        }
        let optim_path = dir.join(CHECKPOINT_OPTIM);
        write_atomic_with(&optim_path, |tmp| {
            optim
                .save(tmp)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .map_err(|e| write_error(&optim_path, e))?;
        write_json(
            &root.join(LATEST),
            &Latest {
                dir: name.clone(),
                state: state.clone(),
            },
        )?;
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && is_checkpoint_dir(&n) && n != name {
                let _ = remove_checkpoint(&entry.path());
            }
        }
        Ok(())
    }
}

/// Removes the files catdog writes into a checkpoint folder, then the folder if that left it
/// empty: anything else found there (a user's file) stays, with its folder.
fn remove_checkpoint(dir: &Path) -> std::io::Result<()> {
    for name in [CHECKPOINT_MODEL, CHECKPOINT_OPTIM, CHECKPOINT_AVERAGE] {
        match std::fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        other => other,
    }
}

/// Refuses a run's subfolder that is a symbolic link: catdog writes and deletes a run's files
/// only inside the run's own folder, never wherever a link leads.
fn no_link(path: &Path) -> Result<(), FolderError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(FolderError::Link {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

fn is_checkpoint_dir(name: &str) -> bool {
    name.strip_prefix("epoch-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl RunDir {
    /// Loads the last checkpoint's model and optimiser state, if there is one, and its weight
    /// average (inference mode) if it has one.
    pub fn load_checkpoint(
        &self,
        resumed: &Resumed,
        ad: &Device,
        optim: ModuleOptimizer,
    ) -> Result<Option<Checkpoint>, ModelIoError> {
        let Some(name) = &resumed.checkpoint else {
            return Ok(None);
        };
        let dir = self.checkpoints().join(name);
        let model = load_weights(&resumed.config.spec.model, &dir.join(CHECKPOINT_MODEL), ad)?;
        let optim_path = dir.join(CHECKPOINT_OPTIM);
        let optim = optim
            .load(&optim_path)
            .map_err(|e| ModelIoError::BadWeights {
                path: optim_path,
                source: format!("optimiser state: {e}").into(),
            })?;
        let average_path = dir.join(CHECKPOINT_AVERAGE);
        let average = match average_path.exists() {
            true => Some(load_weights(&resumed.config.spec.model, &average_path, ad)?.valid()),
            false => None,
        };
        Ok(Some(Checkpoint {
            model,
            average,
            optim,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_dir_names() {
        assert!(is_checkpoint_dir("epoch-0003"));
        assert!(!is_checkpoint_dir("epoch-"));
        assert!(!is_checkpoint_dir("epoch-notes"));
        assert!(!is_checkpoint_dir("my-epoch-0001"));
    }
}
