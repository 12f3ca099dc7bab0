//! Starting a child without copying orch's memory: `clone(CLONE_VM | CLONE_VFORK)`, the clone
//! `posix_spawn` makes, with the child's few steps before `exec` done here, on a stack of its own:
//! signal handlers back to their defaults, the step's cgroup entered (before the child can fork
//! anything), a process group of its own, stdio, working directory, then `execve`. No page table
//! of orch's is copied, so a spawn costs the same with a 10-step or a 10,000-step manifest, with
//! cgroups or without.
//!
//! Owns every `unsafe` line that creates a process, and the [`Leader`] it returns (reaped once,
//! SIGKILLed if dropped unreaped). The child shares orch's memory until it execs, so what runs in
//! it must never allocate, lock, panic or touch anything but its [`Plan`] and its own stack:
//! everything it needs (paths, argv, environment, descriptors) is built before the clone. The
//! calling thread is suspended until the child has exec'd or exited; orch's other threads run on.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc::{self, c_char, c_int, c_void};

/// The child's stack. It runs one small function (no recursion, no allocation) and thin libc
/// wrappers; glibc's `posix_spawn` gets by with 32 KiB plus the argument size, nothing of which
/// goes on this stack here.
const STACK_BYTES: usize = 64 << 10;

/// Everything the child needs, built in orch before the clone (the child only reads it and
/// stores its error).
pub(crate) struct Plan {
    /// Where to exec, tried in order as `execvp` tries its `PATH` (see `launch::candidates`).
    candidates: Vec<CString>,
    /// Owns the strings `argv` and `envp` point into (but the inherited ones, which are static).
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    cwd: CString,
    /// The descriptors that become the child's 0, 1 and 2.
    stdio: [RawFd; 3],
    /// The step's `cgroup.procs`, open for writing, or -1.
    cgroup_procs: RawFd,
    /// The errno of the step that failed in the child, 0 while none did.
    error: AtomicI32,
}

impl Plan {
    /// A plan to run `argv` (its first element is argv[0], not looked up) from `candidates` in
    /// `cwd` with exactly the environment `inherited` (`KEY=VALUE` strings that live as long as
    /// orch) and `env`; the descriptors must stay open until [`start`] returns.
    pub(crate) fn new<'a>(
        candidates: &[PathBuf],
        argv: impl IntoIterator<Item = &'a OsStr>,
        inherited: impl IntoIterator<Item = &'static CStr>,
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
        cwd: &OsStr,
        stdio: [BorrowedFd<'_>; 3],
        cgroup_procs: Option<BorrowedFd<'_>>,
    ) -> io::Result<Plan> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nul byte found in provided data",
                )
            })
        };
        let mut strings = Vec::new();
        for arg in argv {
            strings.push(c(arg.as_bytes())?);
        }
        let args = strings.len();
        for (key, value) in env {
            strings.push(c(&[key.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
        let null_terminated = |strings: &[CString]| {
            let mut pointers: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
            pointers.push(std::ptr::null());
            pointers
        };
        let mut envp: Vec<_> = inherited.into_iter().map(CStr::as_ptr).collect();
        envp.extend(null_terminated(&strings[args..]));
        Ok(Plan {
            candidates: candidates
                .iter()
                .map(|path| c(path.as_os_str().as_bytes()))
                .collect::<io::Result<_>>()?,
            argv: null_terminated(&strings[..args]),
            envp,
            _strings: strings,
            cwd: c(cwd.as_bytes())?,
            stdio: stdio.map(|fd| fd.as_raw_fd()),
            cgroup_procs: cgroup_procs.map_or(-1, |fd| fd.as_raw_fd()),
            error: AtomicI32::new(0),
        })
    }
}

/// A started child, not yet reaped: its pid cannot be reused while this lives.
#[derive(Debug)]
pub(crate) struct Leader {
    pid: libc::pid_t,
    reaped: bool,
}

impl Leader {
    pub(crate) fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// How the child ended, if it has, without reaping it: `(code, signal)`.
    pub(crate) fn exit_status(&self) -> io::Result<Option<(Option<i32>, Option<i32>)>> {
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            return match waitid(Id::Pid(nix::unistd::Pid::from_raw(self.pid)), flags) {
                Ok(WaitStatus::Exited(_, code)) => Ok(Some((Some(code), None))),
                Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some((None, Some(signal as i32)))),
                Ok(_) => Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => Err(err.into()),
            };
        }
    }

    /// Reaps the child, waiting for it to exit if it has not.
    pub(crate) fn reap(&mut self) -> io::Result<ExitStatus> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid writes the status of our own child into `status`.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if ret == self.pid {
                self.reaped = true;
                return Ok(ExitStatus::from_raw(status));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for Leader {
    /// Reached unreaped only when its monitor is dropped (the runtime shutting down) or the
    /// spawn is refused: the child dies; its zombie goes with orch.
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill takes a pid and a signal; the pid is our unreaped child's.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Starts the child of `plan`: returns once it has exec'd, or the error that stopped it (it has
/// been reaped then).
pub(crate) fn start(plan: &Plan) -> io::Result<Leader> {
    let mut stack = Vec::<u128>::with_capacity(STACK_BYTES / size_of::<u128>());
    // SAFETY: one past the end of the allocation, 16-byte aligned (the top of a stack that grows
    // down); only the child writes below it, and the allocation outlives the child's use of it
    // (CLONE_VFORK: `clone` returns once the child has exec'd or exited).
    let top = unsafe { stack.as_mut_ptr().add(stack.capacity()) }.cast::<c_void>();
    plan.error.store(0, Ordering::Relaxed);

    // Every signal blocked across the clone: the child starts with orch's handlers and must not
    // run one of them on shared memory before it has reset them.
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads it and fills `old`.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
    }
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let arg = std::ptr::from_ref(plan).cast_mut().cast::<c_void>();
    // SAFETY: `child` only reads `plan` (alive: this thread is suspended until the child execs or
    // exits), stores into its atomic, and calls async-signal-safe functions on `stack`.
    let pid = unsafe { libc::clone(child, top, flags, arg) };
    let clone_error = io::Error::last_os_error();
    // SAFETY: `old` was filled by the call above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let mut leader = Leader { pid, reaped: false };
    match plan.error.load(Ordering::Relaxed) {
        0 => Ok(leader),
        errno => {
            // The child has exited (127) without exec: reap it, report why.
            let _ = leader.reap();
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// The child, from clone to exec. Returns (to `_exit`) only if a step failed.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&Plan` given to `clone`, alive while the parent is suspended.
    let plan = unsafe { &*arg.cast::<Plan>() };
    // SAFETY: the steps only read `plan` and make async-signal-safe calls.
    let errno = unsafe { prepare_and_exec(plan) };
    plan.error.store(errno, Ordering::Relaxed);
    // SAFETY: _exit ends the child without running anything of orch's (no atexit, no flush).
    unsafe { libc::_exit(127) }
}

/// The steps in the child; returns the errno of the one that failed (exec included).
///
/// SAFETY (for the caller): run only in the child of [`start`], with every signal blocked.
unsafe fn prepare_and_exec(plan: &Plan) -> c_int {
    // SAFETY: each call below is async-signal-safe and gets valid pointers from `plan` or the
    // stack; none allocates.
    unsafe {
        reset_signals();
        if plan.cgroup_procs >= 0 {
            // "0" moves the writer: from here on everything it forks is in the step's cgroup. A
            // failure leaves it to the group and the token (the scan finds it then).
            let _ = libc::write(plan.cgroup_procs, b"0".as_ptr().cast(), 1);
        }
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        for (target, &fd) in plan.stdio.iter().enumerate() {
            let target = target as c_int;
            // dup2 onto itself keeps close-on-exec set: clear it instead.
            let ok = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, target) == target
            };
            if !ok {
                return errno();
            }
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            return errno();
        }
        let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
        // As execvp goes through its PATH: past a missing entry, remembering a permission error.
        let mut denied = false;
        let mut last = libc::ENOENT;
        for path in &plan.candidates {
            libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            last = errno();
            match last {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return last,
            }
        }
        if denied { libc::EACCES } else { last }
    }
}

/// Sets every signal orch handles back to its default, as `posix_spawn` does (the child must
/// not run orch's handlers; `exec` would reset them anyway), and SIGPIPE too, which Rust ignores
/// and children must not. Ignored signals stay ignored, as across `exec`.
///
/// SAFETY (for the caller): run only in the child of [`start`].
unsafe fn reset_signals() {
    for sig in 1..=64 {
        let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: reading a disposition into a zeroed sigaction (glibc refuses its two internal
        // signals, leaving it zeroed, that is SIG_DFL).
        let handled = unsafe {
            libc::sigaction(sig, std::ptr::null(), action.as_mut_ptr());
            action.assume_init().sa_sigaction
        };
        if handled != libc::SIG_DFL && (handled != libc::SIG_IGN || sig == libc::SIGPIPE) {
            // SAFETY: a zeroed sigaction with SIG_DFL is a valid disposition.
            unsafe {
                let mut default = std::mem::zeroed::<libc::sigaction>();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
    }
}

/// The calling thread's errno (in the child: the suspended parent thread's, which it overwrites
/// harmlessly, as glibc's own `posix_spawn` child does).
fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}
