//! Spawning a child in its own process group, and the [`Child`] handle the runner holds.
//!
//! Owns what a spawn is made of: the two pipes (orch's ends non-blocking, for the drains), stdin
//! at `/dev/null`, the child's environment (orch's, the job's settings, the step token), and the
//! step's cgroup it enters; the clone itself is `vfork`'s, one path with cgroups or without. The
//! guardian, not a parent-death signal, kills the group if orch dies. Also owns the drop guard.
//! It must never let a group outlive its `Child` handle: dropping the handle (panic, `?`, an
//! aborted task) before [`Child::wait`] completes SIGKILLs the whole group.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use nix::fcntl::OFlag;

use nix::sys::signal::Signal;
use tokio::net::unix::pipe;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use super::contain::{Containment, TOKEN_ENV};
use super::drain::{LogFault, Sink, drain, enlarge_pipe};
use super::guardian::Guardian;
use super::launch;
use super::lines::{BATCHES_IN_FLIGHT, Lines};
use super::monitor::{self, Watch};
use super::stop::{Group, Stopper};
use super::vfork;
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

    // Both pipes made ready for the drains before the spawn, so nothing after it can fail
    // but the guardian.
    let (stdout, stdout_w) = pipe()?;
    let (stderr, stderr_w) = pipe()?;
    let candidates = launch::candidates(&spec.program, &spec.env);
    let env = settings(spec, &scope.token);
    let plan = vfork::Plan::new(
        &candidates,
        std::iter::once(spec.program.as_os_str()).chain(spec.args.iter().map(OsString::as_os_str)),
        inherited()
            .iter()
            .filter(|(key, _)| !env.contains_key(*key))
            .map(|(_, entry)| entry.as_c_str()),
        env.iter()
            .map(|(key, value)| (key.as_os_str(), value.as_os_str())),
        spec.cwd.as_os_str(),
        [dev_null()?, stdout_w.as_fd(), stderr_w.as_fd()],
        // The one guarantee that needs code in the child: it enters the step's cgroup before it
        // can fork, so nothing of the step is ever outside (orch moving it after the spawn
        // loses a race with a leader that forks and exits first).
        scope.cgroup.as_ref().map(|cgroup| cgroup.procs.as_fd()),
    )?;
    let mut leader = vfork::start(&plan)?;
    drop((plan, stdout_w, stderr_w));

    let pgid = leader.pid();
    let group = Arc::new(Group::new(pgid, Handle::current()));
    if let Some(guardian) = guardian {
        if let Err(err) = guardian.register(pgid) {
            // Without the guardian the group could outlive orch: refuse to run it.
            group.signal(Signal::SIGKILL);
            group.mark_reaped();
            let _ = leader.reap();
            return Err(err);
        }
    }

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

/// A pipe whose read end is orch's (non-blocking, registered with the runtime, enlarged) and
/// whose write end is the child's (blocking, as a program expects its stdout); both close on
/// exec.
fn pipe() -> io::Result<(pipe::Receiver, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    enlarge_pipe(&read);
    // The flags of a new pipe's read end are known: one call sets them (`from_owned_fd` would
    // check the descriptor's type and read its flags first, three calls).
    nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((pipe::Receiver::from_owned_fd_unchecked(read)?, write))
}

/// The child's stdin: `/dev/null`, opened once and shared by every child.
fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static DEV_NULL: OnceLock<File> = OnceLock::new();
    if DEV_NULL.get().is_none() {
        let _ = DEV_NULL.set(File::open("/dev/null")?);
    }
    Ok(DEV_NULL.get().expect("set above").as_fd())
}

/// What the child's environment sets over orch's, as `Command` would: the job's settings (the
/// last of a name wins) and the step's token.
fn settings(spec: &SpawnSpec, token: &str) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = spec.env.iter().cloned().collect();
    // Inherited by everything the step starts: how its escapees are found without cgroups.
    env.insert(TOKEN_ENV.into(), token.into());
    env
}

/// orch's own environment, each variable as the child gets it (`KEY=VALUE`), read once: orch
/// never changes its environment, and reading and copying all of it for every step was a tenth
/// of what a spawn cost orch.
fn inherited() -> &'static BTreeMap<OsString, CString> {
    static INHERITED: OnceLock<BTreeMap<OsString, CString>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(key, value)| {
                let entry = [key.as_bytes(), b"=", value.as_bytes()].concat();
                // The environment cannot hold a nul byte; a variable that did is left out.
                Some((key, CString::new(entry).ok()?))
            })
            .collect()
    })
}
