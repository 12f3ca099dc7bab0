//! Spawning a child in its own process group, and the [`Child`] handle the runner holds.
//!
//! Owns the spawn itself: a new group through `process_group(0)` and, without cgroups, nothing
//! run in the child between clone and exec, so std takes its `posix_spawn` path (see `launch`);
//! with cgroups the child enters its step's cgroup in a `pre_exec` hook (a real fork). The
//! guardian, not a parent-death signal, kills the group if orch dies. Also owns the drop guard. It must never let a group
//! outlive its `Child` handle: dropping the handle (panic, `?`, an aborted task) before
//! [`Child::wait`] completes SIGKILLs the whole group.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use super::contain::{Containment, TOKEN_ENV};
use super::drain::{LogFault, Sink, drain, enlarge_pipe};
use super::guardian::Guardian;
use super::launch;
use super::lines::{BATCHES_IN_FLIGHT, Lines};
use super::monitor::{self, Watch};
use super::stop::{Group, Stopper};
use super::{Exit, SpawnSpec, Stream};

/// A running child: its lines, a way to stop it, and its exit.
///
/// Consume the [`Lines`] concurrently with [`Child::wait`] (or read them to the end first, then
/// wait), or drop or close them: the line channel is bounded, a full one holds the drains back,
/// and `wait` needs the pipes drained. Lines never taken are dropped by `wait` itself.
#[derive(Debug)]
#[must_use = "dropping a Child SIGKILLs its process group"]
pub struct Child {
    lines: Lines,
    /// Log writes that failed, told as they happen (the final counts come with the [`Exit`]).
    log_faults: mpsc::UnboundedReceiver<LogFault>,
    exit: oneshot::Receiver<Exit>,
    guard: KillOnDrop,
}

/// SIGKILLs the group when dropped while armed.
#[derive(Debug)]
struct KillOnDrop {
    group: Arc<Group>,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.group.signal(Signal::SIGKILL);
        }
    }
}

impl Child {
    /// The pid of the leader, which is also the pgid of its group.
    pub fn pid(&self) -> u32 {
        self.guard.group.pgid
    }

    /// The lines of both pipes, in the order each pipe produced them; closes after both EOFs.
    pub fn lines(&mut self) -> &mut Lines {
        &mut self.lines
    }

    /// Takes the line receiver (to consume it in another task); `lines()` is closed afterwards.
    pub fn take_lines(&mut self) -> Lines {
        std::mem::replace(&mut self.lines, Lines::closed())
    }

    /// Takes the receiver of log-write failures, each told when it begins (the pipes are drained
    /// on regardless; the [`Exit`] has the final counts).
    pub fn take_log_faults(&mut self) -> mpsc::UnboundedReceiver<LogFault> {
        std::mem::replace(&mut self.log_faults, mpsc::unbounded_channel().1)
    }

    /// A handle to stop or kill the group from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            group: self.guard.group.clone(),
            remote: None,
        }
    }

    /// Resolves when the leader has exited, leftovers of its group are killed, both pipes are
    /// drained and the leader is reaped. Lines not yet taken are discarded (the logs keep them).
    pub async fn wait(self) -> Exit {
        let Child {
            lines,
            exit,
            mut guard,
            ..
        } = self;
        drop(lines);
        // If this future is dropped before the exit arrives, the guard kills the group.
        let exit = exit
            .await
            .expect("the monitor task sends an exit unless the runtime is shutting down");
        guard.armed = false;
        exit
    }
}

/// Spawns `spec` in a new process group with stdin at `/dev/null` and both pipes drained, and
/// registers the group with `guardian` if one is given.
///
/// Must run inside a tokio runtime with I/O, time and signals enabled. Without a guardian nothing
/// kills the group if this process dies.
pub async fn spawn(spec: &SpawnSpec, guardian: Option<&Guardian>) -> io::Result<Child> {
    launch::prepare_signals_once();
    let scope = match guardian {
        Some(guardian) => guardian.step_scope(),
        None => standalone().step(),
    };

    let resolved = launch::resolve(&spec.program, &spec.env, &spec.cwd);
    let mut command = tokio::process::Command::new(resolved.as_deref().unwrap_or(&spec.program));
    command
        .arg0(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Inherited by everything the step starts: how its escapees are found without cgroups.
        .env(TOKEN_ENV, &scope.token)
        .process_group(0)
        // Reaches only the leader; the guard and the monitor handle the rest of the group.
        .kill_on_drop(true);
    if let Some((_, procs)) = &scope.cgroup {
        // The one guarantee that needs code in the child: it enters the step's cgroup before it
        // can fork, so nothing of the step is ever outside (orch moving it after the spawn
        // loses a race with a leader that forks and exits first). This forces a real fork.
        let procs = procs.as_raw_fd();
        // SAFETY: `enter_cgroup` makes one async-signal-safe call (write) and does not allocate;
        // the cgroup file stays open (in `scope`) until after the spawn.
        unsafe { command.pre_exec(move || enter_cgroup(procs)) };
    }
    let mut leader = command.spawn()?;

    let pgid = leader.id().expect("a child not yet waited for has a pid");
    let group = Arc::new(Group::new(pgid, Handle::current()));
    if let Some(guardian) = guardian {
        if let Err(err) = guardian.register(pgid) {
            // Without the guardian the group could outlive orch: refuse to run it.
            group.signal(Signal::SIGKILL);
            return Err(err);
        }
    }

    let stdout = leader.stdout.take().expect("stdout was piped");
    let stderr = leader.stderr.take().expect("stderr was piped");
    enlarge_pipe(&stdout);
    enlarge_pipe(&stderr);
    let (lines_tx, lines) = mpsc::channel(BATCHES_IN_FLIGHT);
    let (finish, finish_rx) = watch::channel(false);
    let (faults_tx, log_faults) = mpsc::unbounded_channel();
    let sink = |stream, log_path: &Path| Sink {
        stream,
        log_path: log_path.to_path_buf(),
        lines: lines_tx.clone(),
        max_line_bytes: spec.max_line_bytes,
        faults: faults_tx.clone(),
    };
    let drains = [
        tokio::spawn(drain(
            stdout,
            sink(Stream::Stdout, &spec.stdout_log),
            finish_rx.clone(),
        )),
        tokio::spawn(drain(
            stderr,
            sink(Stream::Stderr, &spec.stderr_log),
            finish_rx,
        )),
    ];
    drop(lines_tx);

    let (exit_tx, exit) = oneshot::channel();
    tokio::spawn(monitor::run(Watch {
        leader,
        group: group.clone(),
        drains,
        finish,
        guardian: guardian.cloned(),
        scope,
        exit: exit_tx,
    }));
    Ok(Child {
        lines: Lines::new(lines),
        log_faults,
        exit,
        guard: KillOnDrop { group, armed: true },
    })
}

/// The containment of steps spawned without a guardian (tests, tools): tokens, no cgroup.
fn standalone() -> &'static Containment {
    static STANDALONE: std::sync::OnceLock<Containment> = std::sync::OnceLock::new();
    STANDALONE.get_or_init(Containment::without_cgroup)
}

/// Runs in the child between fork and exec (cgroup runs only): "0" moves the writer, so from here
/// on everything this child forks is in the step's cgroup. A failure leaves it to the group and
/// the token (the scan finds it then).
fn enter_cgroup(procs: RawFd) -> io::Result<()> {
    // SAFETY: the descriptor is open until the spawn returns.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(procs) };
    let _ = nix::unistd::write(fd, b"0");
    Ok(())
}
