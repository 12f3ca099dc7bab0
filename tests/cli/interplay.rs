//! Where retries, resume, worktrees and secrets (issues 13 and 14) meet: each test is a case a
//! review of their merge found broken, and each failed before its fix.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::harness::Test;

/// git in `dir` with a fixed identity and no user or system configuration; stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test folder that is a git repository with `orch.toml` committed.
fn repo(manifest: &str) -> Test {
    let t = Test::new()
        .file("orch.toml", manifest)
        .file(".gitignore", ".orch/\nhome/\nsim/\n");
    let dir = t.path().to_path_buf();
    git(&dir, &["init", "--quiet", "--initial-branch=main"]);
    git(&dir, &["add", "--all"]);
    git(&dir, &["commit", "--quiet", "-m", "start"]);
    let state = dir.join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
}

/// Every run's results file, oldest first.
fn all_results(t: &Test) -> Vec<Value> {
    let mut dirs: Vec<_> = std::fs::read_dir(t.path().join(".orch/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("results.json")).ok())
        .map(|s| serde_json::from_str(&s).unwrap())
        .collect()
}

/// `orch resume` of a failed isolated job that names its `branch`: the first run made the
/// branch (and kept its worktree, `keep = "on_failure"`), so the resumed run refuses to start the
/// job ("the branch exists already") and can never complete it. A resume must continue the
/// job on its own branch (where its earlier work is), not fail it.
#[test]
fn resume_of_a_failed_isolated_job_with_a_named_branch_runs_it_again() {
    let t = repo(
        r#"[settings]
startup_delay = "0s"
[jobs.impl]
isolation = "worktree"
branch = "feature/impl"
shell = "echo work > work.txt; test -f ../../../../go"
"#,
    );
    // The worktree is `.orch/worktrees/<run>/impl`: `../../../../go` is the test folder's `go`.
    let dir = t.path().to_path_buf();
    let first = t.with_args(&["run", "--quiet"]).output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(1),
        "the first run fails on purpose"
    );
    // The fix the user makes: the job can now succeed.
    std::fs::write(dir.join("go"), "").unwrap();
    let out = t
        .with_args(&["resume", "latest", "--no-progress"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = all_results(&t);
    let last = all.last().unwrap();
    assert_eq!(
        last["instances"]["impl"]["status"], "completed",
        "the resumed job should run on its branch; orch said:\n{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        git(&dir, &["show", "feature/impl:work.txt"]),
        "work",
        "the job's work is on its branch"
    );
}

/// An isolated agent job fails once (after a turn that wrote `out.txt` in its worktree) and its
/// retry is refused by a block-mode budget: the job ends blocked, but its worktree is never
/// finished — what it wrote stays uncommitted, the branch has no commit and the outputs have no
/// `branch`. Any other end of an isolated job (failure, Ctrl-C) commits the work to its branch.
#[test]
fn an_isolated_job_whose_retry_is_refused_still_commits_its_work() {
    let t = repo(
        r#"[settings]
startup_delay = "0s"
[budget]
mode = "block"
tokens = 2000
[jobs.a]
prompt = "a"
isolation = "worktree"
env = { ORCH_SIM_FAIL = "overloaded", ORCH_SIM_FAIL_AFTER_TURNS = "1", ORCH_SIM_WRITE = "out.txt" }
retry = { attempts = 3, backoff = "1500ms", jitter = false }
[jobs.big]
prompt = "big"
env = { ORCH_SIM_TOKENS_PER_TURN = "5000", ORCH_SIM_DELAY_MS = "400" }
"#,
    )
    .env("ORCH_SIM_DELAY_MS", "5")
    .args(&["run", "--simulate", "--no-progress"])
    .status(3);
    t.run();
    let dir = t.path().to_path_buf();
    let v = all_results(&t).pop().unwrap();
    let a = &v["instances"]["a"];
    assert_eq!(a["status"], "blocked", "{a:#}");
    let branches = git(
        &dir,
        &["branch", "--list", "orch/*", "--format=%(refname:short)"],
    );
    let branch = branches.lines().next().expect("the job's branch");
    assert_eq!(
        git(&dir, &["rev-list", "--count", &format!("main..{branch}")]),
        "1",
        "what the job wrote (out.txt) should be committed to {branch}; outputs: {}",
        a["outputs"]
    );
    // The job never completed an attempt, so it has no outputs; its work is on its branch.
}

/// A variable secret by its name (`GITHUB_TOKEN`) whose value is a template (mapping the host's
/// `GH_PAT` in) is masked by its template text, not by its value: the real token is printed on the terminal and written to the events
/// and the results file.
#[test]
fn a_secret_whose_value_is_a_template_is_masked_by_its_rendered_value() {
    let token = "ghp_REVIEW3_MARKER_0123456789";
    let manifest = r#"[settings]
startup_delay = "0s"
[jobs.a]
env = { GITHUB_TOKEN = "${{ env.GH_PAT }}" }
shell = "echo token=$GITHUB_TOKEN; echo failed with $GITHUB_TOKEN >&2; exit 1"
"#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("GH_PAT", token)
        .args(&["run", "--no-progress", "--events", "events.ndjson"])
        .status(1);
    let out = t.run();
    let events = std::fs::read_to_string(t.path().join("events.ndjson")).unwrap();
    let results = serde_json::to_string(&all_results(&t)).unwrap();
    for (what, text) in [
        ("terminal", format!("{}{}", out.stdout, out.stderr)),
        ("events", events),
        ("results", results),
    ] {
        assert!(
            !text.contains(token),
            "the GITHUB_TOKEN value is in the {what}:\n{text}"
        );
    }
}

/// `orch resume` of an isolated job whose `setup` step completed and whose main step failed: the
/// setup step is reused, and since the worktree is made only when a chain's first step launches,
/// the main step runs in the user's main checkout — it writes there, and nothing is committed
/// to a branch. A resumed isolated job must run in a worktree (again, or its kept one).
#[test]
fn a_resumed_isolated_job_never_runs_in_the_main_checkout() {
    let t = repo(
        r#"[settings]
startup_delay = "0s"
[jobs.impl]
isolation = "worktree"
setup = ["echo setup > setup.txt"]
shell = "echo work > work.txt; pwd > ../../../../where; test -f ../../../../go"
"#,
    );
    let dir = t.path().to_path_buf();
    let first = t.with_args(&["run", "--quiet"]).output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(1),
        "the first run fails on purpose"
    );
    std::fs::write(dir.join("go"), "").unwrap();
    let out = t
        .with_args(&["resume", "latest", "--no-progress"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !dir.join("work.txt").exists(),
        "the resumed step wrote work.txt into the main checkout:\n{stdout}"
    );
    // Only the test's own files (`go`, and `where`, which the step wrote from its worktree).
    let status = git(&dir, &["status", "--porcelain", "--untracked-files=all"]);
    let left: Vec<&str> = status
        .lines()
        .filter(|l| *l != "?? go" && *l != "?? where")
        .collect();
    assert!(left.is_empty(), "the main checkout changed: {left:?}");
    let wt = std::fs::read_to_string(dir.join("where")).unwrap();
    assert!(wt.contains(".orch/worktrees/"), "the step ran in {wt}");
}
