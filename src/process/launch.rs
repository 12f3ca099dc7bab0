//! What a child inherits besides its argv: where its program is looked up, and the signal
//! dispositions orch keeps so that every child starts with the defaults the stop ladder needs.
//!
//! Owns the list of paths a program is tried at ([`candidates`]: `execvp`'s search, but in the
//! job's own `PATH` when its environment sets one, and without the folders before the first that
//! holds it), and orch's handling of signals: a *handled* signal is reset to its default in the
//! child (by `vfork`, as by `exec`), an *ignored* one stays ignored. So orch never ignores
//! SIGINT, SIGTERM or SIGXFSZ; where it must not die of one (SIGXFSZ, or a signal it was started
//! with ignored) it handles it with a handler that does nothing.
//!
//! It must never change what runs: argv[0] stays the name the job gave, and a program found
//! nowhere is reported missing by the exec, as before.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Signals a child must start with at their default action: the ladder's first two rungs, and
/// the file-size limit (orch survives it, its children must not silently).
const DEFAULT_IN_CHILDREN: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGXFSZ];

/// The paths the child tries `program` at, in order, as `execvp` would ([`search`]), less the
/// absolute ones that do not exist now, up to the first that may. `execvp` would pass over those
/// too, but each failed `exec` in the child costs several microseconds (~6 here, with orch's
/// environment) while a look here costs about one; with eight folders before `/usr/bin` the
/// child's setup took 0.05 ms less (benchmarks.md). What runs is the same: a path that exists,
/// even one the child cannot exec, is still tried in its place, and one that appears between the
/// look and the exec is what a search a moment earlier would have missed too. Relative paths are
/// kept (they are taken from the job's working folder).
pub(crate) fn candidates(program: &Path, env: &[(OsString, OsString)]) -> Vec<PathBuf> {
    let mut paths = search(program, env);
    if looked_up(program) {
        // Up to the first path that may be there: the child tries those after it only if its
        // exec fails, so they are not looked at.
        let mut found = false;
        paths.retain(|path| {
            found = found || !path.is_absolute() || !missing(path);
            found
        });
    }
    paths
}

/// Whether `program` is looked up in `PATH` (a name without a slash) rather than tried as given.
fn looked_up(program: &Path) -> bool {
    !(program.as_os_str().as_bytes().contains(&b'/') || program.as_os_str().is_empty())
}

/// Whether `path` certainly does not exist: a folder on the way to it is missing or is not a
/// folder (an `exec` would fail with ENOENT or ENOTDIR and `execvp` try the next entry).
fn missing(path: &Path) -> bool {
    use nix::errno::Errno;
    matches!(
        nix::unistd::access(path, nix::unistd::AccessFlags::F_OK),
        Err(Errno::ENOENT | Errno::ENOTDIR)
    )
}

/// `execvp`'s search list for `program`: `program` itself when it has a slash (or is empty);
/// else `program` in each entry of the `PATH` in effect: the job's (its last setting, as in the
/// environment the child gets), else orch's, else `/bin:/usr/bin`. An empty entry is the working
/// directory; relative entries are taken from it too (the child changes to it before the exec).
fn search(program: &Path, env: &[(OsString, OsString)]) -> Vec<PathBuf> {
    if !looked_up(program) {
        return vec![program.to_path_buf()];
    }
    let job_path = env.iter().rev().find(|(key, _)| key == "PATH");
    let path = match job_path {
        Some((_, path)) => path.clone(),
        None => std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into()),
    };
    std::env::split_paths(&path)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                program.to_path_buf()
            } else {
                dir.join(program)
            }
        })
        .collect()
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
    fn looks_in_the_jobs_path_as_execvp_would() {
        let env = |path: &str| vec![("PATH".into(), OsString::from(path))];
        let tool = Path::new("tool");
        assert_eq!(
            search(tool, &env("/nowhere:bin::/usr/bin")),
            [
                PathBuf::from("/nowhere/tool"),
                "bin/tool".into(),
                "tool".into(),
                "/usr/bin/tool".into()
            ]
        );
        // A path already, or nothing: tried as given.
        assert_eq!(
            search(Path::new("./tool"), &env("bin")),
            [Path::new("./tool")]
        );
        assert_eq!(search(Path::new(""), &env("bin")), [Path::new("")]);
        // The last PATH of the job's environment is the one the child sees.
        let twice = vec![
            ("PATH".into(), "bin".into()),
            ("PATH".into(), "/nowhere".into()),
        ];
        assert_eq!(search(tool, &twice), [Path::new("/nowhere/tool")]);
        // No PATH of the job's own: orch's.
        let orchs = std::env::var_os("PATH").expect("the tests run with a PATH");
        assert_eq!(
            search(tool, &[]),
            std::env::split_paths(&orchs)
                .map(|dir| if dir.as_os_str().is_empty() {
                    tool.into()
                } else {
                    dir.join(tool)
                })
                .collect::<Vec<PathBuf>>()
        );
    }

    #[test]
    fn passes_over_what_does_not_exist_and_keeps_the_rest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (here, there, file) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("f"),
        );
        std::fs::create_dir(&here).unwrap();
        std::fs::create_dir(&there).unwrap();
        std::fs::write(here.join("tool"), "").unwrap();
        std::fs::write(there.join("tool"), "").unwrap();
        std::fs::write(&file, "").unwrap();
        let path = std::env::join_paths([
            dir.path().join("gone"),
            file.clone(),
            there.clone(),
            "rel".into(),
            here.clone(),
            dir.path().join("gone"),
        ])
        .unwrap();
        let env = vec![("PATH".into(), path)];
        // Missing, and under a file (ENOTDIR): dropped. From the first that is there on, all
        // stay in their order (not looked at): what the child execs first is what `execvp` would.
        assert_eq!(
            candidates(Path::new("tool"), &env),
            [
                there.join("tool"),
                "rel/tool".into(),
                here.join("tool"),
                dir.path().join("gone/tool")
            ]
        );
        // Found nowhere: nothing to try, and the exec reports it missing (ENOENT), as before.
        let nowhere = vec![("PATH".into(), dir.path().join("gone").into_os_string())];
        assert_eq!(search(Path::new("tool"), &nowhere).len(), 1);
        assert!(candidates(Path::new("tool"), &nowhere).is_empty());
        // A path given with a slash is tried as given, existing or not.
        assert_eq!(
            candidates(Path::new("/nowhere/tool"), &env),
            [Path::new("/nowhere/tool")]
        );
    }
}
