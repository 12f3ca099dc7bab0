//! Child processes: spawn each in its own process group, drain both pipes into log files and framed
//! lines, stop a group with the SIGINT → SIGTERM → SIGKILL ladder, detect and kill leaked
//! grandchildren, and keep a guardian process that kills every group if orch itself dies.
//!
//! This is the only module in orch that calls libc/nix signal and process-group functions; every
//! other module goes through the API here. It must never print, decide policy (timeouts, budgets)
//! or interpret what a child writes: it delivers raw bytes and exit facts, nothing more.
//!
//! Invariant: a step's processes never outlive the step. When a leader exits, whatever is left in
//! its group, its cgroup, or carries its token (see `contain`) is reported as leaked and SIGKILLed; a dropped [`Child`] SIGKILLs its group; and the
//! [`Guardian`] SIGKILLs every registered group when orch goes away, even by SIGKILL.

mod child;
mod contain;
mod drain;
mod frame;
mod group;
pub mod guardian;
mod launch;
mod lines;
mod monitor;
pub mod relay;
pub mod scancel;
mod stop;
mod vfork;
pub mod wrapper;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use child::{Child, spawn};
pub use contain::TOKEN_ENV;
pub use drain::LogFault;
pub use group::{group_members, pid_alive, signal_group};
pub use guardian::Guardian;
pub use launch::prepare_signals;
pub use lines::Lines;
pub use nix::sys::signal::Signal;
pub use stop::Stopper;

/// Everything needed to start one child; plain data, built by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// The program to run, looked up in `PATH` if it has no slash.
    pub program: PathBuf,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// Working directory of the child.
    pub cwd: PathBuf,
    /// Variables added to (or overriding) the environment orch inherited.
    pub env: Vec<(OsString, OsString)>,
    /// File the raw stdout bytes are appended to, created at the first byte (no output, no file).
    pub stdout_log: PathBuf,
    /// File the raw stderr bytes are appended to, created at the first byte (may equal
    /// `stdout_log`).
    pub stderr_log: PathBuf,
    /// Cap on the bytes of one delivered [`Line`]; longer lines arrive truncated.
    pub max_line_bytes: usize,
}

/// Which pipe a [`Line`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

/// One line of output, without its trailing `\n`; bytes are passed through unchanged (not UTF-8
/// checked, `\r` kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The pipe it came from.
    pub stream: Stream,
    /// The bytes of the line, at most `max_line_bytes` of them.
    pub bytes: Vec<u8>,
    /// True when the line was longer than `max_line_bytes` and its tail was discarded.
    pub truncated: bool,
}

impl Line {
    /// The line as text for people: at most `max_bytes` of its bytes (a character cut in two at
    /// the end is dropped), invalid UTF-8 replaced by `�`, trailing whitespace trimmed. It copies
    /// at most `max_bytes`, so showing a line of many megabytes does not cost a second buffer of
    /// that size (the line itself is dropped once shown; the log has every byte).
    pub fn display_text(&self, max_bytes: usize) -> String {
        let mut head = &self.bytes[..self.bytes.len().min(max_bytes)];
        if head.len() < self.bytes.len() {
            if let Err(err) = std::str::from_utf8(head) {
                if err.error_len().is_none() {
                    head = &head[..err.valid_up_to()];
                }
            }
        }
        let mut text = String::from_utf8_lossy(head).into_owned();
        text.truncate(text.trim_end().len());
        text
    }
}

/// A rung of the stop ladder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StopStage {
    /// SIGINT was sent to the group.
    Int,
    /// SIGTERM was sent to the group.
    Term,
    /// SIGKILL was sent to the group.
    Kill,
}

/// The grace periods of the stop ladder: SIGINT, wait `grace_int`, SIGTERM, wait `grace_term`,
/// SIGKILL; each signal goes to the whole group and the ladder ends as soon as the leader exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopLadder {
    /// How long the leader may take to exit after SIGINT.
    pub grace_int: Duration,
    /// How long the leader may take to exit after SIGTERM.
    pub grace_term: Duration,
}

impl Default for StopLadder {
    fn default() -> Self {
        // Claude Code writes its final `result` (with the cost) on SIGINT; give it time to do so.
        StopLadder {
            grace_int: Duration::from_secs(10),
            grace_term: Duration::from_secs(5),
        }
    }
}

/// How a child ended, known once its leader exited and both pipes were drained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// The leader's exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that killed the leader, if one did.
    pub signal: Option<i32>,
    /// Pids of the step's processes still alive when the leader exited, found before anything
    /// was killed: members of its group, and processes that left the group but sit in the step's
    /// cgroup or carry its `ORCH_STEP_TOKEN`. All were SIGKILLed.
    pub leaked: Vec<u32>,
    /// The last rung of the stop ladder sent before the leader exited, if any.
    pub stopped_by: Option<StopStage>,
    /// Output that did not reach the log files (a full disk), per pipe, with the final counts.
    #[serde(default)]
    pub log_faults: Vec<LogFault>,
}

impl Exit {
    /// True when the leader exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// CPU time (user + system) this process has used itself, children excluded.
pub fn own_cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Raises this process's open-file limit to its hard limit: each running step holds four
/// descriptors (two pipes, two logs), so a thousand agents need more than the usual 1024.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bytes: &[u8]) -> Line {
        Line {
            stream: Stream::Stdout,
            bytes: bytes.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn display_text_copies_at_most_its_cap() {
        assert_eq!(line(b"hello  \r").display_text(100), "hello");
        assert_eq!(line(b"abcdef").display_text(3), "abc");
        // "é" is two bytes: a cut through it drops the half, not shows a replacement.
        assert_eq!(line("aé".as_bytes()).display_text(2), "a");
        assert_eq!(line(b"a\xffb").display_text(10), "a\u{fffd}b");
        let huge = line(&vec![b'x'; 1 << 20]);
        assert_eq!(huge.display_text(64).len(), 64);
    }
}
