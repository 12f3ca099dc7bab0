//! Retries and rate limits end to end, with the simulated agent failing on purpose
//! (`ORCH_SIM_FAIL`): backoff honoured (start times in the results file, with tolerance),
//! sessions continued on retry, each reason classified, budgets across attempts, the agent
//! concurrency cut and restored, and `max_pause`.

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::harness::Test;

fn results(t: &Test) -> Value {
    let runs = t.path().join(".orch/runs");
    let dir = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .map(|e| e.unwrap().path())
        .next()
        .expect("a run");
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

fn step(v: &Value, job: &str) -> Value {
    v["instances"][job]["steps"][0].clone()
}

fn attempts(v: &Value, job: &str) -> Vec<Value> {
    step(v, job)["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{job} has no attempts: {}", step(v, job)))
        .clone()
}

fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).unwrap()
}

/// Milliseconds from the end of attempt `i` to the start of attempt `i + 1`.
fn gap_ms(list: &[Value], i: usize) -> i64 {
    (time(&list[i + 1]["started"]) - time(&list[i]["finished"])).num_milliseconds()
}

fn events(t: &Test, file: &str) -> Vec<Value> {
    std::fs::read_to_string(t.path().join(file))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kinds(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|a| a["kind"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[test]
fn an_overloaded_agent_is_retried_after_its_backoff_continuing_its_session() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [jobs.a]
        prompt = "build the thing"
        retry = { attempts = 3, backoff = "1s", jitter = false, prompt = "Please go on." }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("ORCH_SIM_FAIL", "overloaded")
        .env("ORCH_SIM_FAIL_ATTEMPTS", "2")
        .env("ORCH_SIM_FAIL_AFTER_TURNS", "1")
        .env("ORCH_SIM_DELAY_MS", "5")
        .args(&["run", "--simulate", "--no-progress"])
        .status(0)
        .stdout_contains("attempt 2 of 3 continuing its session in 1s");
    t.run();
    let v = results(&t);
    let list = attempts(&v, "a");
    assert_eq!(kinds(&list), ["overloaded", "overloaded", "-"], "{list:?}");
    let statuses: Vec<&str> = list.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "failed", "completed"]);
    // Backoff 1 s, then 2 s; a tick may come a little late, never early.
    let (first, second) = (gap_ms(&list, 0), gap_ms(&list, 1));
    assert!((990..1800).contains(&first), "first gap {first} ms");
    assert!((1990..2800).contains(&second), "second gap {second} ms");
    // Each retry continued the session that had turns, with the retry prompt.
    assert!(list[1]["resumed"].as_bool().unwrap() && list[2]["resumed"].as_bool().unwrap());
    let main = step(&v, "a");
    let argv: Vec<&str> = main["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.contains(&"--resume") && !argv.contains(&"--session-id"),
        "{argv:?}"
    );
    assert_eq!(argv.last(), Some(&"Please go on."));
    // Each attempt has its own log; the step's usage is the sum of the attempts'.
    let logs: Vec<&str> = list.iter().map(|a| a["log"].as_str().unwrap()).collect();
    assert!(
        logs[0].ends_with("001-a.log") && logs[1].ends_with("001-a.a2.log"),
        "{logs:?}"
    );
    assert!(logs[2].ends_with("001-a.a3.log") && std::path::Path::new(logs[2]).exists());
    let sum: u64 = list.iter().map(|a| a["tokens"].as_u64().unwrap()).sum();
    assert!(
        list.iter().all(|a| a["tokens"].as_u64().unwrap() > 0),
        "{list:?}"
    );
    assert_eq!(v["instances"]["a"]["total_tokens"].as_u64(), Some(sum));
    // The ledger has a row per attempt.
    let db = rusqlite::Connection::open(t.path().join(".orch/ledger.sqlite")).unwrap();
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT attempt, status FROM steps WHERE step = 0 ORDER BY attempt")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(i64, String)> = vec![
        (1, "failed".into()),
        (2, "failed".into()),
        (3, "completed".into()),
    ];
    assert_eq!(rows, want);
}

#[test]
fn an_exhausted_api_retry_sequence_restarts_afresh_and_throttles_agents() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        throttle_quiet = "1s"
        [defaults]
        retry = { attempts = 2, backoff = "200ms", jitter = false }
        [jobs.a]
        prompt = "a"
        env = { ORCH_SIM_FAIL = "api_retry" }
        [jobs.b]
        prompt = "b"
        [jobs.c]
        prompt = "c"
        [jobs.d]
        prompt = "d"
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("ORCH_SIM_DELAY_MS", "200")
        .env("ORCH_SIM_TURNS", "4")
        .args(&[
            "run",
            "--simulate",
            "--no-progress",
            "--events",
            "events.ndjson",
        ])
        .status(0)
        .stdout_contains("the API is throttling");
    t.run();
    let v = results(&t);
    let list = attempts(&v, "a");
    assert_eq!(kinds(&list), ["overloaded", "-"]);
    // No turns before the failure: the retry starts the session afresh.
    assert!(!list[1]["resumed"].as_bool().unwrap());
    assert_eq!(
        step(&v, "a")["argv"].as_array().unwrap().last().unwrap(),
        "a"
    );
    let limits: Vec<Value> = events(&t, "events.ndjson")
        .into_iter()
        .filter(|e| e["event"] == "concurrency_changed")
        .map(|e| e["limit"].clone())
        .collect();
    // Four agents ran when the API throttled: halved to two, then eased back and lifted.
    assert_eq!(limits.first(), Some(&Value::from(2)), "{limits:?}");
    assert_eq!(limits.last(), Some(&Value::Null), "{limits:?}");
}

#[test]
fn each_reason_is_classified_and_only_listed_ones_are_retried() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [defaults]
        retry = { attempts = 2, backoff = "100ms", jitter = false }
        [jobs.turns]
        prompt = "t"
        max_turns = 1
        env = { ORCH_SIM_TURNS = "3" }
        [jobs.turns_listed]
        prompt = "t"
        max_turns = 1
        env = { ORCH_SIM_TURNS = "3" }
        retry = { on = ["max_turns"] }
        [jobs.exit]
        shell = "if [ -f once ]; then exit 0; fi; touch once; exit 3"
        [jobs.slow]
        run = ["sleep", "5"]
        timeout = "300ms"
        [jobs.not_listed]
        shell = "exit 4"
        retry = { on = ["timeout"] }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run", "--simulate", "--no-progress"])
        .status(1);
    t.run();
    let v = results(&t);
    // error_max_turns is not retried unless listed.
    assert!(
        step(&v, "turns")["attempts"].is_null(),
        "{}",
        step(&v, "turns")
    );
    assert_eq!(kinds(&attempts(&v, "turns_listed")), ["max_turns", "-"]);
    assert_eq!(kinds(&attempts(&v, "exit")), ["exit", "-"]);
    assert_eq!(v["instances"]["exit"]["status"], "completed");
    let slow = attempts(&v, "slow");
    assert_eq!(kinds(&slow), ["timeout", "-"]);
    assert_eq!(slow[1]["status"], "timed_out");
    assert!(step(&v, "not_listed")["attempts"].is_null());
    assert_eq!(v["instances"]["not_listed"]["status"], "failed");
}

#[test]
fn a_rejected_rate_limit_is_continued_after_its_reset_without_spending_an_attempt() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [jobs.a]
        prompt = "a"
        env = { ORCH_SIM_FAIL = "rate_limit", ORCH_SIM_FAIL_AFTER_TURNS = "1" }
        [jobs.u]
        prompt = "u"
        env = { ORCH_SIM_FAIL = "usage_limit", ORCH_SIM_RESETS_IN_S = "1" }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("ORCH_SIM_DELAY_MS", "5")
        .args(&["run", "--simulate", "--no-progress"])
        .status(0)
        .stdout_contains("not counted");
    t.run();
    let v = results(&t);
    // No `retry` at all: a rate limit is waited out regardless, and costs no attempt.
    let a = attempts(&v, "a");
    assert_eq!(kinds(&a), ["rate_limit", "-"]);
    assert!(!a[1]["counted"].as_bool().unwrap() && a[1]["resumed"].as_bool().unwrap());
    // resetsAt is two seconds ahead in whole seconds: one to two seconds of wait.
    let gap = gap_ms(&a, 0);
    assert!((900..3000).contains(&gap), "gap {gap} ms");
    let u = attempts(&v, "u");
    assert_eq!(kinds(&u), ["rate_limit", "-"]);
    assert!(!u[1]["counted"].as_bool().unwrap());
}

#[test]
fn a_reset_beyond_max_pause_ends_the_run_as_rate_limited() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        max_pause = "10s"
        [jobs.a]
        prompt = "a"
        env = { ORCH_SIM_FAIL = "rate_limit", ORCH_SIM_RESETS_IN_S = "3600" }
        [jobs.b]
        prompt = "b"
        needs = ["a"]
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("ORCH_SIM_DELAY_MS", "5")
        .args(&["run", "--simulate", "--no-progress"])
        .status(4)
        .stdout_contains("later than max_pause");
    t.run();
    let v = results(&t);
    assert_eq!(v["metadata"]["stop_cause"], "rate_limited");
    assert_eq!(v["metadata"]["exit_code"], 4);
    assert_eq!(v["instances"]["a"]["status"], "failed");
    assert_eq!(v["instances"]["b"]["status"], "cancelled");
}

#[test]
fn a_block_mode_budget_spent_during_the_backoff_refuses_the_retry() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [budget]
        mode = "block"
        tokens = 2000
        [jobs.a]
        prompt = "a"
        env = { ORCH_SIM_FAIL = "overloaded" }
        retry = { attempts = 3, backoff = "1500ms", jitter = false }
        [jobs.big]
        prompt = "big"
        env = { ORCH_SIM_TOKENS_PER_TURN = "5000", ORCH_SIM_DELAY_MS = "400" }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("ORCH_SIM_DELAY_MS", "5")
        .args(&["run", "--simulate", "--no-progress"])
        .status(3);
    t.run();
    let v = results(&t);
    assert_eq!(v["instances"]["big"]["status"], "budget_exceeded");
    assert_eq!(v["instances"]["a"]["status"], "blocked");
    let reason = step(&v, "a")["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("retry refused: "), "{reason}");
    assert_eq!(attempts(&v, "a").len(), 1, "one attempt ran");
}

/// A retry gets what the job's `max_usd` has left after the earlier attempts as Claude Code's
/// `--max-budget-usd`, so that all attempts together stay within it (warn mode too).
#[test]
fn a_retry_gets_what_is_left_of_max_usd_as_its_max_budget() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [jobs.a]
        prompt = "build the thing"
        max_usd = 0.5
        retry = { attempts = 2, backoff = "100ms", jitter = false }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .env("ORCH_SIM_FAIL", "overloaded")
        .env("ORCH_SIM_FAIL_ATTEMPTS", "1")
        .env("ORCH_SIM_FAIL_AFTER_TURNS", "1")
        .env("ORCH_SIM_DELAY_MS", "5")
        .args(&["run", "--simulate", "--no-progress"])
        .status(0);
    t.run();
    let v = results(&t);
    let list = attempts(&v, "a");
    assert_eq!(list.len(), 2, "{list:?}");
    let first = list[0]["cost_usd"].as_f64().unwrap();
    assert!(first > 0.0, "{list:?}");
    let argv: Vec<String> = step(&v, "a")["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let i = argv.iter().position(|a| a == "--max-budget-usd").unwrap();
    let given: f64 = argv[i + 1].parse().unwrap();
    assert!(
        (given - (0.5 - first)).abs() < 2e-6,
        "the retry got ${given}, the first attempt spent ${first}"
    );
}
