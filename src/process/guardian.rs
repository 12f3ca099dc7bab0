//! The guardian: a helper process that SIGKILLs every registered process group when orch dies,
//! even by SIGKILL (a parent-death signal reaches only the direct child; tool processes are
//! grandchildren).
//!
//! Protocol on the guardian's stdin: `+PGID\n` when a group is spawned, `-PGID\n` before its
//! leader is reaped (sent in the same write as the next `+`, or 50 ms later if none comes: one
//! message per step; the leader stays an unreaped zombie until then, so its pgid is not reused); once at the start, `tTOKEN\n` (the run's step-token prefix) and, when the run
//! has one, `cDIR\n` (its cgroup). At the end it also kills the run's cgroup (`cgroup.kill`,
//! then removes it) and every process carrying one of the run's step tokens: setsid escapees. When stdin reaches EOF (orch exited or died, so the kernel closed the pipe),
//! or when its own parent-death signal shows orch is gone (it then reads what is left without
//! blocking), the guardian kills every still-registered group and exits. It runs in its own
//! process group and ignores SIGINT, SIGTERM and SIGHUP, so a terminal Ctrl-C reaches orch
//! (which stops children politely), never the guardian. It must never kill a group that was
//! unregistered, nor do anything but read, track and kill.
//!
//! It does not answer to orch's name: its argv[0] and its kernel name (comm) are
//! [`GUARDIAN_NAME`], so a broad `pkill -9 orch`, `pkill -9 -f orch`, `pkill -9 -x orch` or
//! `killall -9 orch` kills orch but not the process that cleans up after it. `start` returns
//! only once the guardian has renamed itself (it writes one byte on its stdout then).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use memchr::memchr;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::{Pid, getppid, setpgid};

use super::contain::{self, Containment, StepCgroup, StepScope};
use super::group::signal_group;
use super::vfork::Leader;

/// How long an ended step's `-PGID` may wait for a registration to travel with.
const RETIRE_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Environment variable carrying orch's pid, so the guardian can tell orch's death from the
/// death of the mere thread that spawned it (both raise the parent-death signal).
const PARENT_ENV: &str = "ORCH_GUARDIAN_PARENT";
/// The guardian's parent-death signal; handled like EOF.
const PARENT_DEATH_SIGNAL: Signal = Signal::SIGUSR1;

/// The guardian's process name (argv[0] and comm); it must not contain "orch", or `pkill orch`
/// (a regex match on comm, or on the command line with `-f`) would take it down with orch.
pub const GUARDIAN_NAME: &str = "step-guardian";
/// The byte (ASCII ACK) the guardian writes on its stdout once it carries [`GUARDIAN_NAME`].
const READY: u8 = 0x06;

/// orch's pid as the guardian was told it; 0 when unknown.
static EXPECTED_PARENT: AtomicI32 = AtomicI32::new(0);

/// orch's handle on its guardian process; clones share the same process.
#[derive(Debug, Clone)]
pub struct Guardian {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pid: u32,
    containment: Containment,
    link: Mutex<Link>,
    process: Mutex<std::process::Child>,
}

/// The guardian's stdin, and the leaders whose `-PGID` waits to travel with the next write.
#[derive(Debug)]
struct Link {
    stdin: Option<ChildStdin>,
    /// Exited, unreaped leaders of ended steps: each zombie keeps its pgid from being reused
    /// until the guardian has read its `-PGID`, so the guardian never kills a stranger's group.
    retired: Vec<Leader>,
}

impl Guardian {
    /// Starts `exe args...` as the guardian (orch passes its own `current_exe()` and
    /// `["__guardian"]`, whose handler calls [`main`]). Call it from orch's main thread: the
    /// guardian's parent-death signal fires when the spawning thread exits.
    pub fn start(exe: &Path, args: &[&str]) -> io::Result<Guardian> {
        let mut command = Command::new(exe);
        command
            .arg0(GUARDIAN_NAME)
            .args(args)
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its own group, set by posix_spawn: no code runs in the child before exec.
            .process_group(0);
        let mut process = command.spawn()?;
        let stdin = process.stdin.take().expect("stdin was piped");
        // Until it has renamed itself a `pkill orch` would match it: wait for that (a few ms).
        let stdout = process.stdout.take().expect("stdout was piped");
        // Other bytes may come first (a test harness playing the guardian prints its banner).
        let ready = io::BufReader::new(stdout)
            .bytes()
            .any(|byte| byte.is_ok_and(|byte| byte == READY));
        if !ready {
            let _ = process.kill();
            let _ = process.wait();
            return Err(io::Error::other("the guardian did not start"));
        }
        let guardian = Guardian {
            inner: Arc::new(Inner {
                pid: process.id(),
                containment: Containment::new(),
                link: Mutex::new(Link {
                    stdin: Some(stdin),
                    retired: Vec::new(),
                }),
                process: Mutex::new(process),
            }),
        };
        let containment = &guardian.inner.containment;
        let mut setup = format!("t{}\n", containment.run_token());
        if let Some(dir) = containment.cgroup() {
            setup.push_str(&format!("c{}\n", dir.display()));
        }
        guardian.write(setup.as_bytes())?;
        Ok(guardian)
    }

    /// A new step's token and cgroup, for [`super::spawn`].
    pub(crate) fn step_scope(&self) -> StepScope {
        self.inner.containment.step()
    }

    /// Takes back an ended step's emptied cgroup (reused by a later step, or removed).
    pub(crate) fn recycle_cgroup(&self, cgroup: StepCgroup) {
        self.inner.containment.recycle(cgroup);
    }

    /// Whether this run's steps go into cgroups (cgroup v2 usable), as opposed to the
    /// process-group and token fallback.
    pub fn uses_cgroups(&self) -> bool {
        self.inner.containment.cgroup().is_some()
    }

    /// The guardian's pid.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Tells the guardian to kill group `pgid` if orch dies (in the same write as the `-PGID`
    /// of the steps retired since the last one).
    pub fn register(&self, pgid: u32) -> io::Result<()> {
        self.send_with_retired(Some(pgid))
    }

    /// Takes the exited, unreaped leader of an ended step: its `-PGID` goes with the next
    /// registration, or after [`RETIRE_DELAY`] if none comes first, and the leader is reaped
    /// right after that write. So a step costs one message, not two. Call from the runtime.
    pub(crate) fn retire(&self, leader: Leader) {
        let first = {
            let mut link = self.link();
            link.retired.push(leader);
            link.retired.len() == 1
        };
        if first {
            let guardian = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(RETIRE_DELAY).await;
                if let Err(err) = guardian.send_with_retired(None) {
                    tracing::warn!(%err, "unregistering from the guardian failed");
                }
            });
        }
    }

    /// Tells the guardian to forget group `pgid` (call before reaping its leader).
    pub fn unregister(&self, pgid: u32) -> io::Result<()> {
        self.send('-', pgid)
    }

    /// Closes the guardian's stdin, exactly as orch dying would, and waits for it to exit: every
    /// group still registered is SIGKILLed. Registering afterwards fails with `BrokenPipe`.
    pub fn shutdown(&self) -> io::Result<ExitStatus> {
        let _ = self.send_with_retired(None);
        drop(self.link().stdin.take());
        self.inner
            .process
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wait()
    }

    /// Tells the guardian to cancel Slurm job `job` (an id, or a name) if orch dies.
    pub fn hold_job(&self, job: &str) -> io::Result<()> {
        self.write(format!("j{job}\n").as_bytes())
    }

    /// Tells the guardian to forget Slurm job `job`.
    pub fn release_job(&self, job: &str) -> io::Result<()> {
        self.write(format!("J{job}\n").as_bytes())
    }

    fn send(&self, op: char, pgid: u32) -> io::Result<()> {
        self.write(format!("{op}{pgid}\n").as_bytes())
    }

    fn write(&self, message: &[u8]) -> io::Result<()> {
        self.link().write(message)
    }

    /// Sends the `-PGID` of every retired leader and `+pgid`, if given, in one write, then
    /// reaps those leaders: the guardian has their `-` (or is gone and kills nothing).
    fn send_with_retired(&self, pgid: Option<u32>) -> io::Result<()> {
        let mut link = self.link();
        let mut message = String::new();
        for leader in &link.retired {
            message.push_str(&format!("-{}\n", leader.pid()));
        }
        if let Some(pgid) = pgid {
            message.push_str(&format!("+{pgid}\n"));
        }
        if message.is_empty() {
            return Ok(());
        }
        let sent = link.write(message.as_bytes());
        for mut leader in link.retired.drain(..) {
            if let Err(err) = leader.reap() {
                tracing::warn!(pid = leader.pid(), %err, "reaping a child failed");
            }
        }
        sent
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.inner
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Link {
    fn write(&mut self, message: &[u8]) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the guardian is shut down")
        })?;
        // One writer at a time (the lock): a message is never interleaved with another.
        stdin.write_all(message)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let link = self.link.get_mut().unwrap_or_else(PoisonError::into_inner);
        drop(link.stdin.take());
        let retired = std::mem::take(&mut link.retired);
        let _ = self
            .process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .wait();
        // Only now that the guardian is gone (it may still have had their `+`): a zombie's pgid
        // cannot be signalled by it any more.
        for mut leader in retired {
            let _ = leader.reap();
        }
    }
}

/// The guardian process's entry point (orch's hidden `__guardian` subcommand): set up signals
/// and the parent-death backstop, then [`serve`] stdin.
pub fn main() -> ExitCode {
    // Usually done by `Guardian::start` already; harmless to repeat, and it is not fatal if
    // we are a session leader and cannot.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let handler = SigAction::new(
        SigHandler::Handler(on_parent_death),
        // No SA_RESTART: the blocking read must return EINTR so `serve` sees the flag.
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: ignoring installs no handler; `on_parent_death` is async-signal-safe (it calls
    // getppid and touches atomics only).
    unsafe {
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            let _ = nix::sys::signal::signal(sig, SigHandler::SigIgn);
        }
        let _ = sigaction(PARENT_DEATH_SIGNAL, &handler);
    }
    let expected = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    if let Some(expected) = expected {
        EXPECTED_PARENT.store(expected, Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        let _ = nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL);
        // Checked after the signal was armed: if orch is already gone, none will ever come.
        if getppid().as_raw() != expected {
            stop_blocking_on_stdin();
        }
    }
    // Not fatal: a guardian under orch's name still guards, it is only easier to kill.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_name(c"step-guardian");
    let mut stdout = io::stdout();
    let _ = stdout.write_all(&[READY]).and_then(|()| stdout.flush());
    serve(io::stdin().lock())
}

extern "C" fn on_parent_death(_: nix::libc::c_int) {
    // The signal also fires when only the spawning thread exited; orch is then still our parent.
    if getppid().as_raw() != EXPECTED_PARENT.load(Ordering::SeqCst) {
        stop_blocking_on_stdin();
    }
}

/// Makes stdin non-blocking, so `serve` reads every message orch managed to write and stops at
/// the first read that would block instead of waiting for an EOF that a leaked copy of the write
/// end could delay forever. The blocking read in progress, if any, returns EINTR and is retried
/// non-blocking; a read that had not started yet will not block either, so no wake-up is lost.
/// Only async-signal-safe calls (fcntl) and no allocation: it runs in a signal handler.
fn stop_blocking_on_stdin() {
    // SAFETY: fd 0 stays open for the whole life of the guardian.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    if let Ok(flags) = fcntl(stdin, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(stdin, FcntlArg::F_SETFL(flags));
    }
}

/// Reads the `+PGID`/`-PGID` protocol from `input` until EOF, an error, or (once orch is known
/// dead and the input non-blocking) a read that would block, then SIGKILLs every group still
/// registered. Malformed lines are ignored.
pub fn serve(mut input: impl Read) -> ExitCode {
    let mut run = Run::default();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            // WouldBlock: orch is gone and everything it wrote has been read.
            Err(_) => break,
        }
        while let Some(nl) = memchr(b'\n', &pending) {
            apply(&pending[..nl], &mut run);
            pending.drain(..=nl);
        }
    }
    for &pgid in &run.groups {
        let _ = signal_group(pgid, Signal::SIGKILL);
    }
    if let Some(dir) = &run.cgroup {
        contain::remove_run_cgroup(dir);
    }
    for job in &run.jobs {
        let by = if job.bytes().all(|b| b.is_ascii_digit()) {
            job.clone()
        } else {
            format!("--name={job}")
        };
        let _ = Command::new("scancel")
            .args(["-Q", &by])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if let Some(token) = &run.token {
        for pid in contain::run_processes(token) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    ExitCode::SUCCESS
}

/// What the guardian knows of the run.
#[derive(Debug, Default)]
struct Run {
    groups: BTreeSet<u32>,
    token: Option<String>,
    cgroup: Option<std::path::PathBuf>,
    /// Slurm jobs to cancel (ids, or names of per-step jobs).
    jobs: BTreeSet<String>,
}

fn apply(message: &[u8], run: &mut Run) {
    let Some((&op, rest)) = message.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    match op {
        // A run token is hex and `-`; anything else could widen the environment match.
        b't' if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') => {
            run.token = Some(rest.to_string());
            return;
        }
        // A job id or name orch made: never an option or a pattern.
        b'j' | b'J'
            if !rest.is_empty()
                && !rest.starts_with('-')
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            if op == b'j' {
                run.jobs.insert(rest.to_string());
            } else {
                run.jobs.remove(rest);
            }
            return;
        }
        b'c' if rest.starts_with('/') => {
            run.cgroup = Some(rest.into());
            return;
        }
        _ => {}
    }
    let Ok(pgid) = rest.parse::<u32>() else {
        return;
    };
    match op {
        b'+' => run.groups.insert(pgid),
        b'-' => run.groups.remove(&pgid),
        _ => false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_the_protocol() {
        let mut run = Run::default();
        for message in [
            "+10", "+11", "-10", "x12", "+", "+abc", "+13", "t", "t1a.", "tab-12", "crel", "c/cg",
        ] {
            apply(message.as_bytes(), &mut run);
        }
        assert_eq!(run.groups.into_iter().collect::<Vec<_>>(), vec![11, 13]);
        assert_eq!(run.token.as_deref(), Some("ab-12"));
        assert_eq!(run.cgroup, Some("/cg".into()));
    }
}
