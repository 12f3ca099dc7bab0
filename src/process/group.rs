//! Process groups and `/proc`: signal a whole group, list its members, tell live from dead.
//!
//! Owns the raw `killpg` call and the parsing of `/proc/PID/stat`. It must never signal a pgid of
//! 0 or 1 (that would be orch's own group or init's): those are refused.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Sends `sig` to every process of group `pgid`. A group that no longer exists is not an error.
///
/// Refuses pgids 0 and 1 and any that do not fit a pid, with `InvalidInput`.
pub fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let raw = checked_pgid(pgid)?;
    match killpg(Pid::from_raw(raw), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// The pids of the live (not zombie) processes whose process group is `pgid`, sorted.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| read_stat(pid).is_some_and(|stat| stat.pgrp == pgid && !stat.is_dead()))
        .collect();
    members.sort_unstable();
    members
}

/// True when `pid` exists and is not a zombie (a zombie has exited; it only waits to be reaped).
pub fn pid_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|stat| !stat.is_dead())
}

pub(crate) fn checked_pgid(pgid: u32) -> io::Result<i32> {
    match i32::try_from(pgid) {
        Ok(raw) if raw > 1 => Ok(raw),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        )),
    }
}

/// The fields of `/proc/PID/stat` the process module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) state: char,
    pub(crate) pgrp: u32,
    /// When the process started, in clock ticks since boot.
    pub(crate) start_ticks: u64,
}

impl Stat {
    pub(crate) fn is_dead(self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `pid (comm) state ppid pgrp ...`; `comm` may hold spaces and parentheses, so the fields
/// are read after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    // Field 22 of the file, the 17th after pgrp (absent in truncated test input).
    let start_ticks = fields.nth(16).and_then(|t| t.parse().ok()).unwrap_or(0);
    Some(Stat {
        state,
        pgrp,
        start_ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let stat = parse_stat("42 (a) b (c)) S 1 40 40 0 -1 4194560").expect("valid stat");
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                pgrp: 40,
                start_ticks: 0,
            }
        );
        let full = "9 (sleep) S 8 9 8 0 -1 4194304 90 0 0 0 0 0 0 0 20 0 1 0 123456 2469888 238";
        assert_eq!(parse_stat(full).expect("valid stat").start_ticks, 123456);
        assert!(!stat.is_dead());
        let zombie = parse_stat("7 (sh) Z 1 7 7").expect("valid stat");
        assert!(zombie.is_dead());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn refuses_dangerous_pgids() {
        assert!(signal_group(0, Signal::SIGKILL).is_err());
        assert!(signal_group(1, Signal::SIGKILL).is_err());
        assert!(signal_group(u32::MAX, Signal::SIGKILL).is_err());
    }

    #[test]
    fn sees_itself() {
        let me = std::process::id();
        assert!(pid_alive(me));
        let pgrp = read_stat(me).expect("own stat").pgrp;
        assert!(group_members(pgrp).contains(&me));
    }
}
