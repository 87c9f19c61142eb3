//! The [`Collective`] of processes started by `mpirun` (rsmpi over the system's MPI library).

use std::sync::Mutex;

use mpi::{
    collective::SystemOperation,
    environment::Universe,
    topology::{Communicator, SimpleCommunicator},
    traits::{CommunicatorCollectives, Root},
    Threading,
};

use super::Collective;

/// Why MPI could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MpiError {
    #[error("MPI could not be initialised (is this process started by mpirun?)")]
    Init,
    #[error(
        "the MPI library offers thread level {0:?}; catdog needs at least Serialized (one MPI \
         call at a time from any thread)"
    )]
    Threading(Threading),
}

/// `MPI_COMM_WORLD`, when this process is one of several started by `mpirun`.
pub struct MpiWorld {
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialised at `MPI_THREAD_SERIALIZED` or above (checked in `init`), which
// allows MPI calls from any thread as long as no two run at once; every call goes through the
// `world` mutex, so none overlap. `Universe` finalises MPI once, when the last owner drops it.
unsafe impl Send for MpiWorld {}
// SAFETY: as for `Send`: shared access only reaches MPI through the mutex.
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    /// MPI's world when `mpirun` (OpenMPI or MPICH's Hydra) started this process, `None` when
    /// it runs on its own (MPI is then never initialised).
    pub fn init() -> Result<Option<MpiWorld>, MpiError> {
        let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if !launched {
            return Ok(None);
        }
        let (universe, threading) =
            mpi::initialize_with_threading(Threading::Serialized).ok_or(MpiError::Init)?;
        if threading < Threading::Serialized {
            return Err(MpiError::Threading(threading));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Some(MpiWorld {
            world: Mutex::new(world),
            rank,
            size,
            _universe: universe,
        }))
    }

    /// Ends every rank's process at once (`MPI_Abort`): a rank that fails must not leave the
    /// others waiting in a collective.
    pub fn abort(&self, code: i32) -> ! {
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        world.abort(code)
    }

    fn with<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        f(&self.world.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::fmt::Debug for MpiWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MPI rank {} of {}", self.rank, self.size)
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum(&self, values: &mut [f32]) {
        let send = values.to_vec();
        self.with(|w| w.all_reduce_into(&send[..], values, SystemOperation::sum()));
    }

    fn sum_f64(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.with(|w| w.all_reduce_into(&send[..], values, SystemOperation::sum()));
    }

    fn broadcast_f64(&self, values: &mut [f64]) {
        self.with(|w| w.process_at_rank(0).broadcast_into(values));
    }
}
