//! Git worktrees for isolated jobs (`isolation = "worktree"`), through the git CLI users have.
//!
//! It owns every git operation of a job's worktree: creating it on a new branch from a base,
//! copying the ignored files `.worktreeinclude` names, running the job's `setup` commands,
//! committing what the job left, counting what changed, and removing it. Operations that touch a
//! repository's shared state (refs, the worktree list, commits) are serialised per repository, so
//! twenty jobs starting at once do not race for git's lock files.
//!
//! It never decides when any of this happens (the runner's core does) and never leaves an
//! operation half done without saying so: a failed creation is rolled back, and every error says
//! what git answered and what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::errors::Error;
use crate::manifest::Manifest;

/// What to create for one job instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepare {
    /// The job's workspace: a folder inside the repository to branch.
    pub workspace: PathBuf,
    /// Where the worktree goes (it must not exist).
    pub dir: PathBuf,
    /// The new branch (it must not exist).
    pub branch: String,
    /// The commit or ref the branch starts from; `None` is the workspace's `HEAD`.
    pub base: Option<String>,
    /// The run resumes one that may have made this branch: a branch that exists is continued
    /// (checked out again, or its kept worktree reused), not refused.
    pub resume: bool,
}

/// A worktree that exists, ready for the job's steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The worktree's top folder.
    pub dir: PathBuf,
    /// Where the job's steps run: the workspace's place inside the worktree.
    pub cwd: PathBuf,
    pub branch: String,
    /// The full id of the commit the branch started from.
    pub base_commit: String,
    /// The ignored files copied because `.worktreeinclude` names them.
    pub included: usize,
}

/// What to do with a worktree when its job ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    pub prepared: Prepared,
    /// Commit what the job left uncommitted (with this message).
    pub commit: Option<String>,
    /// Remove the worktree afterwards (the branch stays).
    pub remove: bool,
}

/// What a job did on its branch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finished {
    /// The branch's last commit.
    pub commit: String,
    /// Whether orch made a commit of what the job left.
    pub committed: bool,
    /// Between the base and the branch's last commit.
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    /// Whether the worktree was removed.
    pub removed: bool,
}

/// Checks, before anything runs, that every isolated job's workspace is in a git repository,
/// and clean when the job has `require_clean = true` (a templated workspace is checked when its
/// job starts).
pub fn check(m: &Manifest) -> Result<(), Error> {
    for job in &m.jobs {
        let Some(iso) = &job.isolation else {
            continue;
        };
        if job.workspace.to_string_lossy().contains("${{") {
            continue;
        }
        repository(&job.workspace).map_err(|reason| Error::NotARepository {
            job: job.name.clone(),
            workspace: job.workspace.clone(),
            reason,
        })?;
        if iso.require_clean {
            let changes = uncommitted(&job.workspace).map_err(|reason| Error::NotARepository {
                job: job.name.clone(),
                workspace: job.workspace.clone(),
                reason,
            })?;
            if !changes.is_empty() {
                let mut list: Vec<String> = changes.iter().take(5).cloned().collect();
                if changes.len() > 5 {
                    list.push(format!("and {} more", changes.len() - 5));
                }
                return Err(Error::DirtyWorkspace {
                    job: job.name.clone(),
                    workspace: job.workspace.clone(),
                    changes: list.join(", "),
                });
            }
        }
    }
    Ok(())
}

/// Checks, as `orch run` starts, that no isolated job's `branch` written without templates
/// exists already (a templated one is checked when its job starts).
pub fn check_branches(m: &Manifest) -> Result<(), Error> {
    for job in &m.jobs {
        let Some(branch) = job.isolation.as_ref().and_then(|i| i.branch.as_ref()) else {
            continue;
        };
        if branch.contains("${{") || job.workspace.to_string_lossy().contains("${{") {
            continue;
        }
        let Ok(repo) = repository(&job.workspace) else {
            continue; // `check` reported it
        };
        let reference = format!("refs/heads/{branch}");
        if git(&repo, &["show-ref", "--verify", "--quiet", &reference]).is_ok() {
            return Err(Error::BranchExists {
                job: job.name.clone(),
                branch: branch.clone(),
                repo,
            });
        }
    }
    Ok(())
}

/// The short id of the commit `rev` names in `workspace`'s repository, if it names one.
pub fn short_commit(workspace: &Path, rev: &str) -> Option<String> {
    if !workspace.is_dir() {
        return None;
    }
    let spec = format!("{rev}^{{commit}}");
    git(
        workspace,
        &["rev-parse", "--short", "--verify", "--quiet", &spec],
    )
    .ok()
    .map(|s| s.trim().to_string())
}

/// The top folder of the git repository holding `workspace`; the error says why there is none.
pub fn repository(workspace: &Path) -> Result<PathBuf, String> {
    git(workspace, &["rev-parse", "--show-toplevel"]).map(|s| PathBuf::from(s.trim()))
}

/// The tracked files of `workspace`'s checkout with uncommitted changes (staged or not), as
/// `git status --porcelain` shows them.
pub fn uncommitted(workspace: &Path) -> Result<Vec<String>, String> {
    let out = git(
        workspace,
        &["status", "--porcelain", "--untracked-files=no", "."],
    )?;
    Ok(out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect())
}

/// The default branch of an instance: `orch/<run-short-id>/<job>`, the job's name made a valid
/// branch name (see [`branch_component`]).
pub fn default_branch(run_short_id: &str, instance: &str) -> String {
    format!(
        "orch/{}/{}",
        branch_component(run_short_id),
        branch_component(instance)
    )
}

/// A name as one component of a branch name: every character other than an ASCII letter, digit,
/// `-`, `_` or `.` becomes `-` (so `test[a, b]` becomes `test-a-b`), runs of `-` and `.` are
/// collapsed, and a leading or trailing `-` or `.` and a trailing `.lock` are dropped.
pub fn branch_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            c
        } else {
            '-'
        };
        let last = out.chars().last();
        if (c == '-' || c == '.') && (last == Some('-') || last == Some('.')) {
            continue;
        }
        out.push(c);
    }
    let mut s = out.trim_matches(|c| c == '-' || c == '.').to_string();
    while let Some(stripped) = s.strip_suffix(".lock") {
        s = stripped.trim_end_matches(['-', '.']).to_string();
    }
    if s.is_empty() { "job".into() } else { s }
}

/// Creates the worktree, copies the `.worktreeinclude` files and runs `setup`. On any failure
/// after the worktree was made, it is removed and its new branch deleted, and the error says so.
pub fn prepare(p: &Prepare) -> Result<Prepared, String> {
    let top = repository(&p.workspace)?;
    let prefix = git(&p.workspace, &["rev-parse", "--show-prefix"])?;
    let prefix = prefix.trim();
    if git(&top, &["check-ref-format", "--branch", &p.branch]).is_err() {
        return Err(format!(
            "`{}` is not a valid git branch name; set `branch` to one (no spaces, `..`, `~`, `^`, `:`, `[` or a trailing `.lock`)",
            p.branch
        ));
    }
    let base = p.base.as_deref().unwrap_or("HEAD");
    let lock = repo_lock(&top)?;
    let base_commit = {
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let spec = format!("{base}^{{commit}}");
        let base_commit = git(&p.workspace, &["rev-parse", "--verify", "--quiet", &spec])
            .map(|s| s.trim().to_string())
            .map_err(|_| {
                format!(
                    "the base `{base}` is not a commit of {}; set `base` to a branch, tag or commit that exists",
                    top.display()
                )
            })?;
        let reference = format!("refs/heads/{}", p.branch);
        let exists = git(&top, &["show-ref", "--verify", "--quiet", &reference]).is_ok();
        if exists && p.resume {
            // A resumed job goes on where it stopped: on its branch, in its kept worktree when
            // there is one. What the branch holds beyond the base counts as its work.
            let kept = p.dir.join(".git").exists()
                && git(&p.dir, &["rev-parse", "--abbrev-ref", "HEAD"])
                    .is_ok_and(|head| head.trim() == p.branch);
            if !kept {
                if p.dir.exists() {
                    return Err(format!(
                        "the worktree folder {} exists already and is not on `{}`; remove it (`git worktree remove --force {}`) and resume again",
                        p.dir.display(),
                        p.branch,
                        p.dir.display()
                    ));
                }
                if let Some(parent) = p.dir.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                    ignore_worktrees(parent);
                }
                let dir = p.dir.to_string_lossy();
                git(&top, &["worktree", "add", "--quiet", &dir, &p.branch])?;
            }
            let fork = git(&top, &["merge-base", &p.branch, &base_commit])
                .map(|s| s.trim().to_string())
                .unwrap_or(base_commit);
            let cwd = if prefix.is_empty() {
                p.dir.clone()
            } else {
                p.dir.join(prefix)
            };
            drop(_held);
            let included = copy_included(&top, &p.dir)?;
            return Ok(Prepared {
                dir: p.dir.clone(),
                cwd,
                branch: p.branch.clone(),
                base_commit: fork,
                included,
            });
        }
        if exists {
            return Err(format!(
                "the branch `{}` exists already in {}; choose another `branch`, or delete it with `git branch -D {}`",
                p.branch,
                top.display(),
                p.branch
            ));
        }
        if p.dir.exists() {
            return Err(format!(
                "the worktree folder {} exists already; remove it (`git worktree remove --force {}`) and run again",
                p.dir.display(),
                p.dir.display()
            ));
        }
        if let Some(parent) = p.dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            ignore_worktrees(parent);
        }
        let dir = p.dir.to_string_lossy();
        git(
            &top,
            &[
                "worktree",
                "add",
                "--quiet",
                "-b",
                &p.branch,
                &dir,
                &base_commit,
            ],
        )?;
        base_commit
    };
    let prepared = Prepared {
        dir: p.dir.clone(),
        cwd: if prefix.is_empty() {
            p.dir.clone()
        } else {
            p.dir.join(prefix)
        },
        branch: p.branch.clone(),
        base_commit,
        included: 0,
    };
    // The job's `setup` commands are the first steps of its chain (see `plan`), not run here.
    let rest = || -> Result<usize, String> { copy_included(&top, &p.dir) };
    match rest() {
        Ok(included) => Ok(Prepared {
            included,
            ..prepared
        }),
        Err(why) => {
            let undo = remove(&top, &lock, &prepared.dir)
                .and_then(|()| delete_branch(&top, &lock, &prepared.branch));
            Err(match undo {
                Ok(()) => format!(
                    "{why} (the worktree was removed and its branch `{}` deleted)",
                    prepared.branch
                ),
                Err(e) => format!(
                    "{why}; removing the worktree {} failed too: {e}",
                    prepared.dir.display()
                ),
            })
        }
    }
}

/// Commits what the job left (unless told not to), counts what changed since the base and removes
/// the worktree if asked.
pub fn finish(f: &Finish) -> Result<Finished, String> {
    let p = &f.prepared;
    let top = repository(&p.dir)?;
    let lock = repo_lock(&top)?;
    let mut out = Finished::default();
    if let Some(message) = &f.commit {
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        git(&p.dir, &["add", "--all"])?;
        // `diff --cached --quiet` exits 1 when something is staged.
        if git(&p.dir, &["diff", "--cached", "--quiet"]).is_err() {
            let mut args: Vec<&str> = Vec::new();
            // A machine without a git identity (a CI container) still gets its commit.
            let has_identity = git(&p.dir, &["config", "user.email"]).is_ok()
                && git(&p.dir, &["config", "user.name"]).is_ok();
            if !has_identity {
                args.extend(["-c", "user.name=orch", "-c", "user.email=orch@localhost"]);
            }
            args.extend(["commit", "--quiet", "--no-verify", "-m", message]);
            git(&p.dir, &args)?;
            out.committed = true;
        }
    }
    out.commit = git(&p.dir, &["rev-parse", "HEAD"])?.trim().to_string();
    let numstat = git(&p.dir, &["diff", "--numstat", &p.base_commit, &out.commit])?;
    for line in numstat.lines().filter(|l| !l.is_empty()) {
        let mut cols = line.split('\t');
        out.files_changed += 1;
        // A binary file shows `-` for both counts.
        out.insertions += cols.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        out.deletions += cols.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    }
    if f.remove {
        remove(&top, &lock, &p.dir)?;
        out.removed = true;
    }
    Ok(out)
}

/// Makes the checkout that holds the state folder ignore the worktrees under `run_dir`'s parent
/// (`<state_dir>/worktrees`), so that a `git add --all` there never adds them as embedded
/// repositories. Each worktree reads only its own `.gitignore` files, so this one does not reach
/// into them. Best effort: a folder that cannot take the file is left as it is.
fn ignore_worktrees(run_dir: &Path) {
    if let Some(worktrees) = run_dir.parent() {
        let file = worktrees.join(".gitignore");
        if !file.exists() {
            let _ = std::fs::write(
                file,
                "# orch: job worktrees, each a checkout of its own\n*\n",
            );
        }
    }
}

/// The lock of the repository at `top` (by its shared git folder, so that a repository reached
/// through two worktrees has one lock).
fn repo_lock(top: &Path) -> Result<Arc<Mutex<()>>, String> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let common = git(top, &["rev-parse", "--git-common-dir"])?;
    let common = top.join(common.trim());
    let key = std::fs::canonicalize(&common).unwrap_or(common);
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Ok(locks.entry(key).or_default().clone())
}

fn remove(top: &Path, lock: &Mutex<()>, dir: &Path) -> Result<(), String> {
    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dir.to_string_lossy();
    git(top, &["worktree", "remove", "--force", &dir]).map(|_| ())
}

fn delete_branch(top: &Path, lock: &Mutex<()>, branch: &str) -> Result<(), String> {
    let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
    git(top, &["branch", "--quiet", "-D", branch]).map(|_| ())
}

/// Copies the untracked, ignored files of the main checkout that `.worktreeinclude` (gitignore
/// patterns, at the repository's top) names, as Claude Code does; returns how many.
fn copy_included(top: &Path, dir: &Path) -> Result<usize, String> {
    let include = top.join(".worktreeinclude");
    if !include.is_file() {
        return Ok(0);
    }
    let from = format!("--exclude-from={}", include.display());
    let named = git(top, &["ls-files", "-z", "--others", "--ignored", &from])?;
    // Ignored folders come as one entry ending in `/` (a `node_modules` is not listed file by file).
    let ignored = git(
        top,
        &[
            "ls-files",
            "-z",
            "--others",
            "--ignored",
            "--exclude-standard",
            "--directory",
        ],
    )?;
    let ignored: Vec<&str> = ignored.split('\0').filter(|r| !r.is_empty()).collect();
    let is_ignored = |rel: &str| {
        ignored
            .iter()
            .any(|i| *i == rel || (i.ends_with('/') && rel.starts_with(i)))
    };
    let mut copied = 0;
    for rel in named.split('\0').filter(|r| !r.is_empty() && is_ignored(r)) {
        let (src, dst) = (top.join(rel), dir.join(rel));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::copy(&src, &dst).map_err(|e| {
            format!(
                "cannot copy {} (named by .worktreeinclude) to {}: {e}",
                src.display(),
                dst.display()
            )
        })?;
        copied += 1;
    }
    Ok(copied)
}

/// Runs git in `cwd`; its stdout, or an error with its stderr. A lock file another git process
/// holds is waited for a little (git itself fails at once).
fn git(cwd: &Path, args: &[&str]) -> Result<String, String> {
    let mut attempt = 0;
    loop {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| {
                format!("cannot run git ({e}); install git, or put it on PATH, to isolate jobs in worktrees")
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        attempt += 1;
        if attempt < 20 && stderr.contains(".lock") {
            std::thread::sleep(Duration::from_millis(50 * attempt));
            continue;
        }
        let mut message = format!("`git {}` failed in {}", args.join(" "), cwd.display());
        match (out.status.code(), stderr.is_empty()) {
            (Some(code), true) => message.push_str(&format!(" (exit code {code})")),
            (Some(code), false) => message.push_str(&format!(" (exit code {code}): {stderr}")),
            (None, _) => message.push_str(" (killed by a signal)"),
        }
        return Err(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_become_branch_components() {
        assert_eq!(branch_component("impl"), "impl");
        assert_eq!(branch_component("test[a, b]"), "test-a-b");
        assert_eq!(branch_component("my job"), "my-job");
        assert_eq!(branch_component("..x..y.lock"), "x.y");
        assert_eq!(branch_component("[]"), "job");
        assert_eq!(branch_component("feat/ü"), "feat");
        assert_eq!(
            default_branch("1a2b3c4d", "review[src/a.rs]"),
            "orch/1a2b3c4d/review-src-a.rs"
        );
    }
}
