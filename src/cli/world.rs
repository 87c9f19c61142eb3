//! `catdog train` as one rank of several under `mpirun` (a build with the cargo feature `mpi`):
//! rank 0 writes the run folder the user named; every other rank works in a private scratch
//! folder (a copy of the run folder when resuming) that it removes when it ends. A rank that
//! fails ends the whole job at once (`MPI_Abort`), so that no rank waits for it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use catdog_train::distributed::Collective;

use super::Failure;

/// This process's place in a data-parallel run.
pub struct World {
    #[cfg(feature = "mpi")]
    mpi: Option<Arc<catdog_train::distributed::mpi::MpiWorld>>,
    /// A rank above 0: its scratch folder, removed at the end.
    scratch: Option<PathBuf>,
}

impl World {
    /// MPI's world when `mpirun` started this process (with the `mpi` feature), else one
    /// process alone.
    pub fn open() -> Result<World, Failure> {
        #[cfg(feature = "mpi")]
        {
            let mpi = catdog_train::distributed::mpi::MpiWorld::init()?.map(Arc::new);
            Ok(World { mpi, scratch: None })
        }
        #[cfg(not(feature = "mpi"))]
        Ok(World { scratch: None })
    }

    /// The collective handed to training, when there are several ranks.
    pub fn collective(&self) -> Option<Arc<dyn Collective>> {
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.mpi {
            if mpi.size() > 1 {
                return Some(mpi.clone() as Arc<dyn Collective>);
            }
        }
        None
    }

    pub fn rank(&self) -> usize {
        self.collective().map_or(0, |w| w.rank())
    }

    /// Where this rank writes its run: `out` on rank 0, a scratch folder on the others (a copy
    /// of `out` when resuming). Every rank returns only once all have their folder.
    pub fn run_folder(&mut self, out: &Path, resume: bool) -> Result<PathBuf, Failure> {
        let Some(world) = self.collective() else {
            return Ok(out.to_path_buf());
        };
        let folder = if world.rank() == 0 {
            out.to_path_buf()
        } else {
            let scratch = std::env::temp_dir().join(format!(
                "catdog-rank{}-{}",
                world.rank(),
                std::process::id()
            ));
            if resume {
                copy_run(out, &scratch).map_err(|e| {
                    anyhow::anyhow!(
                        "rank {} cannot read the run folder {} to resume from: {e} (every rank \
                         needs it at the same path: run on one machine or a shared file system)",
                        world.rank(),
                        out.display()
                    )
                })?;
            }
            self.scratch = Some(scratch.clone());
            scratch
        };
        // A barrier: rank 0 starts changing its folder only after the others copied it.
        world.sum(&mut [0.0]);
        Ok(folder)
    }

    /// Ends every rank when this one failed (with several ranks); returns otherwise.
    pub fn abort_on_failure(&self, failure: &Failure) {
        #[cfg(feature = "mpi")]
        if let (Some(mpi), Some(_)) = (&self.mpi, self.collective()) {
            let (Failure::Usage(e) | Failure::Runtime(e)) = failure;
            eprintln!(
                "error on rank {}: {}",
                mpi.rank(),
                catdog_data::printable(&format!("{e:#}"))
            );
            mpi.abort(1);
        }
        let _ = failure;
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Only the scratch folder this rank made itself.
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// The files of run folder `from` (its lock excepted) copied into a new folder `to`.
fn copy_run(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (name, kind) = (entry.file_name(), entry.file_type()?);
        if name == ".lock" || kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            copy_run(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}
