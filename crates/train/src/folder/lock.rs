//! One training process per run folder.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

const LOCK_FILE: &str = ".lock";

/// Held while a process trains into a run folder; removed on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// The live process holding `dir`'s lock, if any. A lock left by a dead process is stale, and
/// so is one whose PID now belongs to another program (its start time differs).
pub fn lock_holder(dir: &Path) -> Option<u32> {
    let text = catdog_data::read_small_text(&dir.join(LOCK_FILE), 64).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let started: Option<u64> = fields.next().and_then(|s| s.parse().ok());
    let same_process = match (started, process_start_time(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    };
    (pid != std::process::id() && process_alive(pid) && !exited(pid) && same_process).then_some(pid)
}

/// Whether `pid` has exited and waits only to be reaped (a zombie, state `Z` or `X` in
/// `/proc/PID/stat`): signal 0 still reaches it, but it holds nothing. A rank that `mpirun`
/// killed stays one until its new parent reaps it.
fn exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// When `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`); `None` where
/// there is no procfs. Together with the PID it names one process: PIDs are reused.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // 0 and negative numbers name process groups to kill(2), never one process.
        let Ok(pid @ 1..) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

impl RunLock {
    /// Takes the lock, taking over a stale one. `Err(pid)` names the live holder.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let pid = std::process::id();
                    let _ = match process_start_time(pid) {
                        Some(t) => write!(f, "{pid} {t}"),
                        None => write!(f, "{pid}"),
                    };
                    let _ = f.sync_all();
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if let Some(pid) = lock_holder(dir) {
                        return Err(LockError::Held {
                            dir: dir.to_path_buf(),
                            pid,
                        });
                    }
                    let _ = std::fs::remove_file(&path); // stale: its process is gone
                }
                Err(e) => {
                    return Err(LockError::Io {
                        dir: dir.to_path_buf(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Err(LockError::Io {
            dir: dir.to_path_buf(),
            reason: "lock file keeps reappearing".into(),
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{dir} is in use by another catdog training process (pid {pid}); wait for it or choose another --out")]
    Held { dir: PathBuf, pid: u32 },
    #[error("cannot lock {dir}: {reason}")]
    Io { dir: PathBuf, reason: String },
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lock_held_by_a_zombie_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // A child that exits at once and is not reaped until the end of the test.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let zombie = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            super::exited(pid)
        });
        assert!(zombie, "the child did not become a zombie");
        std::fs::write(dir.path().join(super::LOCK_FILE), format!("{pid}\n")).unwrap();
        assert_eq!(super::lock_holder(dir.path()), None);
        child.wait().unwrap();
    }

    use super::*;

    #[test]
    fn a_lock_naming_no_single_live_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(LOCK_FILE);
        // 0 would be this process group to kill(2), which always exists; the other values name
        // no process (or no valid PID).
        for text in ["0", "0 123", "4294967295", "-1", "", "junk"] {
            std::fs::write(&lock, text).unwrap();
            assert_eq!(lock_holder(dir.path()), None, "{text:?}");
        }
        // A lock of this very process is its own, not another holder.
        std::fs::write(&lock, std::process::id().to_string()).unwrap();
        assert_eq!(lock_holder(dir.path()), None);
        // A FIFO in the lock's place is read without waiting for a writer.
        #[cfg(target_os = "linux")]
        {
            std::fs::remove_file(&lock).unwrap();
            let made = std::process::Command::new("mkfifo")
                .arg(&lock)
                .status()
                .unwrap();
            assert!(made.success());
            assert_eq!(lock_holder(dir.path()), None);
        }
    }
}
