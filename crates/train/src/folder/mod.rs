//! Folders catdog writes: the run folder with its checkpoints, who owns a folder, the lock that
//! keeps one process per run, and outputs kept out of input folders.

pub(crate) mod lock;
pub(crate) mod owned_dir;
pub(crate) mod paths;
pub mod run_dir;
