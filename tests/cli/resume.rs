//! `orch resume`: a new run that runs only what did not complete, after Ctrl-C, SIGKILL, a budget
//! stop and a fixed failure; the refusal when a completed step changed, and `--force`; sessions
//! named in the manifest continued from one run to the next.
//!
//! "Not spawned again" is checked through the jobs' own invocation record: every job appends its
//! name to `calls.log` when it starts.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::harness::{Test, wait_until};
use super::run::Running;

/// Five chained jobs; the third waits for a file `go` (so the test can interrupt it), the
/// fourth reads the second's output.
const FIVE: &str = r#"
[settings]
startup_delay = "0s"
[jobs.a]
shell = "echo a >> calls.log"
[jobs.b]
shell = "echo b >> calls.log; printf from-b"
needs = ["a"]
[jobs.c]
shell = "echo c >> calls.log; while [ ! -f go ]; do sleep 0.02; done"
needs = ["b"]
[jobs.d]
shell = "echo d:${{ jobs.b.outputs.stdout }} >> calls.log"
needs = ["c"]
[jobs.e]
shell = "echo e >> calls.log"
needs = ["d"]
"#;

fn calls(t: &Test) -> Vec<String> {
    std::fs::read_to_string(t.path().join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every run's results file under `.orch/runs`, oldest first.
fn results(t: &Test) -> Vec<Value> {
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

fn status_of(v: &Value, job: &str) -> String {
    v["instances"][job]["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn ledger(t: &Test) -> rusqlite::Connection {
    rusqlite::Connection::open(t.path().join(".orch/ledger.sqlite")).unwrap()
}

/// Waits until job c has started (its line is in the record).
fn wait_for_c(t: &Test) {
    wait_until("job c started", Duration::from_secs(20), || {
        calls(t).iter().any(|l| l == "c")
    });
}

/// The resumed run did only c, d and e, d read b's output, and both runs are linked.
fn check_resumed(t: &Test, out_code: i32, stdout: &str) {
    assert_eq!(out_code, 0, "{stdout}");
    assert_eq!(calls(t), ["a", "b", "c", "c", "d:from-b", "e"]);
    let all = results(t);
    let last = all.last().unwrap();
    for job in ["a", "b", "c", "d", "e"] {
        assert_eq!(status_of(last, job), "completed", "{job}");
    }
    let reason = last["instances"]["a"]["steps"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.starts_with("reused: completed in run "), "{reason}");
    let from = last["metadata"]["resumed_from"]
        .as_str()
        .unwrap()
        .to_string();
    let id = last["metadata"]["run_id"].as_str().unwrap().to_string();
    assert_ne!(from, id);
    let linked: Option<String> = ledger(t)
        .query_row("SELECT resumed_from FROM runs WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(linked.as_deref(), Some(from.as_str()));
}

#[test]
fn ctrl_c_during_the_third_of_five_jobs_then_resume_runs_only_the_last_three() {
    let t = Test::new()
        .file("orch.toml", FIVE)
        .args(&["run", "--no-progress"]);
    let mut r = Running::start(&t);
    r.expect("c started");
    wait_for_c(&t);
    r.signal("INT");
    let (code, lines) = r.wait();
    assert_eq!(code, 130, "{}", lines.join("\n"));
    assert_eq!(calls(&t), ["a", "b", "c"]);
    let first = &results(&t)[0];
    assert_eq!(status_of(first, "c"), "cancelled");

    std::fs::write(t.path().join("go"), "").unwrap();
    let out = t
        .with_args(&["resume", "latest", "--no-progress"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resumes "), "{stdout}");
    assert!(stdout.contains("b reused: completed in run "), "{stdout}");
    check_resumed(&t, out.status.code().unwrap(), &stdout);
    t.check();
}

#[test]
fn sigkill_during_the_third_of_five_jobs_then_resume_runs_only_the_last_three() {
    let t = Test::new()
        .file("orch.toml", FIVE)
        .allow_dead_run("orch is SIGKILLed mid-run, on purpose");
    let mut orch = t
        .with_args(&["run", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_c(&t);
    orch.kill().unwrap();
    orch.wait().unwrap();
    // The guardian ends job c's group once orch is gone; the resume reconciles the dead run.
    std::fs::write(t.path().join("go"), "").unwrap();
    let out = t.with_args(&["resume", "--no-progress"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    check_resumed(&t, out.status.code().unwrap(), &stdout);
    let dead: String = ledger(&t)
        .query_row(
            "SELECT status FROM runs WHERE resumed_from IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dead, "dead");
}

#[test]
fn dry_run_shows_what_would_run_and_runs_nothing() {
    let manifest = FIVE.replace("while [ ! -f go ]; do sleep 0.02; done", "test -f go");
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run", "--quiet"])
        .status(1);
    t.run();
    assert_eq!(calls(&t), ["a", "b", "c"]);
    let dry = t.with_args(&["resume", "--dry-run"]).output().unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{text}");
    assert!(text.contains("2 steps reused, 3 to run"), "{text}");
    assert!(text.contains("reuse  a"), "{text}");
    assert!(
        text.contains("run    c  (failed in the original)"),
        "{text}"
    );
    assert!(
        text.contains("run    d  (never started in the original)"),
        "{text}"
    );
    assert_eq!(calls(&t), ["a", "b", "c"], "a dry run runs nothing");
    // A failure fixed (here: the file it wants now exists) is resumed.
    std::fs::write(t.path().join("go"), "").unwrap();
    let out = t.with_args(&["resume", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(calls(&t), ["a", "b", "c", "c", "d:from-b", "e"]);
}

#[test]
fn a_changed_completed_step_is_refused_by_name_unless_forced() {
    let manifest = FIVE.replace("while [ ! -f go ]; do sleep 0.02; done", "test -f go");
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run", "--quiet"])
        .status(1);
    t.run();
    std::fs::write(t.path().join("go"), "").unwrap();
    let changed = manifest.replace("echo a >> calls.log", "echo A >> calls.log");
    std::fs::write(t.path().join("orch.toml"), &changed).unwrap();
    let out = t.with_args(&["resume"]).output().unwrap();
    // miette wraps long messages: compare the words.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1 completed step changed since it ran: a"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(calls(&t), ["a", "b", "c"], "a refusal runs nothing");
    // --force: the changed step runs again, and so does b, which needs it.
    let out = t
        .with_args(&["resume", "--force", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(calls(&t), ["a", "b", "c", "A", "b", "c", "d:from-b", "e"]);
}

#[test]
fn after_a_budget_stop_a_raised_budget_resumes_and_the_run_budget_counts_the_original() {
    let manifest = r#"
[settings]
startup_delay = "0s"
[budget]
mode = "block"
[jobs.first]
shell = "echo first >> calls.log"
[jobs.agent]
prompt = "count to three"
needs = ["first"]
max_tokens = 5
"#;
    let t = Test::new().file("orch.toml", manifest);
    let sim = t.path().join("sim");
    let t = t
        .env("ORCH_SIM_STATE_DIR", sim.to_str().unwrap())
        .args(&["run", "--simulate", "--quiet"])
        .status(3);
    t.run();
    let first = &results(&t)[0];
    assert_eq!(status_of(first, "agent"), "budget_exceeded");
    let spent_first = first["metadata"]["token_usage"]["total_tokens"]
        .as_u64()
        .unwrap();
    assert!(spent_first > 0);
    std::fs::write(
        t.path().join("orch.toml"),
        manifest.replace("max_tokens = 5", "max_tokens = 10_000_000"),
    )
    .unwrap();
    let out = t
        .with_args(&[
            "resume",
            "--simulate",
            "--quiet",
            "--overall-token-budget",
            "100000000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(calls(&t), ["first"], "the completed job is not run again");
    let all = results(&t);
    let last = all.last().unwrap();
    assert_eq!(status_of(last, "agent"), "completed");
    let spent_now = last["metadata"]["token_usage"]["total_tokens"]
        .as_u64()
        .unwrap();
    let run_scope = last["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "run")
        .unwrap_or_else(|| panic!("{}", last["budgets"]));
    assert_eq!(
        run_scope["tokens_used"].as_u64().unwrap(),
        spent_first + spent_now,
        "the run scope counts what the original spent"
    );
}

#[test]
fn a_named_session_is_continued_on_the_next_run() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.nightly]\nprompt = \"remember the number 7\"\nsession_id = \"frontend\"\n";
    let t = Test::new().file("orch.toml", manifest);
    let sim = t.path().join("sim");
    let t = t
        .env("ORCH_SIM_STATE_DIR", sim.to_str().unwrap())
        .args(&["run", "--simulate", "--quiet"])
        .status(0);
    t.run();
    t.run();
    let all = results(&t);
    assert_eq!(all.len(), 2);
    let argv = |v: &Value| -> Vec<String> {
        v["instances"]["nightly"]["steps"][0]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let (one, two) = (argv(&all[0]), argv(&all[1]));
    assert!(one.contains(&"--session-id".to_string()), "{one:?}");
    assert!(two.contains(&"--resume".to_string()), "{two:?}");
    assert!(!two.contains(&"--session-id".to_string()), "{two:?}");
    // The second run is charged its own difference, not the session's cumulative total: the
    // simulated agent reports cumulative figures after --resume, as Claude Code 2.1.331 does.
    let usage = &all[1]["instances"]["nightly"]["steps"][0]["usage"];
    assert_eq!(usage["cost_basis"], "cumulative", "{usage}");
    assert_eq!(
        all[0]["instances"]["nightly"]["steps"][0]["usage"]["cost_basis"],
        "fresh"
    );
    let cost = |v: &Value| {
        v["metadata"]["token_usage"]["total_cost_usd"]
            .as_f64()
            .unwrap()
    };
    assert!(cost(&all[1]) > 0.0);
    assert!(
        cost(&all[1]) < cost(&all[0]) * 3.0,
        "{} vs {}",
        cost(&all[1]),
        cost(&all[0])
    );
}

#[test]
fn resume_without_a_ledger_says_where_it_looked() {
    let t = Test::new()
        .args(&["resume"])
        .status(2)
        .stderr_contains("no run to resume");
    t.run();
}

#[test]
fn an_interrupted_agent_session_is_continued_with_resume() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.a]\nprompt = \"first\"\n\
        [jobs.b]\nprompt = \"second\"\nneeds = [\"a\"]\nenv = { ORCH_SIM_HANG = \"1\" }\n";
    let t = Test::new().file("orch.toml", manifest);
    let sim = t.path().join("sim");
    let t = t
        .env("ORCH_SIM_STATE_DIR", sim.to_str().unwrap())
        .env("ORCH_GRACE_INT", "5s")
        .args(&["run", "--simulate", "--no-progress"]);
    let mut r = Running::start(&t);
    r.expect("b started");
    // Claude Code records the session once its first message is in: wait for the init line.
    wait_until("b's init line", Duration::from_secs(20), || {
        std::fs::read_dir(t.path().join(".orch/runs"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|run| {
                std::fs::read_to_string(run.path().join("logs/002-b.log"))
                    .is_ok_and(|log| log.contains("\"init\""))
            })
    });
    r.signal("INT");
    let (code, lines) = r.wait();
    assert_eq!(code, 130, "{}", lines.join("\n"));
    let first = results(&t).remove(0);
    let session = |v: &Value, job: &str| {
        let argv: Vec<String> = v["instances"][job]["steps"][0]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let at = argv
            .iter()
            .position(|a| a == "--session-id" || a == "--resume")
            .unwrap();
        (argv[at].clone(), argv[at + 1].clone())
    };
    let (flag, original) = session(&first, "b");
    assert_eq!(flag, "--session-id");
    // b failed, so its definition may change: drop the hang and resume.
    std::fs::write(
        t.path().join("orch.toml"),
        manifest.replace("env = { ORCH_SIM_HANG = \"1\" }\n", ""),
    )
    .unwrap();
    let out = t
        .with_args(&["resume", "--simulate", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let last = results(&t).pop().unwrap();
    assert_eq!(status_of(&last, "b"), "completed");
    assert_eq!(session(&last, "b"), ("--resume".to_string(), original));
    // a was not run again: the new run has no usage for it.
    assert!(last["instances"]["a"]["steps"][0]["usage"].is_null());
}

#[test]
fn session_fork_continues_a_copy_of_the_named_session_each_run() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.nightly]\nprompt = \"start from the base\"\nsession_id = \"base\"\nsession = \"fork\"\n";
    let t = Test::new().file("orch.toml", manifest);
    let sim = t.path().join("sim");
    let t = t
        .env("ORCH_SIM_STATE_DIR", sim.to_str().unwrap())
        .args(&["run", "--simulate", "--quiet"])
        .status(0);
    let named_totals = || -> String {
        ledger(&t)
            .query_row(
                "SELECT totals FROM sessions ORDER BY updated_at LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    t.run();
    let base = named_totals();
    t.run();
    t.run();
    let all = results(&t);
    let argv = |v: &Value| -> Vec<String> {
        v["instances"]["nightly"]["steps"][0]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let after = |argv: &[String], flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .map(|i| argv[i + 1].clone())
    };
    // The first run creates the named session; the next ones fork it, each into its own copy.
    let first = argv(&all[0]);
    let named = after(&first, "--session-id").unwrap();
    assert!(!first.contains(&"--fork-session".to_string()), "{first:?}");
    let mut copies = Vec::new();
    for v in &all[1..] {
        let a = argv(v);
        assert!(a.contains(&"--fork-session".to_string()), "{a:?}");
        assert_eq!(after(&a, "--resume").as_ref(), Some(&named), "{a:?}");
        copies.push(after(&a, "--session-id").unwrap());
    }
    assert_ne!(copies[0], copies[1]);
    assert!(!copies.contains(&named));
    // The named session is as the first run left it.
    assert_eq!(named_totals(), base);
    let sessions: i64 = ledger(&t)
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sessions, 3);
}

#[test]
fn two_jobs_naming_one_session_is_a_load_time_error() {
    let manifest = "[jobs.a]\nprompt = \"x\"\nsession_id = \"shared\"\n\
        [jobs.b]\nprompt = \"y\"\nsession_id = \"shared\"\n";
    Test::new()
        .file("orch.toml", manifest)
        .args(&["plan"])
        .status(2)
        .stderr_contains("name the same session_id \"shared\"")
        .run();
    // `session = "fork"` needs a session to fork.
    Test::new()
        .file(
            "orch.toml",
            "[jobs.a]\nprompt = \"x\"\nsession = \"fork\"\n",
        )
        .args(&["plan"])
        .status(2)
        .stderr_contains("session_id")
        .run();
}

/// A `for_each` job expands again from its reused source, and of its instances only those that
/// did not complete run again.
#[test]
fn a_completed_for_each_source_is_reused_and_only_its_unfinished_instances_run_again() {
    let manifest = r#"
[settings]
startup_delay = "0s"
[jobs.list]
shell = "echo list >> calls.log; echo '[\"x\", \"y\"]'"
outputs = "json"
[jobs.each]
needs = ["list"]
for_each = "${{ jobs.list.outputs.json }}"
shell = "echo each:${{ item }} >> calls.log; [ ${{ item }} != y ] || test -f go || exit 1; printf done-${{ item }}"
[jobs.last]
needs = ["each"]
shell = "echo last:${{ jobs.each.outputs.stdout }} >> calls.log"
"#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run", "--quiet"])
        .status(1);
    t.run();
    let mut first = calls(&t);
    first.sort();
    assert_eq!(first, ["each:x", "each:y", "list"]);
    std::fs::write(t.path().join("go"), "").unwrap();
    let out = t.with_args(&["resume", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let all = calls(&t);
    // `list` ran once; `each` expanded again from its reused output; `each[0]` (x) completed
    // and is reused, `each[1]` (y) runs again; `last` sees both outputs.
    let count = |l: &str| all.iter().filter(|c| *c == l).count();
    assert_eq!(count("list"), 1, "{all:?}");
    assert_eq!(count("each:x"), 1, "{all:?}");
    assert_eq!(count("each:y"), 2, "{all:?}");
    assert_eq!(
        all.last().map(String::as_str),
        Some(r#"last:["done-x","done-y"]"#),
        "{all:?}"
    );
    let last = results(&t).pop().unwrap();
    assert_eq!(
        last["fan_outs"]["each"]["status"], "completed",
        "{}",
        last["fan_outs"]
    );
    let reason = last["instances"]["each[0]"]["steps"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.starts_with("reused"), "{reason}");
}

#[test]
fn a_resume_of_a_resume_still_reuses_what_the_first_run_completed() {
    let manifest = FIVE.replace("while [ ! -f go ]; do sleep 0.02; done", "test -f go");
    let t = Test::new()
        .file("orch.toml", &manifest)
        .args(&["run", "--quiet"])
        .status(1);
    t.run();
    // The first resume fails at c again (no `go` yet); a and b are reused, without rows of
    // their own in the resumed run.
    let out = t.with_args(&["resume", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(calls(&t), ["a", "b", "c", "c"]);
    std::fs::write(t.path().join("go"), "").unwrap();
    let out = t.with_args(&["resume", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(calls(&t), ["a", "b", "c", "c", "c", "d:from-b", "e"]);
    // Each run points at the one it resumes.
    let all = results(&t);
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2]["metadata"]["resumed_from"],
        all[1]["metadata"]["run_id"]
    );
    assert_eq!(
        all[1]["metadata"]["resumed_from"],
        all[0]["metadata"]["run_id"]
    );
}

/// `orch plan` shows what `orch run` would pass: `--session-id` for a named session the ledger
/// does not know yet, `--resume` once a run has used it; and a job's retry policy.
#[test]
fn the_plan_shows_a_known_named_session_resumed_and_the_retry_policy() {
    let t = Test::new().file(
        "orch.toml",
        "[jobs.a]\nprompt = \"x\"\nsession_id = \"nightly\"\nretry = { attempts = 3, backoff = \"5s\" }\n",
    );
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap());
    let plan = |t: &Test| {
        let out = t.with_args(&["plan", "--simulate"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = plan(&t);
    assert!(before.contains("--session-id "), "{before}");
    assert!(
        before.contains("retry: up to 3 attempts, backoff 5s doubling to 10m with jitter"),
        "{before}"
    );
    let out = t
        .with_args(&["run", "--simulate", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = plan(&t);
    assert!(
        after.contains("--resume ") && !after.contains("--session-id "),
        "{after}"
    );
}
