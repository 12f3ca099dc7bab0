//! The harness's own guarantees, each shown able to fail: the developer's environment does not
//! reach orch, and the post-test checks find a surviving process, a results file that does not
//! add up or match its schema, and a run that never finished.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::harness::{MARK_VAR, Test, wait_until};

/// What a developer's shell may hold that would change what orch does.
const POLLUTION: &[(&str, &str)] = &[
    ("ORCH_GRACE_INT", "1ms"),
    ("ORCH_GRACE_TERM", "1ms"),
    ("ORCH_CLAUDE_PATH", "/nonexistent/claude"),
    ("ORCH_SIM_TURNS", "999"),
    ("ORCH_SIM_EXIT", "3"),
    ("CLAUDE_CONFIG_DIR", "/nonexistent/claude-config"),
    ("ANTHROPIC_API_KEY", "sk-ant-leaked"),
    ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
    ("RUST_LOG", "trace"),
    ("CLICOLOR_FORCE", "1"),
    ("IS_SANDBOX", "1"),
    ("TERM", "xterm-256color"),
];

/// Runs this test binary's [`inner_orch_sees_only_the_harness_environment`] in a process whose
/// environment holds [`POLLUTION`]: that is the only way to give the harness a polluted
/// environment without `set_var` racing the other test threads.
#[test]
fn the_developers_environment_does_not_reach_orch() {
    let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
    cmd.args([
        "checks::inner_orch_sees_only_the_harness_environment",
        "--exact",
        "--ignored",
        "--nocapture",
    ]);
    for (k, v) in POLLUTION {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("the test binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the inner test ran: {text}");
}

/// Half of the test above; alone (in a clean environment) it passes trivially.
#[test]
#[ignore = "run by the_developers_environment_does_not_reach_orch, in a polluted environment"]
fn inner_orch_sees_only_the_harness_environment() {
    // The step's parent is orch: the step copies orch's own environment.
    let t = Test::new()
        .file(
            "orch.toml",
            "[jobs.env]\nshell = \"tr '\\\\0' '\\\\n' < /proc/$PPID/environ > orch-env.txt\"\n",
        )
        .args(&["run", "--quiet"])
        .status(0);
    t.run();
    let env = std::fs::read_to_string(t.path().join("orch-env.txt")).expect("the step ran");
    let keys: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for (k, _) in POLLUTION {
        assert!(!keys.contains(k), "orch saw the developer's {k}:\n{env}");
    }
    let home = t.path().join("home");
    assert!(
        env.lines().any(|l| l == format!("HOME={}", home.display())),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == format!("{MARK_VAR}={}", t.mark())),
        "{env}"
    );
}

#[test]
fn a_process_that_outlives_orch_is_found() {
    let t = Test::new().allow_survivors("the test starts a process that outlives it on purpose");
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .env(MARK_VAR, t.mark())
        .spawn()
        .expect("sleep starts");
    // Its environment shows in /proc only once exec has set it up, a moment after spawn returns.
    let mut found = Vec::new();
    wait_until("the sleeper to show", Duration::from_secs(5), || {
        found = t.survivors(Duration::ZERO);
        !found.is_empty()
    });
    // Allowed: the checks pass with it alive.
    t.check();
    sleeper.kill().expect("kill sleep");
    sleeper.wait().expect("reap sleep");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!("{}: sleep 30", sleeper.id())),
        "{found:?}"
    );
    assert!(t.survivors(Duration::from_secs(5)).is_empty());
}

#[test]
fn a_results_file_that_does_not_add_up_or_match_is_found() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[settings]\nstartup_delay = \"0s\"\n[jobs.a]\nprompt = \"hi\"\n",
        )
        .env("ORCH_SIM_TURNS", "2")
        .args(&["run", "--simulate", "--quiet"])
        .status(0);
    t.run();
    let runs = t.path().join(".orch/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = run.join("results.json");
    let good = std::fs::read_to_string(&file).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    assert!(
        v["metadata"]["token_usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    // One token more than the ledger and the jobs hold.
    v["metadata"]["token_usage"]["total_tokens"] = (v["metadata"]["token_usage"]["total_tokens"]
        .as_u64()
        .unwrap()
        + 1)
    .into();
    std::fs::write(&file, v.to_string()).unwrap();
    let problems = t.results_problems();
    assert!(
        problems.iter().any(|p| p.contains("the ledger holds")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("the jobs' add up to")),
        "{problems:?}"
    );

    // A field the book documents, gone.
    v = serde_json::from_str(&good).unwrap();
    v["instances"]["a"]
        .as_object_mut()
        .unwrap()
        .remove("tool_calls");
    std::fs::write(&file, v.to_string()).unwrap();
    let problems = t.results_problems();
    assert!(
        problems.iter().any(|p| p.contains("tool_calls")),
        "{problems:?}"
    );

    std::fs::write(&file, good).unwrap();
    assert_eq!(t.results_problems(), Vec::<String>::new());
}

#[test]
fn a_run_that_never_finished_is_found() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--quiet"])
        .status(0);
    t.run();
    let db = rusqlite::Connection::open(t.path().join(".orch/ledger.sqlite")).unwrap();
    db.execute(
        "INSERT INTO runs (id, name, manifest, run_dir, started_at, status, pid)
         SELECT 'never-finished', name, manifest, run_dir, started_at, 'running', pid FROM runs",
        [],
    )
    .unwrap();
    let problems = t.results_problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("run never-finished is running")),
        "{problems:?}"
    );
    db.execute("DELETE FROM runs WHERE id = 'never-finished'", [])
        .unwrap();
    assert_eq!(t.results_problems(), Vec::<String>::new());
}
