//! Jobs isolated in git worktrees, end to end: real git, the real binary, real processes and the
//! simulated agent. Each test makes its own repository in the test folder.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::harness::Test;

/// git in `dir`, with an identity and no user or system configuration; its stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs (install git to run these tests)");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test whose folder is a git repository with `orch.toml` (and `files`) committed; orch's
/// state, the harness's home and the simulated agent's folder are ignored.
fn repo(manifest: &str, files: &[(&str, &str)]) -> Test {
    let mut t = Test::new()
        .file("orch.toml", manifest)
        .file(".gitignore", ".orch/\nhome/\nsim/\n");
    for (name, text) in files {
        t = t.file(name, text);
    }
    let dir = t.path().to_path_buf();
    git(&dir, &["init", "--quiet", "--initial-branch=main"]);
    git(&dir, &["add", "--all"]);
    git(&dir, &["commit", "--quiet", "-m", "start"]);
    let state = dir.join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
        .env("ORCH_SIM_DELAY_MS", "0")
}

/// The results of the only run in the test's state folder.
fn results(t: &Test) -> Value {
    let runs = t.path().join(".orch/runs");
    let dir = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

fn outputs<'a>(v: &'a Value, job: &str) -> &'a Value {
    let o = &v["instances"][job]["outputs"];
    assert!(o.is_object(), "no outputs of {job} in {v:#}");
    o
}

/// The worktrees git knows of, the main checkout first.
fn worktrees(dir: &Path) -> Vec<String> {
    git(dir, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(str::to_string)
        .collect()
}

/// Four jobs at once, two processes and two simulated agents (one a chain of two steps, both in
/// the worktree), each writes `same.txt`: four branches, each with its own commit of its own
/// content, and the main checkout untouched.
#[test]
fn four_parallel_isolated_jobs_write_the_same_file_on_their_own_branches() {
    let manifest = r#"[settings]
startup_delay = "0s"

[defaults]
isolation = "worktree"

[jobs.sh1]
shell = "echo sh1 > same.txt"

[jobs.sh2]
run = ["sh", "-c", "echo sh2 > same.txt"]

[jobs.agent1]
prompt = "agent1"
env = { ORCH_SIM_WRITE = "same.txt" }

[jobs.agent2]
pre_commands = ["first"]
prompt = "agent2"
env = { ORCH_SIM_WRITE = "same.txt" }
"#;
    let t = repo(manifest, &[]).args(&["run", "--simulate", "--quiet"]);
    t.run();
    let dir = t.path();
    let v = results(&t);
    let head = git(dir, &["rev-parse", "HEAD"]);
    let run_id = v["metadata"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let short = run_id.rsplit('-').next().unwrap().to_string();
    let mut commits = std::collections::HashSet::new();
    for job in ["sh1", "sh2", "agent1", "agent2"] {
        let o = outputs(&v, job);
        let branch = o["branch"].as_str().unwrap();
        assert_eq!(branch, format!("orch/{short}/{job}"), "{o:#}");
        assert_eq!(o["base"], head, "{o:#}");
        assert_eq!(o["files_changed"], 1, "{o:#}");
        assert_eq!(o["insertions"], 1, "{o:#}");
        assert_eq!(o["deletions"], 0, "{o:#}");
        let commit = o["commit"].as_str().unwrap();
        assert_eq!(git(dir, &["rev-parse", branch]), commit);
        assert_eq!(git(dir, &["rev-parse", &format!("{commit}^")]), head);
        assert_eq!(git(dir, &["show", &format!("{branch}:same.txt")]), job);
        let subject = git(dir, &["log", "-1", "--format=%s", branch]);
        assert!(
            subject.contains(job) && subject.contains(&run_id),
            "{subject}"
        );
        commits.insert(commit.to_string());
    }
    assert_eq!(commits.len(), 4);
    // The main checkout: same commit, nothing changed, no same.txt, no worktree left.
    assert_eq!(git(dir, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
    assert!(!dir.join("same.txt").exists());
    assert_eq!(worktrees(dir).len(), 1, "{:?}", worktrees(dir));
}

/// `.worktreeinclude` copies the ignored files it names (and no other), then `setup` runs in
/// the worktree before the job, which runs there too.
#[test]
fn worktreeinclude_files_are_copied_and_setup_runs_first() {
    let manifest = r#"[settings]
startup_delay = "0s"

[jobs.build]
isolation = "worktree"
setup = ["cat .env > setup-saw.txt", "pwd > setup-pwd.txt"]
shell = "cat setup-saw.txt > job-saw.txt; test ! -e other.secret && pwd > job-pwd.txt"
"#;
    let t = repo(
        manifest,
        &[(".worktreeinclude", ".env\n"), ("README", "readme\n")],
    );
    let dir = t.path().to_path_buf();
    std::fs::write(
        dir.join(".gitignore"),
        ".orch/\nhome/\nsim/\n.env\nother.secret\n",
    )
    .unwrap();
    git(&dir, &["commit", "--quiet", "-am", "ignore .env"]);
    std::fs::write(dir.join(".env"), "TOKEN=local\n").unwrap();
    std::fs::write(dir.join("other.secret"), "not copied\n").unwrap();
    let t = t.args(&["run", "--quiet"]);
    t.run();
    let v = results(&t);
    let branch = outputs(&v, "build")["branch"].as_str().unwrap().to_string();
    let show = |f: &str| git(&dir, &["show", &format!("{branch}:{f}")]);
    assert_eq!(show("setup-saw.txt"), "TOKEN=local");
    assert_eq!(show("job-saw.txt"), "TOKEN=local");
    let short = v["metadata"]["run_id"]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    let wt = dir.join(".orch/worktrees").join(&short).join("build");
    assert!(show("setup-pwd.txt").ends_with(&format!("worktrees/{short}/build")));
    assert_eq!(show("job-pwd.txt"), show("setup-pwd.txt"));
    // The copy is ignored in the worktree too: it is not committed.
    assert!(
        git(&dir, &["ls-tree", "--name-only", &branch])
            .lines()
            .all(|f| f != ".env"),
        "{}",
        git(&dir, &["ls-tree", "--name-only", &branch])
    );
    assert!(!wt.exists(), "a completed job's worktree is removed");
    // Each setup command is a step of the job's chain, with its own log.
    let labels: Vec<&str> = v["instances"]["build"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["build [1/3]", "build [2/3]", "build [3/3]"]);
}

/// A failing setup command fails the job like any step: what follows it in the chain is
/// skipped, and the reason and the log say what happened.
#[test]
fn a_failing_setup_step_fails_the_job_and_skips_the_rest() {
    let manifest = r#"[settings]
startup_delay = "0s"

[jobs.build]
isolation = "worktree"
setup = ["echo cannot-install >&2; exit 7"]
shell = "touch ran"
"#;
    let t = repo(manifest, &[("README", "readme\n")]).args(&["run", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let steps = v["instances"]["build"]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "failed");
    assert_eq!(steps[0]["exit_code"], 7);
    assert_eq!(steps[1]["status"], "skipped");
    let log = steps[0]["stderr_log"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("cannot-install"),
        "{log}"
    );
}

/// `keep` decides whether a worktree outlives its job; the branch, with the job's work committed,
/// stays either way; `commit = false` leaves the work uncommitted.
#[test]
fn keep_decides_whether_the_worktree_stays() {
    let manifest = r#"[settings]
startup_delay = "0s"

[defaults]
isolation = "worktree"

[jobs.ok_always]
keep = "always"
shell = "echo a > work.txt"

[jobs.fails_default]
shell = "echo b > work.txt; exit 3"
continue_on_failure = true

[jobs.fails_never]
keep = "never"
shell = "echo c > work.txt; exit 3"
continue_on_failure = true

[jobs.no_commit]
keep = "always"
commit = false
shell = "echo d > work.txt"
"#;
    // The failures are tolerated (`continue_on_failure`), so the run exits 0.
    let t = repo(manifest, &[]).args(&["run", "--quiet"]).status(0);
    t.run();
    let dir = t.path();
    let v = results(&t);
    assert_eq!(v["instances"]["fails_default"]["status"], "failed");
    let head = git(dir, &["rev-parse", "HEAD"]);
    let wt_of = |job: &str| {
        let branch = outputs(&v, job)["branch"].as_str().unwrap().to_string();
        let short = branch.split('/').nth(1).unwrap().to_string();
        (dir.join(".orch/worktrees").join(short).join(job), branch)
    };
    let (wt, branch) = wt_of("ok_always");
    assert!(wt.join("work.txt").exists());
    assert_eq!(git(dir, &["show", &format!("{branch}:work.txt")]), "a");
    let (wt, branch) = wt_of("fails_default");
    assert!(wt.exists(), "on_failure keeps a failed job's worktree");
    assert_eq!(git(dir, &["show", &format!("{branch}:work.txt")]), "b");
    let (wt, branch) = wt_of("fails_never");
    assert!(!wt.exists(), "never removes it");
    assert_eq!(git(dir, &["show", &format!("{branch}:work.txt")]), "c");
    let (wt, branch) = wt_of("no_commit");
    assert_eq!(git(dir, &["rev-parse", &branch]), head);
    assert_eq!(outputs(&v, "no_commit")["files_changed"], 0);
    assert_eq!(git(&wt, &["status", "--porcelain"]), "?? work.txt");
    // Listed by git: the main checkout and the three kept ones.
    assert_eq!(worktrees(dir).len(), 4, "{:?}", worktrees(dir));
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
}

/// A branch named from an upstream output, and a base that is an upstream isolated job's
/// branch: the second job starts from the first one's commit.
#[test]
fn branch_and_base_come_from_upstream_outputs() {
    let manifest = r#"[settings]
startup_delay = "0s"

[jobs.name]
run = ["printf", "feature-x"]

[jobs.impl]
needs = ["name"]
isolation = "worktree"
branch = "topic/${{ jobs.name.outputs.stdout }}"
shell = "echo implemented > impl.txt"

[jobs.review]
needs = ["impl"]
isolation = "worktree"
base = "${{ jobs.impl.outputs.branch }}"
shell = "cat impl.txt; echo reviewed > review.txt"
"#;
    let t = repo(manifest, &[]).args(&["run", "--quiet"]);
    t.run();
    let dir = t.path();
    let v = results(&t);
    let imp = outputs(&v, "impl");
    assert_eq!(imp["branch"], "topic/feature-x");
    let review = outputs(&v, "review");
    assert_eq!(review["base"], imp["commit"]);
    assert_eq!(review["stdout"], "implemented\n");
    let branch = review["branch"].as_str().unwrap();
    assert_eq!(
        git(dir, &["rev-parse", &format!("{branch}^")]),
        imp["commit"].as_str().unwrap()
    );
    assert_eq!(
        git(dir, &["show", &format!("{branch}:impl.txt")]),
        "implemented"
    );
    // `orch plan` shows the worktree, the branch and the base as written.
    let plan = t.with_args(&["plan"]).output().unwrap();
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains("worktree: .orch/worktrees/<run>/impl (branch topic/${{ jobs.name.outputs.stdout }} from HEAD ("),
        "{plan}"
    );
    assert!(
        plan.contains(
            "(branch orch/<run>/review from ${{ jobs.impl.outputs.branch }}; keep on_failure)"
        ),
        "{plan}"
    );
}

/// A workspace outside git, a dirty one with `require_clean`, and a branch that exists are
/// errors before anything runs, each with a hint; a templated branch that exists fails its job.
#[test]
fn worktree_mistakes_are_errors_with_hints() {
    let job = "[jobs.x]\nisolation = \"worktree\"\nrun = [\"touch\", \"ran\"]\n";
    let t = Test::new()
        .file("orch.toml", job)
        .args(&["run", "--quiet"])
        .status(2)
        .stderr_contains("orch::worktree::not_a_repository")
        .stderr_contains("is not in a git repository")
        .stderr_contains("git init");
    t.run();
    assert!(!t.path().join("ran").exists());

    let clean = format!("{job}require_clean = true\n");
    let t = repo(&clean, &[("tracked.txt", "one\n")])
        .args(&["run", "--quiet"])
        .status(2)
        .stderr_contains("orch::worktree::dirty")
        .stderr_contains("tracked.txt")
        .stderr_contains("git stash");
    std::fs::write(t.path().join("tracked.txt"), "two\n").unwrap();
    t.run();
    assert!(!t.path().join(".orch/runs").exists(), "nothing ran");

    let fixed = format!("{job}branch = \"taken\"\n");
    let t = repo(&fixed, &[])
        .args(&["run", "--quiet"])
        .status(2)
        .stderr_contains("orch::worktree::branch_exists")
        .stderr_contains("git branch -D taken");
    git(t.path(), &["branch", "taken"]);
    t.run();
    assert!(!t.path().join(".orch/runs").exists(), "nothing ran");

    let templated = "[jobs.x]\nisolation = \"worktree\"\nbranch = \"${{ run.id }}-no\"\nbase = \"nope\"\nrun = [\"touch\", \"ran\"]\n";
    let t = repo(templated, &[]).args(&["run", "--quiet"]).status(1);
    t.run();
    let v = results(&t);
    let reason = v["instances"]["x"]["steps"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("the base `nope` is not a commit"),
        "{reason}"
    );
    assert_eq!(worktrees(t.path()).len(), 1);
}

/// Twenty isolated jobs at once: git's lock files are taken in turn, every job gets its branch
/// and its commit, and no worktree is left.
#[test]
fn twenty_isolated_jobs_at_once() {
    let mut manifest = String::from(
        "[settings]\nstartup_delay = \"0s\"\n\n[defaults]\nisolation = \"worktree\"\n",
    );
    for i in 0..20 {
        manifest.push_str(&format!(
            "\n[jobs.j{i}]\nshell = \"echo {i} > same.txt; mkdir -p d; echo {i} > d/f{i}\"\n"
        ));
    }
    let t = repo(&manifest, &[]).args(&["run", "--quiet"]);
    t.run();
    let dir = t.path();
    let v = results(&t);
    for i in 0..20 {
        let o = outputs(&v, &format!("j{i}"));
        assert_eq!(o["files_changed"], 2, "{o:#}");
        let branch = o["branch"].as_str().unwrap();
        assert_eq!(
            git(dir, &["show", &format!("{branch}:same.txt")]),
            i.to_string()
        );
    }
    assert_eq!(
        git(dir, &["branch", "--list", "orch/*"]).lines().count(),
        20
    );
    assert_eq!(worktrees(dir).len(), 1, "{:?}", worktrees(dir));
    assert_eq!(git(dir, &["status", "--porcelain"]), "");
}

/// Ctrl-C while an isolated job runs: the job is cancelled, what it wrote so far is committed to
/// its branch, and its worktree is kept (it did not complete); the job after it never gets one.
#[test]
fn an_interrupted_job_keeps_its_work_on_its_branch() {
    let t = repo("[jobs.x]\nrun = [\"true\"]\n", &[]);
    let dir = t.path().to_path_buf();
    let manifest = format!(
        r#"[settings]
startup_delay = "0s"

[defaults]
isolation = "worktree"

[jobs.slow]
shell = "echo partial > work.txt; touch '{}/started'; sleep 60"

[jobs.after]
needs = ["slow"]
shell = "true"
"#,
        dir.display()
    );
    std::fs::write(dir.join("orch.toml"), manifest).unwrap();
    git(&dir, &["commit", "--quiet", "-am", "the real manifest"]);
    let mut child = t
        .with_args(&["run", "--quiet"])
        .env("ORCH_GRACE_INT", "2s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    super::harness::wait_until(
        "the job started",
        std::time::Duration::from_secs(30),
        || dir.join("started").exists(),
    );
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    let v = results(&t);
    assert_eq!(v["instances"]["slow"]["status"], "cancelled");
    assert_eq!(v["instances"]["after"]["status"], "cancelled");
    let o = outputs(&v, "slow");
    let branch = o["branch"].as_str().unwrap();
    assert_eq!(
        git(&dir, &["show", &format!("{branch}:work.txt")]),
        "partial"
    );
    assert_eq!(o["files_changed"], 1);
    assert_eq!(worktrees(&dir).len(), 2, "{:?}", worktrees(&dir));
    assert_eq!(
        git(&dir, &["branch", "--list", "orch/*"]).lines().count(),
        1
    );
}

/// Fan-out instances (`job[key]`, spaces and all) get branches with valid names.
#[test]
fn fan_out_instances_get_valid_branch_names() {
    let manifest = r#"[settings]
startup_delay = "0s"

[jobs.t]
isolation = "worktree"
matrix = { os = ["linux x", "mac"] }
shell = "echo ${{ matrix.os }} > os.txt"
"#;
    let t = repo(manifest, &[]).args(&["run", "--quiet"]);
    t.run();
    let dir = t.path();
    let v = results(&t);
    let short = v["metadata"]["run_id"]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    for (key, os) in [("linux-x", "linux x"), ("mac", "mac")] {
        let branch = format!("orch/{short}/t-{key}");
        assert_eq!(git(dir, &["show", &format!("{branch}:os.txt")]), os);
    }
    assert_eq!(worktrees(dir).len(), 1);
}
