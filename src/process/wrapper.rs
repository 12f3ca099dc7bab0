//! The step wrapper that runs on a Slurm node (orch's hidden `__slurm_step` subcommand): it keeps
//! the no-survivor rule where orch cannot reach.
//!
//! It makes itself a child subreaper, refuses a working directory that does not exist on the node,
//! runs the step's leader with the default SIGINT and SIGTERM (it ignores both itself, so that
//! `scancel --signal`, which reaches every process of the step, stops the leader and not its
//! reporter), and when the leader exits kills what is left of its descendants and prints a
//! trailer ([`super::relay`]) with the exit code, the signal and the leaked pids. It must never
//! write to stdout (the step's output goes there untouched) nor outlive its leader's leftovers.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::relay::{Placement, Trailer};

/// Runs `argv` in `cwd` as the step's leader and reports how it ended; see the module docs.
pub fn main(cwd: PathBuf, argv: Vec<OsString>) -> ExitCode {
    let placement = Placement::from_env();
    eprintln!("{}", placement.line());
    let Some((program, args)) = argv.split_first() else {
        return refuse("the step wrapper was given no command".into());
    };
    if !cwd.is_dir() {
        return refuse(format!(
            "the working directory {} does not exist on node {}: the workspace must be on a \
             filesystem every node shares (the same path), or set the job's `workspace` to one",
            cwd.display(),
            placement.node
        ));
    }
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // SAFETY: ignoring a signal installs no handler.
    unsafe {
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
    let mut command = Command::new(program);
    command.args(args).current_dir(&cwd);
    // SAFETY: restoring default dispositions is async-signal-safe and does not allocate.
    unsafe {
        command.pre_exec(|| {
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                signal(sig, SigHandler::SigDfl)?;
            }
            Ok(())
        });
    }
    let mut leader = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return refuse(format!("cannot start `{}`: {e}", program.to_string_lossy()));
        }
    };
    let status = leader.wait();
    let leaked = kill_leftovers();
    let trailer = match status {
        Ok(status) => Trailer {
            code: status.code(),
            signal: status.signal(),
            leaked,
            error: None,
        },
        Err(e) => Trailer {
            code: None,
            signal: None,
            leaked,
            error: Some(format!("waiting for the step failed: {e}")),
        },
    };
    eprintln!("{}", trailer.line());
    // The trailer is the exit; a non-zero one here would only make `srun` print a line of its
    // own into the step's stderr.
    ExitCode::SUCCESS
}

fn refuse(error: String) -> ExitCode {
    eprintln!("orch: {error}");
    let trailer = Trailer {
        code: None,
        signal: None,
        leaked: Vec::new(),
        error: Some(error),
    };
    eprintln!("{}", trailer.line());
    ExitCode::SUCCESS
}

/// SIGKILLs every descendant still alive (orphans were re-parented to us, the subreaper) and
/// reaps them; returns their pids, found before anything was killed.
fn kill_leftovers() -> Vec<u32> {
    // The common case costs one syscall: a subreaper without children has no descendants (a
    // live descendant's topmost ancestor below us is our child, re-parented if need be), so
    // the scan of /proc, which reads every process's stat on the node, is skipped.
    if !has_children() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut found = Vec::new();
    // A descendant may fork while we look: scan until a pass finds nothing new.
    loop {
        let fresh: Vec<u32> = descendants(me)
            .into_iter()
            .filter(|p| !found.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &pid in &fresh {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        found.extend(fresh);
    }
    // Reap them all (they are our children now, or will be once their parents die).
    while waitpid(Pid::from_raw(-1), None).is_ok() {}
    found.sort_unstable();
    found
}

/// Whether any child of ours, alive or a zombie, is left to wait for (without reaping it).
fn has_children() -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::All, flags) {
            Err(nix::errno::Errno::ECHILD) => return false,
            Err(nix::errno::Errno::EINTR) => {}
            _ => return true,
        }
    }
}

/// Pids of every process below `root`, read from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The name may hold spaces and parentheses: the fields follow the last ')'.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            // A zombie is dead already; it is reaped below, not reported.
            if let (Some(ppid), false) = (ppid, state == Some("Z")) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    out.remove(0);
    out
}
