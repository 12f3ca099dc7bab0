//! Spawning a child in its own process group, and the [`Child`] handle the runner holds.
//!
//! Owns the `pre_exec` set-up (new group, parent-death signal, default SIGINT/SIGTERM) and the
//! drop guard. It must never let a group outlive its `Child` handle: dropping the handle (panic,
//! `?`, an aborted task) before [`Child::wait`] completes SIGKILLs the whole group.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::unistd::{Pid, getpid, getppid, setpgid};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use super::contain::{Containment, TOKEN_ENV};
use super::drain::{LogFault, Sink, drain, enlarge_pipe};
use super::guardian::Guardian;
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
/// Must run inside a tokio runtime with I/O, time and signals enabled, on a thread that lives as
/// long as the child: Linux delivers the parent-death signal when the spawning *thread* exits, so
/// never call it from `spawn_blocking`.
pub async fn spawn(spec: &SpawnSpec, guardian: Option<&Guardian>) -> io::Result<Child> {
    let stdout_log = open_log(&spec.stdout_log)?;
    let stderr_log = open_log(&spec.stderr_log)?;
    let scope = match guardian {
        Some(guardian) => guardian.step_scope(),
        None => standalone().step(),
    };

    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Inherited by everything the step starts: how its escapees are found without cgroups.
        .env(TOKEN_ENV, &scope.token)
        // Reaches only the leader; the guard and the monitor handle the rest of the group.
        .kill_on_drop(true);
    let parent = getpid();
    let cgroup_procs = scope.cgroup.as_ref().map(|(_, procs)| procs.as_raw_fd());
    // SAFETY: `prepare_child` only makes async-signal-safe system calls and does not allocate;
    // the cgroup file stays open (in `scope`) until after the spawn.
    unsafe { command.pre_exec(move || prepare_child(parent, cgroup_procs)) };
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
    let sink = |stream, log, log_path: &Path| Sink {
        stream,
        log,
        log_path: log_path.to_path_buf(),
        lines: lines_tx.clone(),
        max_line_bytes: spec.max_line_bytes,
        faults: faults_tx.clone(),
    };
    let drains = [
        tokio::spawn(drain(
            stdout,
            sink(Stream::Stdout, stdout_log, &spec.stdout_log),
            finish_rx.clone(),
        )),
        tokio::spawn(drain(
            stderr,
            sink(Stream::Stderr, stderr_log, &spec.stderr_log),
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

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
}

/// The containment of steps spawned without a guardian (tests, tools): tokens, no cgroup.
fn standalone() -> &'static Containment {
    static STANDALONE: std::sync::OnceLock<Containment> = std::sync::OnceLock::new();
    STANDALONE.get_or_init(Containment::without_cgroup)
}

/// Runs in the child between fork and exec: async-signal-safe calls only, no allocation.
fn prepare_child(parent: Pid, cgroup_procs: Option<RawFd>) -> io::Result<()> {
    if let Some(fd) = cgroup_procs {
        // "0" moves the writer: from here on, everything this child forks is in the step's
        // cgroup. A failure leaves it to the group and the token (the scan finds it then).
        // SAFETY: the descriptor is open until the spawn returns.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = nix::unistd::write(fd, b"0");
    }
    setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        // orch died between fork and prctl: the signal will never come, so act on it now.
        if getppid() != parent {
            let _ = kill(getpid(), Signal::SIGKILL);
            return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
        }
    }
    // orch may ignore or handle these; the ladder needs the child to start from the defaults.
    // SAFETY: setting a default disposition installs no handler.
    unsafe {
        signal(Signal::SIGINT, SigHandler::SigDfl)?;
        signal(Signal::SIGTERM, SigHandler::SigDfl)?;
        // orch ignores it (`survive_file_size_limit`); an ignored signal stays ignored across exec.
        signal(Signal::SIGXFSZ, SigHandler::SigDfl)?;
    }
    Ok(())
}
