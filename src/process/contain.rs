//! Containment beyond the process group: finding (and killing) every process a step left behind,
//! including those that called `setsid` and so escaped every group signal.
//!
//! Two mechanisms, chosen once per run:
//! - **cgroup v2**, where orch can create a child of its own cgroup (a `cgroup2` mount in
//!   `/proc/self/mountinfo`, and root or a delegated subtree): each run gets a cgroup
//!   `orch-<pid in hex>-<time>` under orch's own, each step a child `s<n>` of it. The step's process writes
//!   itself into `s<n>/cgroup.procs` between clone and exec, so nothing it forks is ever outside.
//!   At the step's end `cgroup.procs` lists what is left and `cgroup.kill` kills all of it; the
//!   emptied cgroup then serves a later step (a fresh one costs its first process a wait).
//! - **the step token**, always: every step's environment carries `ORCH_STEP_TOKEN=<run>.<n>`,
//!   inherited by everything it starts. Without cgroups, the step's end scans `/proc` once:
//!   members of the step's group, and processes started after the step whose initial
//!   environment (`/proc/PID/environ`) carries the token, are the step's leftovers.
//!
//! What cannot be caught without cgroups: a process that left the group (`setsid`, `setpgid`)
//! *and* was exec'd with an environment without the token (`env -i`), or whose environment
//! orch may not read (another user's). Setting `ORCH_CGROUP=off` forces the fallback.
//!
//! This module must never kill a process it did not find in the step's group, cgroup or with
//! the step's token, and never fail a step because containment is unavailable: it degrades.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use memchr::memmem;

use super::group::{Stat, read_stat};

/// The variable that ties a process to its step.
pub const TOKEN_ENV: &str = "ORCH_STEP_TOKEN";
/// Set to `off` to run without cgroups even where they are usable.
const CGROUP_SWITCH: &str = "ORCH_CGROUP";
/// A step that ran this long gets a scan of every pid: the pid counter (32768 values at the
/// least) cannot wrap all the way round in a second, but might over hours.
const FULL_SCAN_AFTER: Duration = Duration::from_secs(1);
/// Up to this many new pids are probed one by one rather than found by listing `/proc`.
const PROBE_MAX: u32 = 256;

/// One run's containment: the token prefix and, when usable, the run's cgroup.
#[derive(Debug)]
pub(crate) struct Containment {
    run_token: String,
    next: AtomicU64,
    cgroup: Option<PathBuf>,
    /// Step cgroups whose step ended and left them empty, for the next steps: the first
    /// process of a fresh cgroup waits ~0.65 ms to get in, of a used one ~0.03 ms (benchmarks.md).
    free: Mutex<Vec<StepCgroup>>,
}

/// A step's cgroup: its folder, its `cgroup.procs` open for the child's write, and the two files
/// read at every step's end kept open, re-read from offset 0 (a kernfs file shows its current
/// state at each read from the start; opening one costs several times the read).
#[derive(Debug)]
pub(crate) struct StepCgroup {
    pub(crate) dir: PathBuf,
    pub(crate) procs: File,
    events: File,
    stat: File,
}

impl StepCgroup {
    /// Makes cgroup `dir` and opens its files.
    fn create(dir: PathBuf) -> io::Result<StepCgroup> {
        std::fs::create_dir(&dir)?;
        let open = |name| File::open(dir.join(name));
        Ok(StepCgroup {
            procs: OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?,
            events: open("cgroup.events")?,
            stat: open("cgroup.stat")?,
            dir,
        })
    }

    /// Whether a live process is in the cgroup or below (a zombie is not); `None` when
    /// `cgroup.events` cannot be read.
    pub(crate) fn populated(&self) -> Option<bool> {
        let mut buf = [0; 256];
        read_at_start(&self.events, &mut buf).map(|text| has_line(text, b"populated 1"))
    }

    /// Whether the cgroup is as a fresh one: empty, without descendants (a step as root may
    /// make some), and not frozen (an empty cgroup asked to freeze shows `frozen 1`).
    fn reusable(&self) -> bool {
        let mut buf = [0; 256];
        let Some(events) = read_at_start(&self.events, &mut buf) else {
            return false;
        };
        let (empty, thawed) = (
            has_line(events, b"populated 0"),
            has_line(events, b"frozen 0"),
        );
        let mut buf = [0; 4096];
        empty
            && thawed
            && read_at_start(&self.stat, &mut buf).is_some_and(|s| has_line(s, b"nr_descendants 0"))
    }
}

/// The whole of a small kernfs file, read from its start into `buf`; `None` if it cannot be read
/// or does not fit. One read: a kernfs file is a `seq_file`, which fills the buffer until it is
/// full or the text ends, so a read that leaves room has it all (a second read to see the end
/// cost a system call at every step's end, three per step).
fn read_at_start<'a>(file: &File, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, 0) {
            Ok(n) if n < buf.len() => return Some(&buf[..n]),
            Ok(_) => return None,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Whether `text` has the line `line`.
fn has_line(text: &[u8], line: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|l| l == line)
}

/// What ties one step's processes together besides its group.
#[derive(Debug)]
pub(crate) struct StepScope {
    /// `ORCH_STEP_TOKEN`'s value for this step.
    pub(crate) token: String,
    /// The step's cgroup and its `cgroup.procs`, open for the child's pre-exec write.
    pub(crate) cgroup: Option<StepCgroup>,
    /// Just before the step was spawned.
    started: Instant,
    /// The last pid the kernel handed out then (`ns_last_pid`), if known.
    last_pid: Option<u32>,
}

impl Containment {
    /// A run's containment; creates the run's cgroup when the machine allows it.
    pub(crate) fn new() -> Containment {
        Containment::new_with(true)
    }

    fn new_with(try_cgroup: bool) -> Containment {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let run_token = format!("{:x}-{:x}", std::process::id(), nanos & 0xffff_ffff_ffff);
        let cgroup = if !try_cgroup || std::env::var(CGROUP_SWITCH).is_ok_and(|v| v == "off") {
            None
        } else {
            own_cgroup_dir().and_then(|own| {
                // Moving a process needs write access to the cgroup.procs of the common
                // ancestor, orch's own cgroup: without it the steps' writes would fail.
                let movable =
                    nix::unistd::access(&own.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK);
                if movable.is_err() {
                    return None;
                }
                let dir = own.join(format!("orch-{run_token}"));
                match std::fs::create_dir(&dir) {
                    Ok(()) => Some(dir),
                    Err(err) => {
                        tracing::debug!(dir = %dir.display(), %err, "no cgroup for this run");
                        None
                    }
                }
            })
        };
        Containment {
            run_token,
            next: AtomicU64::new(1),
            cgroup,
            free: Mutex::new(Vec::new()),
        }
    }

    /// Tokens only, never a cgroup (for steps spawned without a guardian).
    pub(crate) fn without_cgroup() -> Containment {
        Containment::new_with(false)
    }

    /// The token every step token of this run starts with (followed by `.`).
    pub(crate) fn run_token(&self) -> &str {
        &self.run_token
    }

    /// The run's cgroup, if it has one.
    pub(crate) fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// A new step's token and cgroup (none if creating it failed: that step falls back). The
    /// cgroup is one an earlier step left empty, when there is one.
    pub(crate) fn step(&self) -> StepScope {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let reused = self.cgroup.as_ref().and_then(|_| {
            self.free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
        });
        let cgroup = reused.or_else(|| {
            self.cgroup.as_ref().and_then(|run| {
                let dir = run.join(format!("s{n}"));
                match StepCgroup::create(dir.clone()) {
                    Ok(cgroup) => Some(cgroup),
                    Err(err) => {
                        tracing::warn!(dir = %dir.display(), %err, "no cgroup for this step");
                        let _ = std::fs::remove_dir(&dir);
                        None
                    }
                }
            })
        });
        StepScope {
            token: format!("{}.{n}", self.run_token),
            // Only the token scan uses it (a step without a cgroup, or whose cgroup cannot be
            // read): it finds escapees among the pids handed out since.
            last_pid: if cgroup.is_none() { last_pid() } else { None },
            cgroup,
            started: Instant::now(),
        }
    }
}

impl Containment {
    /// Takes back the cgroup of an ended step: kept for the next step when it is as a fresh one
    /// would be (no process, no cgroup below it, not frozen), else removed (the run's end removes
    /// what cannot be yet).
    pub(crate) fn recycle(&self, cgroup: StepCgroup) {
        if cgroup.reusable() {
            self.free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(cgroup);
        } else {
            let StepCgroup { dir, .. } = cgroup;
            if let Err(err) = std::fs::remove_dir(&dir) {
                tracing::debug!(dir = %dir.display(), %err, "removing a step's cgroup failed");
            }
        }
    }
}

/// orch's own cgroup v2 folder, if a `cgroup2` hierarchy is mounted where orch can see it.
fn own_cgroup_dir() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let point = fields.next()?;
        // The mount shows the hierarchy from `root` down; orch's cgroup must lie inside it.
        let rel = own.strip_prefix(root.trim_end_matches('/'))?;
        Some(Path::new(point).join(rel.trim_start_matches('/')))
    })
}

/// The processes left behind by a step whose leader (`pgid`) has exited but is not reaped yet,
/// found before anything is killed. Each is `(pid, escaped)`: `escaped` when it had left the
/// group (only the cgroup or the token found it).
pub(crate) fn leftovers(pgid: u32, scope: &StepScope) -> Vec<(u32, bool)> {
    if let Some(cgroup) = &scope.cgroup {
        // The usual end: nothing alive in the cgroup (the exited leader is not counted).
        if cgroup.populated() == Some(false) {
            return Vec::new();
        }
        if let Ok(text) = std::fs::read_to_string(cgroup.dir.join("cgroup.procs")) {
            return text
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .filter(|&pid| pid != pgid)
                .filter_map(|pid| {
                    let stat = read_stat(pid)?;
                    (!stat.is_dead()).then_some((pid, stat.pgrp != pgid))
                })
                .collect();
        }
    }
    let since = read_stat(pgid).map_or(0, |stat| stat.start_ticks);
    let needle = format!("{TOKEN_ENV}={}\0", scope.token);
    // Every process of the step was forked after the spawn, so its pid lies in the cyclic
    // interval of pids handed out since: reading only those keeps the per-step cost off the
    // other ~hundreds of processes of a machine. Once the step has run long enough for the pid
    // counter to have wrapped all the way round, every pid is read.
    let window = match (scope.last_pid, last_pid()) {
        (Some(from), Some(to)) if scope.started.elapsed() < FULL_SCAN_AFTER => Some((from, to)),
        _ => None,
    };
    let found = |pid: u32, stat: Stat| {
        if pid == pgid || stat.is_dead() {
            None
        } else if stat.pgrp == pgid {
            Some(false)
        } else if stat.start_ticks >= since && environ_has(pid, needle.as_bytes()) {
            Some(true)
        } else {
            None
        }
    };
    let mut leftovers = match window {
        // A few pids handed out since (the usual case): probe them, no listing of /proc.
        Some((from, to)) if from <= to && to - from <= PROBE_MAX => probe(from + 1..=to, found),
        Some((from, to)) => scan_where(
            |pid| {
                if from <= to {
                    pid > from && pid <= to
                } else {
                    pid > from || pid <= to
                }
            },
            found,
        ),
        None => scan(found),
    };
    // Probing reaches threads too (`/proc/TID` exists, unlisted): keep processes only.
    leftovers.retain(|&(pid, _)| is_process(pid));
    leftovers
}

/// Reads the stat of each pid of `pids` that exists, keeping what `keep` maps to `Some`.
fn probe<T>(
    pids: impl Iterator<Item = u32>,
    mut keep: impl FnMut(u32, Stat) -> Option<T>,
) -> Vec<(u32, T)> {
    pids.filter_map(|pid| Some((pid, keep(pid, read_stat(pid)?)?)))
        .collect()
}

/// True when `pid` is a process (its thread group's leader), not another thread's id.
fn is_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .is_some_and(|tgid| tgid.trim() == pid.to_string())
    })
}

/// Every live process that carries a token of the run `run_token` (for the guardian).
pub(crate) fn run_processes(run_token: &str) -> Vec<u32> {
    let needle = format!("{TOKEN_ENV}={run_token}.");
    let me = std::process::id();
    scan(|pid, stat| {
        (pid != me && !stat.is_dead() && environ_has(pid, needle.as_bytes())).then_some(())
    })
    .into_iter()
    .map(|(pid, ())| pid)
    .collect()
}

/// One pass over `/proc`, keeping what `keep` maps to `Some`.
fn scan<T>(keep: impl FnMut(u32, Stat) -> Option<T>) -> Vec<(u32, T)> {
    scan_where(|_| true, keep)
}

/// One pass over `/proc`, reading the stat of the pids `wanted` accepts only.
fn scan_where<T>(
    wanted: impl Fn(u32) -> bool,
    mut keep: impl FnMut(u32, Stat) -> Option<T>,
) -> Vec<(u32, T)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| wanted(pid))
        .filter_map(|pid| Some((pid, keep(pid, read_stat(pid)?)?)))
        .collect()
}

/// The last pid handed out in orch's pid namespace.
fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the initial environment of `pid` contains `needle`; false if it cannot be read.
fn environ_has(pid: u32, needle: &[u8]) -> bool {
    let mut environ = Vec::new();
    File::open(format!("/proc/{pid}/environ"))
        .and_then(|mut file| file.read_to_end(&mut environ))
        .is_ok_and(|_| memmem::find(&environ, needle).is_some())
}

/// SIGKILLs everything in cgroup `dir` and below (`cgroup.kill`); they die asynchronously.
pub(crate) fn kill_cgroup(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join("cgroup.kill"), "1")
}

/// Whether a process still lives in cgroup `dir` or below.
fn populated(dir: &Path) -> bool {
    std::fs::read(dir.join("cgroup.events")).is_ok_and(|events| has_line(&events, b"populated 1"))
}

/// Kills and removes a run's cgroup and every step cgroup left in it (blocking, bounded).
pub(crate) fn remove_run_cgroup(dir: &Path) {
    if let Err(err) = kill_cgroup(dir) {
        tracing::warn!(dir = %dir.display(), %err, "killing the run's cgroup failed");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while populated(dir) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
