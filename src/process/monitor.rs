//! The monitor task of one child: notice the leader's exit, kill what is left of the group, let
//! the pipes drain, reap the leader and report the [`Exit`].
//!
//! Owns the order that keeps group signals safe: observe the exit without reaping (`WNOWAIT`),
//! so the pgid stays ours while the group is killed; then hand the unreaped leader to the
//! guardian, which reaps it once it has sent the `-PGID` (or reap it here without a guardian). It
//! must never wait for a pipe held by a process outside the group for more than a short grace.

use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use super::Exit;
use super::contain::{self, StepCgroup, StepScope};
use super::drain::LogFault;
use super::group::pid_alive;
use super::guardian::Guardian;
use super::stop::Group;
use super::vfork::Leader;

/// How long the pipes may stay open after the leader exited and the group was killed.
const PIPE_GRACE: Duration = Duration::from_millis(200);
/// How long SIGKILLed leftovers may take to die before we stop waiting for them.
const DEATH_WAIT: Duration = Duration::from_secs(2);
/// Without pidfds: a backstop re-check of the leader in case a SIGCHLD is missed. Rare by design
/// (tokio wakes every SIGCHLD listener), so long: a thousand idle steps polling twice a second
/// cost 2 % of a core.
const LEADER_POLL: Duration = Duration::from_secs(5);

/// What the monitor owns for one child.
pub(crate) struct Watch {
    pub(crate) leader: Leader,
    pub(crate) group: Arc<Group>,
    pub(crate) drains: [JoinHandle<Option<LogFault>>; 2],
    pub(crate) finish: watch::Sender<bool>,
    pub(crate) guardian: Option<Guardian>,
    pub(crate) scope: StepScope,
    pub(crate) exit: oneshot::Sender<Exit>,
}

pub(crate) async fn run(watch: Watch) {
    let Watch {
        mut leader,
        group,
        mut drains,
        finish,
        guardian,
        scope,
        exit,
    } = watch;
    let pgid = group.pgid;
    leader_exited(pgid).await;
    group.exited.send_replace(true);
    let stopped_by = group.stage();

    // Whatever is left of the step, found before anything is killed so that it can be reported:
    // group members (pipes closed or not) and, through the cgroup or the token, escapees.
    let mut leaked = Vec::new();
    kill_leftovers(pgid, &group, &scope, &mut leaked).await;
    // A finished JoinHandle must not be polled again, so results are kept as they come in.
    let mut results = [None, None];
    let drained = timeout(PIPE_GRACE, join_drains(&mut drains, &mut results)).await;
    if drained.is_err() {
        // Still held: by a process that forked while we killed, or one no scan can find (left
        // the group and cleared the token, without cgroups). Kill what can be found, then stop
        // reading once the pipes go idle.
        kill_leftovers(pgid, &group, &scope, &mut leaked).await;
        finish.send_replace(true);
        join_drains(&mut drains, &mut results).await;
    }
    // A step's processes never outlive the step: whatever is left of the group goes now, pipe
    // holder or not (the leader is not reaped yet, so the pgid cannot have been reused).
    group.signal(Signal::SIGKILL);
    let mut log_faults = Vec::new();
    for result in results.into_iter().flatten() {
        match result {
            Ok(None) => {}
            Ok(Some(fault)) => log_faults.push(fault),
            Err(err) => tracing::warn!(pgid, %err, "a drain task failed"),
        }
    }
    await_deaths(&leaked).await;
    if let Some(cgroup) = scope.cgroup {
        if !leaked.is_empty() {
            // What was killed may leave the cgroup a moment after it is gone; nothing else is
            // in it (the scan found nothing, and nothing of the step is left to fork).
            empty_cgroup(&cgroup).await;
        }
        match &guardian {
            Some(guardian) => guardian.recycle_cgroup(cgroup),
            None => remove_cgroup(&cgroup.dir),
        }
    }

    // No signal may follow: the leader goes to be reaped. It has exited (seen above), so its
    // status is there to read without reaping it.
    group.mark_reaped();
    let (code, signal) = match leader.exit_status() {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            tracing::warn!(pgid, "reading a child's exit failed");
            (None, None)
        }
    };
    match &guardian {
        // Reaped once the guardian has its `-PGID` (sent with the next step's `+`).
        Some(guardian) => guardian.retire(leader),
        None => {
            if let Err(err) = leader.reap() {
                tracing::warn!(pgid, %err, "reaping a child failed");
            }
        }
    }
    leaked.sort_unstable();
    // The receiver is gone when nobody waits; the child still had to be reaped.
    let _ = exit.send(Exit {
        code,
        signal,
        leaked,
        stopped_by,
        log_faults,
    });
}

type DrainResult = Result<Option<LogFault>, tokio::task::JoinError>;

/// Awaits the drains that have not finished yet, storing each result as it arrives.
async fn join_drains(
    drains: &mut [JoinHandle<Option<LogFault>>; 2],
    results: &mut [Option<DrainResult>; 2],
) {
    for (drain, result) in drains.iter_mut().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(drain.await);
        }
    }
}

/// Finds the step's leftovers, adds them to `leaked` and SIGKILLs them: the group, the cgroup
/// (`cgroup.kill`), and each escapee found by its token. Scans again after a kill that found
/// something, for what forked meanwhile.
async fn kill_leftovers(pgid: u32, group: &Group, scope: &StepScope, leaked: &mut Vec<u32>) {
    for _ in 0..3 {
        let found = contain::leftovers(pgid, scope);
        if found.is_empty() {
            return;
        }
        for &(pid, escaped) in &found {
            if escaped {
                tracing::warn!(
                    pgid,
                    pid,
                    "a process left the step's process group (setsid?)"
                );
            }
            if !leaked.contains(&pid) {
                leaked.push(pid);
            }
        }
        group.signal(Signal::SIGKILL);
        match &scope.cgroup {
            Some(cgroup) => {
                let dir = &cgroup.dir;
                if let Err(err) = contain::kill_cgroup(dir) {
                    tracing::warn!(dir = %dir.display(), %err, "cgroup.kill failed");
                }
            }
            None => {
                for &(pid, escaped) in &found {
                    if escaped {
                        let pid = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    }
                }
            }
        }
        // Let the killed go, so the next scan sees only what forked meanwhile.
        await_deaths(leaked).await;
    }
}

/// Waits (bounded) until a step's cgroup is empty.
async fn empty_cgroup(cgroup: &StepCgroup) {
    let deadline = Instant::now() + DEATH_WAIT;
    while cgroup.populated() == Some(true) && Instant::now() < deadline {
        sleep(Duration::from_millis(2)).await;
    }
}

/// Removes a step's cgroup; the guardian removes what is left.
fn remove_cgroup(dir: &std::path::Path) {
    if let Err(err) = std::fs::remove_dir(dir) {
        tracing::debug!(dir = %dir.display(), %err, "removing a step's cgroup failed");
    }
}

/// Resolves once the leader has exited, leaving it unreaped (a zombie that holds the pgid).
/// Waits on a pidfd (readable once the process has exited), so a waiting step costs nothing and
/// one child's exit wakes only its own monitor; without pidfds (Linux before 5.3), on SIGCHLD.
async fn leader_exited(pid: u32) {
    let raw = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
    match pidfd::open(pid) {
        Ok(pidfd) => loop {
            let Ok(mut ready) = pidfd.readable().await else {
                return sigchld_exited(raw).await;
            };
            if exited(raw) {
                return;
            }
            ready.clear_ready();
        },
        Err(err) => {
            tracing::debug!(pid, %err, "no pidfd; waiting on SIGCHLD");
            sigchld_exited(raw).await
        }
    }
}

/// Whether `pid` has exited, without reaping it (true too if it cannot be waited for).
fn exited(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => return false,
            Err(Errno::EINTR) => {}
            Ok(_) => return true,
            Err(err) => {
                tracing::warn!(%pid, %err, "waiting for a child failed");
                return true;
            }
        }
    }
}

/// [`leader_exited`] where pidfds are missing: re-check on every SIGCHLD, and every
/// `LEADER_POLL` in case one is missed.
async fn sigchld_exited(pid: Pid) {
    // Subscribe before the first check so an exit in between still wakes us.
    let mut sigchld = signal(SignalKind::child()).ok();
    while !exited(pid) {
        match &mut sigchld {
            Some(sigchld) => {
                let _ = timeout(LEADER_POLL, sigchld.recv()).await;
            }
            None => sleep(LEADER_POLL).await,
        }
    }
}

mod pidfd {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    /// A pidfd of `pid`, registered with the runtime (it turns readable when `pid` exits).
    pub(super) fn open(pid: u32) -> io::Result<AsyncFd<OwnedFd>> {
        let flags = nix::libc::PIDFD_NONBLOCK;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: the descriptor was just returned to us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `AsyncFd` owns the descriptor; it is neither replaced nor closed while
        // registered.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
    }
}

/// Waits (bounded) until every SIGKILLed leftover is gone, so callers can rely on `leaked` pids
/// being dead once [`Exit`] is delivered.
async fn await_deaths(pids: &[u32]) {
    let deadline = Instant::now() + DEATH_WAIT;
    while pids.iter().any(|&pid| pid_alive(pid)) {
        if Instant::now() >= deadline {
            tracing::warn!(?pids, "killed processes are still alive");
            return;
        }
        sleep(Duration::from_millis(2)).await;
    }
}
