//! What keeps every spawn on std's `posix_spawn` path (a `CLONE_VM | CLONE_VFORK` clone: none of
//! orch's page tables are copied, so a spawn costs the same with a 10-step or a 10,000-step
//! manifest): no `pre_exec` hook, and a program path with a slash whenever the job's environment
//! sets `PATH` (std then falls back to fork, because `posix_spawnp` would search orch's `PATH`).
//!
//! Owns the lookup of a program in the job's `PATH`, and the signal dispositions orch keeps so that
//! `exec` alone gives a child the defaults the stop ladder needs: a *handled* signal is reset to
//! its default by `exec`, an *ignored* one stays ignored. So orch never ignores SIGINT, SIGTERM or
//! SIGXFSZ; where it must not die of one (SIGXFSZ, or a signal it was started with ignored) it
//! handles it with a handler that does nothing.
//!
//! It must never change what runs: a program it cannot find is left to the spawn (which reports it
//! missing as before), and argv[0] stays the name the job gave.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Signals a child must start with at their default action: the ladder's first two rungs, and
/// the file-size limit (orch survives it, its children must not silently).
const DEFAULT_IN_CHILDREN: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGXFSZ];

/// The program to hand to the spawn when the job's environment sets `PATH` and `program` has no
/// slash: its first executable match in that `PATH` (relative entries are taken from `cwd`, as
/// the child's `execvp` would). `None` means "spawn `program` as given".
pub(crate) fn resolve(program: &Path, env: &[(OsString, OsString)], cwd: &Path) -> Option<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') || program.as_os_str().is_empty() {
        return None;
    }
    // The last setting wins, as in the environment the child would get.
    let path = env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")?
        .1
        .as_os_str();
    std::env::split_paths(path)
        .map(|dir| {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            cwd.join(dir).join(program)
        })
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Makes orch handle (with a handler that does nothing) SIGXFSZ, and SIGINT or SIGTERM if it was
/// started with them ignored, so that every child starts with their defaults. A write past the
/// file-size limit (`ulimit -f`) then fails with EFBIG instead of killing orch: a log or results
/// file that cannot grow is a fault to report, and orch dying of it would lose the run's summary.
/// Handlers installed later (tokio's for SIGINT and SIGTERM) replace these; they are handlers too.
pub fn prepare_signals() {
    for sig in DEFAULT_IN_CHILDREN {
        if sig == Signal::SIGXFSZ || ignored(sig) {
            let ignore = SigAction::new(
                SigHandler::Handler(do_nothing),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            // SAFETY: `do_nothing` is async-signal-safe (it does nothing).
            let _ = unsafe { sigaction(sig, &ignore) };
        }
    }
}

/// [`prepare_signals`], once per process, before the first spawn.
pub(crate) fn prepare_signals_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(prepare_signals);
}

extern "C" fn do_nothing(_: nix::libc::c_int) {}

/// Whether `sig` is ignored in orch now (read without changing it).
fn ignored(sig: Signal) -> bool {
    let mut old = std::mem::MaybeUninit::<nix::libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`.
    let read = unsafe {
        nix::libc::sigaction(sig as nix::libc::c_int, std::ptr::null(), old.as_mut_ptr())
    };
    // SAFETY: on success the kernel filled `old` (and zeroed memory is a valid sigaction anyway).
    read == 0 && unsafe { old.assume_init() }.sa_sigaction == nix::libc::SIG_IGN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_against_the_jobs_path_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("tool");
        std::fs::write(bin.join("plain"), "not executable").expect("plain");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let env = |path: &str| vec![("PATH".into(), OsString::from(path))];
        let cwd = dir.path();
        assert_eq!(
            resolve(Path::new("tool"), &env("/nowhere:bin"), cwd),
            Some(cwd.join("bin/tool"))
        );
        assert_eq!(
            resolve(Path::new("tool"), &env(&bin.display().to_string()), cwd),
            Some(tool.clone())
        );
        // Not executable, not found, a path already, or no PATH of the job's own: left as given.
        assert_eq!(resolve(Path::new("plain"), &env("bin"), cwd), None);
        assert_eq!(resolve(Path::new("missing"), &env("bin"), cwd), None);
        assert_eq!(resolve(&tool, &env("bin"), cwd), None);
        assert_eq!(resolve(Path::new("tool"), &[], cwd), None);
        // The last PATH of the job's environment is the one the child sees.
        let twice = vec![
            ("PATH".into(), "bin".into()),
            ("PATH".into(), "/nowhere".into()),
        ];
        assert_eq!(resolve(Path::new("tool"), &twice, cwd), None);
    }
}
