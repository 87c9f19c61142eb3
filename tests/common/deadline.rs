//! The one way tests run a child process with a deadline (and, for hostile inputs, a memory
//! ceiling): output through files, so a chatty hung child never blocks on a full pipe; reaped
//! with `wait4`, which also reports the child's own peak memory.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// How a limited run ended.
pub struct Limited {
    /// Exit status and both streams (of the killed process too).
    pub output: Output,
    /// Peak resident set size, bytes (`ru_maxrss`).
    pub peak: u64,
    pub seconds: f64,
    /// Why it was killed: past the deadline, or above the memory ceiling.
    pub killed: Option<String>,
}

/// Runs `command` (stdin closed), killing it once it runs past `deadline` or its resident
/// memory passes `runaway` bytes.
pub fn run_limited(mut command: Command, deadline: Duration, runaway: u64) -> Limited {
    use std::os::unix::process::ExitStatusExt;
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .expect("the child starts");
    let pid = child.id() as libc::pid_t;
    // Reaped here, not by `Child::wait`: dropping a `Child` neither waits nor kills.
    drop(child);
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = None;
    loop {
        // SAFETY: `pid` is our unreaped child; status and usage are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        let rss = resident_bytes(pid);
        if killed.is_none() && (start.elapsed() > deadline || rss > runaway) {
            killed = Some(if rss > runaway {
                format!("killed at {} MiB resident", rss >> 20)
            } else {
                format!("killed after {deadline:?}: hung")
            });
            // SAFETY: not yet reaped, so `pid` is still our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Limited {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: super::read_back(out),
            stderr: super::read_back(err),
        },
        peak: usage.ru_maxrss as u64 * 1024,
        seconds: start.elapsed().as_secs_f64(),
        killed,
    }
}

/// VmRSS of a running process, 0 when it cannot be read.
fn resident_bytes(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// The exit status of a running child once it ends, `None` when it is still running after
/// `deadline` (left running: the caller decides).
pub fn wait_within(
    child: &mut std::process::Child,
    deadline: Duration,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
