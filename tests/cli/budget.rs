//! Budgets with the simulated agent: block mode at every scope, warn mode, the rolling window
//! across runs, the overshoot bound, and the ledger surviving SIGKILL.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rusqlite::OptionalExtension;
use serde_json::Value;

use super::harness::Test;

/// A test whose simulated agents keep their session state inside the test folder.
fn sim_test(manifest: &str) -> Test {
    let t = Test::new().file("orch.toml", manifest);
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
}

fn runs(t: &Test) -> Vec<Value> {
    let dir = t.path().join(".orch/runs");
    let dirs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut all: Vec<Value> = dirs
        .iter()
        .map(|d| {
            serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap()
        })
        .collect();
    // In the order they started.
    all.sort_by_key(|r| {
        r["metadata"]["start_datetime"]
            .as_str()
            .unwrap()
            .to_string()
    });
    all
}

fn last_run(t: &Test) -> Value {
    runs(t).pop().expect("a run")
}

fn status(v: &Value, job: &str) -> String {
    v["instances"][job]["status"].as_str().unwrap().to_string()
}

fn scope<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == name)
        .unwrap_or_else(|| panic!("no scope {name}: {}", v["budgets"]))
}

/// The largest usage of one API message in a step's log (each message id counted once), plus
/// the step's output tokens (which the start-of-message snapshots do not show).
fn one_message_bound(log: &str) -> u64 {
    let mut seen = HashSet::new();
    let mut largest = 0;
    let mut output = 0;
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["type"] == "assistant" && seen.insert(v["message"]["id"].to_string()) {
            let u = &v["message"]["usage"];
            let total: u64 = [
                "input_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            ]
            .iter()
            .map(|k| u[k].as_u64().unwrap_or(0))
            .sum();
            largest = largest.max(total);
        }
        if v["type"] == "result" {
            output = v["usage"]["output_tokens"].as_u64().unwrap_or(0);
        }
    }
    largest + output
}

const LONG_AGENT: &str = r#"env = { ORCH_SIM_TURNS = "30", ORCH_SIM_DELAY_MS = "20" }"#;

#[test]
fn block_mode_stops_the_run_at_its_token_limit_with_a_bounded_overshoot() {
    let t = sim_test(&format!(
        "[settings]\nstartup_delay = \"0s\"\n[budget]\nmode = \"block\"\ntokens = 20000\n\
         [jobs.spender]\nprompt = \"spend\"\n{LONG_AGENT}\n\
         [jobs.after]\nprompt = \"after\"\nneeds = [\"spender\"]\n"
    ))
    .args(&["run", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}", out.stdout);
    let v = last_run(&t);
    assert_eq!(status(&v, "spender"), "budget_exceeded");
    assert_eq!(status(&v, "after"), "skipped");
    let run = scope(&v, "run");
    let over = run["overshoot_tokens"].as_u64().unwrap();
    let step = &v["instances"]["spender"]["steps"][0];
    let log = std::fs::read_to_string(step["log"].as_str().unwrap()).unwrap();
    let bound = one_message_bound(&log);
    assert!(over > 0, "it went past the limit: {run}");
    assert!(
        over <= bound,
        "overshoot {over} is more than one message ({bound})"
    );
    // SIGINT first: the agent wrote its final result, so the figure is Claude Code's, not an estimate.
    assert_eq!(step["usage"]["is_estimate"], false, "{step}");
    assert!(
        out.stdout.contains("the run budget is at 80 %"),
        "{}",
        out.stdout
    );
}

#[test]
fn block_mode_stops_at_a_dollar_limit() {
    let t = sim_test(&format!(
        "[budget]\nmode = \"block\"\nusd = 0.03\n[jobs.spender]\nprompt = \"spend\"\n{LONG_AGENT}\n"
    ))
    .args(&["run", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}", out.stdout);
    let v = last_run(&t);
    assert_eq!(status(&v, "spender"), "budget_exceeded");
    let run = scope(&v, "run");
    assert!(run["usd_used"].as_f64().unwrap() >= 0.03);
    assert!(run["overshoot_usd"].as_f64().unwrap() < 0.03, "{run}");
}

#[test]
fn a_command_budget_stops_that_command_only() {
    let t = sim_test(&format!(
        "[settings]\nstartup_delay = \"0s\"\n[budget]\nmode = \"block\"\n\
         commands.\"/review\" = {{ tokens = 15000 }}\n\
         [jobs.review]\ncommand = \"/review everything\"\n{LONG_AGENT}\n\
         [jobs.other]\ncommand = \"/document it\"\n\
         env = {{ ORCH_SIM_TURNS = \"30\", ORCH_SIM_DELAY_MS = \"40\" }}\n\
         [jobs.review-again]\ncommand = \"/review more\"\nneeds = [\"other\"]\n"
    ))
    .args(&["run", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}", out.stdout);
    let v = last_run(&t);
    assert_eq!(status(&v, "review"), "budget_exceeded");
    assert_eq!(status(&v, "other"), "completed");
    assert_eq!(status(&v, "review-again"), "blocked", "{}", out.stdout);
    assert!(
        out.stdout.contains("blocked: the /review budget is spent"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_job_limit_stops_that_job_and_an_unfitting_limit_is_refused() {
    let t = sim_test(&format!(
        "[settings]\nstartup_delay = \"0s\"\n[budget]\nmode = \"block\"\ntokens = 100000\n\
         [jobs.capped]\nprompt = \"spend\"\nmax_tokens = 12000\n{LONG_AGENT}\n\
         [jobs.greedy]\nprompt = \"wants more than the run has\"\nmax_tokens = 200000\n"
    ))
    .args(&["run", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 3, "{}", out.stdout);
    let v = last_run(&t);
    assert_eq!(status(&v, "capped"), "budget_exceeded");
    assert_eq!(status(&v, "greedy"), "blocked");
    let job = scope(&v, "job capped");
    let over = job["overshoot_tokens"].as_u64().unwrap();
    let log = std::fs::read_to_string(
        v["instances"]["capped"]["steps"][0]["log"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(over <= one_message_bound(&log));
    assert!(
        out.stdout.contains("max_tokens 200000 cannot fit"),
        "{}",
        out.stdout
    );
}

#[test]
fn warn_mode_runs_on_and_warns_once_per_threshold() {
    let t = sim_test(&format!(
        "[budget]\nmode = \"warn\"\ntokens = 10000\nusd = 0.01\n\
         [jobs.spender]\nprompt = \"spend\"\n{LONG_AGENT}\n"
    ))
    .args(&["run", "--simulate"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v = last_run(&t);
    assert_eq!(status(&v, "spender"), "completed");
    assert_eq!(
        out.stdout.matches("the run budget is at 80 %").count(),
        1,
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout
            .matches("the run budget reached its limit")
            .count(),
        1
    );
    assert!(scope(&v, "run")["overshoot_tokens"].as_u64().unwrap() > 10000);
}

#[test]
fn a_window_limit_holds_across_three_runs() {
    let manifest = "[budget]\nmode = \"block\"\nwindow = { period = \"1h\", usd = 0.02 }\n\
                    [jobs.nightly]\nprompt = \"a little work\"\nenv = { ORCH_SIM_TURNS = \"2\" }\n";
    let t = sim_test(manifest).args(&["run", "--simulate"]);
    let first = t.run();
    assert_eq!(first.code, 0, "{}", first.stdout);
    let spent_once = runs(&t)[0]["metadata"]["token_usage"]["total_cost_usd"]
        .as_f64()
        .unwrap();
    assert!(spent_once > 0.0 && spent_once < 0.02);
    // Run until the window is spent: a run may be stopped when it crosses the limit, and the
    // run after that is refused before anything starts.
    let mut statuses = vec![status(&runs(&t)[0], "nightly")];
    for _ in 0..8 {
        let out = t.run();
        let s = status(&last_run(&t), "nightly");
        statuses.push(s.clone());
        if s == "blocked" {
            assert_eq!(out.code, 3);
            assert!(
                out.stdout
                    .contains("blocked: the window 1h budget is spent"),
                "{}",
                out.stdout
            );
            break;
        }
    }
    assert!(statuses.len() >= 3, "at least three runs: {statuses:?}");
    assert_eq!(statuses.last().unwrap(), "blocked", "{statuses:?}");
    let all = runs(&t);
    let window = scope(all.last().unwrap(), "window 1h");
    // The refused run starts from everything the earlier runs spent.
    let earlier: f64 = all[..all.len() - 1]
        .iter()
        .map(|r| {
            r["metadata"]["token_usage"]["total_cost_usd"]
                .as_f64()
                .unwrap()
        })
        .sum();
    assert!(
        (window["usd_used"].as_f64().unwrap() - earlier).abs() < 1e-9,
        "{window}"
    );
    assert!(earlier >= 0.02, "{earlier}");
}

#[test]
fn the_ledger_reports_spend_by_run_job_command_model_and_day() {
    let t = sim_test(
        "[jobs.a]\ncommand = \"/review a\"\n[jobs.b]\nprompt = \"free text\"\n[settings]\nstartup_delay = \"0s\"\n",
    )
    .args(&["run", "--simulate", "--quiet"]);
    assert_eq!(t.run().code, 0);
    let total = last_run(&t)["metadata"]["token_usage"]["total_cost_usd"]
        .as_f64()
        .unwrap();
    for by in ["run", "job", "command", "model", "day"] {
        let out = t
            .with_args(&["ledger", "--by", by, "--format", "json", "--since", "1h"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = v["rows"].as_array().unwrap();
        let sum: f64 = rows.iter().map(|r| r["usd"].as_f64().unwrap()).sum();
        assert!((sum - total).abs() < 1e-9, "by {by}: {sum} vs {total}");
        if by == "job" {
            assert_eq!(rows.len(), 2);
        }
        if by == "command" {
            let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
            assert!(
                keys.contains(&"/review") && keys.contains(&"(none)"),
                "{keys:?}"
            );
        }
    }
    let table = t.with_args(&["ledger", "--by", "job"]).output().unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("total in the last 30d"), "{text}");
}

/// A seed for a test's random choices: `ORCH_TEST_SEED` when set (to replay a failure), else
/// from the clock. Printed either way.
fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("ORCH_TEST_SEED") {
        Ok(s) => s.parse().expect("ORCH_TEST_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64,
    };
    eprintln!("{test}: seed {seed} (replay with ORCH_TEST_SEED={seed})");
    seed
}

/// splitmix64: the next number of a seeded sequence.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Tokens and dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Spend {
    tokens: u64,
    usd: f64,
}

/// Each agent step of a run in a ledger: its number, log, and whether it resumes a session.
fn agent_steps(db: &rusqlite::Connection, run: &str) -> Vec<(i64, String, bool, Option<String>)> {
    let mut steps = db
        .prepare(
            "SELECT step, log, resume, session_id FROM steps
             WHERE run_id = ?1 AND is_agent = 1 ORDER BY step",
        )
        .unwrap();
    steps
        .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// What each agent step of `run` is charged by its log, read only up to `limit(log)` bytes
/// (whole lines only), as orch's own accounting reads it, resumed sessions included.
fn spend_from_logs(
    db: &rusqlite::Connection,
    run: &str,
    limit: impl Fn(&str) -> usize,
) -> Vec<(i64, Spend)> {
    let mut sessions = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (step, log, resume, session) in agent_steps(db, run) {
        let prior = if resume {
            session.as_ref().and_then(|s| sessions.get(s).cloned())
        } else {
            None
        };
        let mut acc = orch::agent::accounting::Accounting::new(prior);
        let mut bytes = std::fs::read(&log).unwrap_or_default();
        bytes.truncate(limit(&log));
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in bytes[..whole].split(|b| *b == b'\n') {
            if let Some(ev) = orch::agent::stream::parse_line(line) {
                acc.observe(&ev);
            }
        }
        if let (Some(s), Some(totals)) = (session, acc.session_totals()) {
            sessions.insert(s, totals);
        }
        let usage = acc.usage();
        out.push((
            step,
            Spend {
                tokens: usage.total_tokens(),
                usd: usage.cost_usd,
            },
        ));
    }
    out
}

/// The usage rows of one step of `run` in a ledger, summed.
fn committed(db: &rusqlite::Connection, run: &str, step: i64) -> Spend {
    let (tokens, usd): (i64, f64) = db
        .query_row(
            "SELECT COALESCE(SUM(input+output+cache_read+cache_creation),0), COALESCE(SUM(usd),0)
             FROM usage WHERE run_id = ?1 AND step = ?2",
            rusqlite::params![run, step],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    Spend {
        tokens: tokens as u64,
        usd,
    }
}

/// The byte length of every file in `dir`.
fn log_lengths(dir: &std::path::Path) -> HashMap<String, usize> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let len = e.metadata().ok()?.len() as usize;
            Some((e.path().display().to_string(), len))
        })
        .collect()
}

/// How long before a kill a message must have reached its step's log for its usage to be
/// committed: the ledger may batch commits, the step logs are the write-ahead record, and
/// reconciliation recovers the rest; the window bounds what it may have to recover.
const COMMIT_WINDOW: Duration = Duration::from_secs(2);

/// Kills orch with SIGKILL at random points of a run (seeded, the seed printed) and checks the
/// ledger as the kill left it (a copy of the file and its WAL taken before anything reopens
/// it): no step has more committed than its log holds (no phantom spend), and every message
/// that reached a log more than [`COMMIT_WINDOW`] before the kill is committed (the ledger kept
/// writing). Then, after the next start reconciles, every killed run is dead and holds exactly
/// what its step logs hold.
#[test]
fn sigkill_at_random_points_loses_no_recorded_usage() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.a]\nprompt = \"one\"\nenv = { ORCH_SIM_TURNS = \"150\", ORCH_SIM_DELAY_MS = \"40\" }\n\
        [jobs.b]\ncommand = \"/two x\"\npre_commands = [\"/clear\"]\nenv = { ORCH_SIM_TURNS = \"150\", ORCH_SIM_DELAY_MS = \"45\" }\n\
        [jobs.c]\nprompt = \"three\"\nenv = { ORCH_SIM_TURNS = \"150\", ORCH_SIM_DELAY_MS = \"35\" }\n";
    let t = sim_test(manifest)
        .args(&["run", "--simulate", "--quiet"])
        .allow_dead_run("orch is SIGKILLed mid-run, on purpose, again and again");
    let mut rng = test_seed("sigkill_at_random_points_loses_no_recorded_usage");
    let runs_dir = t.path().join(".orch/runs");
    let mut killed = Vec::new();
    let mut windows_checked = 0;
    for i in 0..6 {
        // Half the kills early (startup, first turns), half late enough for the window check.
        let delay = if i % 2 == 0 {
            Duration::from_millis(20 + next_random(&mut rng) % 600)
        } else {
            COMMIT_WINDOW + Duration::from_millis(200 + next_random(&mut rng) % 2000)
        };
        let before: HashSet<_> = std::fs::read_dir(&runs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        let started = Instant::now();
        let mut child = t.command().spawn().unwrap();
        // The logs as they were COMMIT_WINDOW before the kill.
        let mut early = None;
        if let Some(at) = delay.checked_sub(COMMIT_WINDOW) {
            std::thread::sleep(at);
            let run = std::fs::read_dir(&runs_dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| !before.contains(p));
            early = run.map(|r| log_lengths(&r.join("logs")));
        }
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
        child.kill().unwrap();
        child.wait().unwrap();
        // The ledger as orch left it, before any other orch opens (and reconciles) it.
        let copy = t.path().join(format!("ledger-at-kill-{i}"));
        std::fs::create_dir_all(&copy).unwrap();
        for name in ["ledger.sqlite", "ledger.sqlite-wal"] {
            let from = t.path().join(".orch").join(name);
            if from.exists() {
                std::fs::copy(&from, copy.join(name)).unwrap();
            }
        }
        let Some(run) = std::fs::read_dir(&runs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| !before.contains(p))
        else {
            continue; // Killed before the run had a folder: nothing recorded, nothing to lose.
        };
        let run = run.file_name().unwrap().to_str().unwrap().to_string();
        let db = rusqlite::Connection::open(copy.join("ledger.sqlite")).unwrap();
        let tables: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('steps', 'usage')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if tables < 2 {
            // Killed before the ledger had its tables: nothing was committed; the check after
            // reconciliation still holds the run to its logs.
            killed.push(run);
            continue;
        }
        for (step, full) in spend_from_logs(&db, &run, |_| usize::MAX) {
            let have = committed(&db, &run, step);
            assert!(
                have.tokens <= full.tokens && have.usd <= full.usd + 1e-9,
                "kill {i} after {delay:?}, run {run} step {step}: the ledger had committed \
                 {have:?}, more than the step's log holds, {full:?}"
            );
        }
        if let Some(early) = early {
            let at_window = |log: &str| early.get(log).copied().unwrap_or(0);
            for (step, old) in spend_from_logs(&db, &run, at_window) {
                let have = committed(&db, &run, step);
                assert!(
                    have.tokens >= old.tokens && have.usd + 1e-9 >= old.usd,
                    "kill {i} after {delay:?}, run {run} step {step}: the step's log held \
                     {old:?} {COMMIT_WINDOW:?} before the kill, the ledger had committed only \
                     {have:?}"
                );
                windows_checked += usize::from(old.tokens > 0);
            }
        }
        killed.push(run);
    }
    assert!(
        windows_checked > 0,
        "no kill came late enough to check the window"
    );
    // The next start (here `orch ledger`) reconciles every dead run.
    let out = t
        .with_args(&["ledger", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(t.path().join(".orch/ledger.sqlite")).unwrap();
    let mut checked_steps = 0;
    for run in &killed {
        let status: Option<String> = db
            .query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
            .optional()
            .unwrap();
        let Some(status) = status else {
            // Killed between making the run's folder and recording the run: it must not have
            // launched anything, or what that spent would be nowhere in the ledger.
            let logs = log_lengths(&runs_dir.join(run).join("logs"));
            assert!(
                logs.is_empty(),
                "run {run} is not in the ledger but has logs: {logs:?}"
            );
            continue;
        };
        assert_eq!(status, "dead", "run {run}");
        for (step, from_log) in spend_from_logs(&db, run, |_| usize::MAX) {
            let have = committed(&db, run, step);
            assert_eq!(have.tokens, from_log.tokens, "run {run} step {step}");
            assert!(
                (have.usd - from_log.usd).abs() < 1e-9,
                "run {run} step {step}: {have:?} vs {from_log:?}"
            );
            checked_steps += 1;
        }
    }
    assert!(checked_steps > 0);
}

#[test]
fn plan_shows_window_spend_and_forecasts_from_the_ledger() {
    let manifest = "[budget]\nwindow = { period = \"1h\", usd = 5.0 }\n\
                    [jobs.nightly]\nprompt = \"work\"\n[jobs.lint]\nrun = [\"true\"]\n";
    let t = sim_test(manifest);
    let before = t.with_args(&["plan", "--simulate"]).output().unwrap();
    let before = String::from_utf8(before.stdout).unwrap();
    assert!(
        before.contains("window 1h $5.00 (no ledger yet)"),
        "{before}"
    );
    assert!(
        before.contains("forecast: no history in the ledger"),
        "{before}"
    );
    assert!(
        !t.path().join(".orch/ledger.sqlite").exists(),
        "plan creates no state"
    );
    for _ in 0..3 {
        assert_eq!(
            t.with_args(&["run", "--simulate", "--quiet"])
                .status()
                .unwrap()
                .code(),
            Some(0)
        );
    }
    let costs: Vec<f64> = runs(&t)
        .iter()
        .map(|r| {
            r["instances"]["nightly"]["total_cost_usd"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let mut sorted = costs.clone();
    sorted.sort_by(f64::total_cmp);
    let json = t
        .with_args(&["plan", "--simulate", "--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    let spent = v["window_spent"]["usd"].as_f64().unwrap();
    assert!((spent - costs.iter().sum::<f64>()).abs() < 1e-9);
    let nightly = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["job"] == "nightly")
        .unwrap();
    assert_eq!(nightly["forecast"]["runs"], 3);
    assert!((nightly["forecast"]["median_usd"].as_f64().unwrap() - sorted[1]).abs() < 1e-12);
    let lint = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["job"] == "lint")
        .unwrap();
    assert!(lint["forecast"].is_null(), "process jobs are not forecast");
}

#[test]
fn concurrent_orch_processes_share_one_ledger() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.a]\nprompt = \"one\"\nenv = { ORCH_SIM_TURNS = \"15\", ORCH_SIM_DELAY_MS = \"2\" }\n\
        [jobs.b]\nprompt = \"two\"\nenv = { ORCH_SIM_TURNS = \"15\", ORCH_SIM_DELAY_MS = \"2\" }\n";
    let t = sim_test(manifest).args(&["run", "--simulate", "--quiet"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            t.command()
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = rusqlite::Connection::open(t.path().join(".orch/ledger.sqlite")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let all = runs(&t);
    assert_eq!(all.len(), 4);
    for r in &all {
        let id = r["metadata"]["run_id"].as_str().unwrap();
        let (status, usd): (String, f64) = db
            .query_row(
                "SELECT r.status, (SELECT COALESCE(SUM(usd), 0) FROM usage WHERE run_id = r.id) FROM runs r WHERE r.id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, "completed");
        let total = r["metadata"]["token_usage"]["total_cost_usd"]
            .as_f64()
            .unwrap();
        assert!(
            (usd - total).abs() < 1e-9,
            "run {id}: ledger {usd} vs results {total}"
        );
    }
}

/// A test with an executable stand-in `claude` (a shell script) at `claude` in its folder.
fn stand_in(script: &str, manifest: &str) -> (Test, String) {
    let t = Test::new()
        .file("claude", script)
        .file("orch.toml", manifest);
    let claude = t.path().join("claude");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&claude)
        .status()
        .unwrap();
    let path = claude.to_str().unwrap().to_string();
    (t, path)
}

/// A stand-in `claude` whose step named `big` reports 10^19 tokens (more than an i64 holds) in
/// two fields, first as a live assistant line and then in its result; other steps spend a little.
const HUGE_TOKENS_CLAUDE: &str = r#"#!/bin/sh
for last; do :; done
echo '{"type":"system","subtype":"init","session_id":"s","model":"claude-test-x"}'
if [ "$last" = "big" ]; then
  echo '{"type":"assistant","message":{"id":"m1","model":"claude-test-x","usage":{"input_tokens":10000000000000000000,"output_tokens":1,"cache_read_input_tokens":10000000000000000000},"content":[{"type":"text","text":"huge"}]}}'
  if [ -n "$ORCH_TEST_HANG" ]; then exec sleep 30; fi
  echo '{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.01,"usage":{"input_tokens":10000000000000000000,"output_tokens":5},"modelUsage":{"claude-test-x":{"inputTokens":10000000000000000000,"outputTokens":5,"cacheReadInputTokens":10000000000000000000,"costUSD":0.01}}}'
else
  echo '{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.01,"usage":{"input_tokens":10,"output_tokens":5},"modelUsage":{"claude-test-x":{"inputTokens":10,"outputTokens":5,"costUSD":0.01}}}'
fi
"#;

/// The per-field cap of the stream parser (src/agent/stream.rs `TOKEN_CAP`).
const TOKEN_CAP: u64 = 1_000_000_000_000;

#[test]
fn huge_token_counts_are_capped_and_spend_the_budget_instead_of_wrapping() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [budget]\nmode = \"block\"\ntokens = 1000\n\
        [jobs.big]\nprompt = \"big\"\n\
        [jobs.after]\nprompt = \"after\"\nneeds = [\"big\"]\n";
    let (t, claude) = stand_in(HUGE_TOKENS_CLAUDE, manifest);
    let out = t
        .with_args(&["run", "--claude-path", &claude])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = last_run(&t);
    let run = scope(&v, "run");
    let used = run["tokens_used"].as_u64().unwrap();
    // Two fields at the cap (input and cache reads) plus the output tokens, never wrapped to 0:
    // 1 from the assistant line, or 5 when the result line got out before the budget stop's
    // SIGINT reached the stand-in (a race the test does not control).
    assert!(
        [2 * TOKEN_CAP + 1, 2 * TOKEN_CAP + 5].contains(&used),
        "{used}: {stdout}"
    );
    // Block mode stopped `big` at the limit and `after` never ran.
    assert_eq!(status(&v, "big"), "budget_exceeded", "{stdout}");
    assert_eq!(status(&v, "after"), "skipped", "{stdout}");
    assert!(
        stdout.contains("usage anomaly") && stdout.contains("10000000000000000000"),
        "the anomaly is reported: {stdout}"
    );
    let ledger = t
        .with_args(&["ledger", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        ledger.status.success(),
        "orch ledger: {}",
        String::from_utf8_lossy(&ledger.stderr)
    );
    let report: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let total: u64 = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(total, used);
}

#[test]
fn a_killed_run_with_huge_counts_is_reconciled_and_the_next_run_succeeds() {
    let manifest = "[jobs.big]\nprompt = \"big\"\n";
    let (t, claude) = stand_in(HUGE_TOKENS_CLAUDE, manifest);
    let t = t
        .file(
            "next.toml",
            "[budget]\nwindow = { period = \"1h\", tokens = 100 }\n[jobs.ok]\nrun = [\"true\"]\n",
        )
        .env("ORCH_TEST_HANG", "1")
        .allow_dead_run("orch is SIGKILLed to leave a run with huge counts for the next start");
    let mut child = t
        .with_args(&["run", "--quiet", "--claude-path", &claude])
        .spawn()
        .unwrap();
    let db_path = t.path().join(".orch/ledger.sqlite");
    // The live assistant line has been booked once the ledger holds a usage row.
    super::harness::wait_until("a usage row", Duration::from_secs(20), || {
        rusqlite::Connection::open(&db_path)
            .and_then(|db| db.query_row("SELECT COUNT(*) FROM usage", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > 0)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let next = t.with_args(&["run", "next.toml"]).output().unwrap();
    assert_eq!(
        next.status.code(),
        Some(0),
        "the next run: {}\n{}",
        String::from_utf8_lossy(&next.stdout),
        String::from_utf8_lossy(&next.stderr)
    );
    let ledger = t
        .with_args(&["ledger", "--by", "job", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        ledger.status.success(),
        "orch ledger: {}",
        String::from_utf8_lossy(&ledger.stderr)
    );
    let report: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let big = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "big")
        .expect("a row for big");
    assert_eq!(big["total_tokens"].as_u64(), Some(2 * TOKEN_CAP + 1));
}

/// Results of three steps in a row: `a` spends $0.60, `bad` reports `cost` (in both the total
/// and its model's entry), `c` (max_usd $0.50) may start only if the $0.60 is still counted.
fn bad_cost_claude(cost: &str) -> String {
    format!(
        r#"#!/bin/sh
for last; do :; done
case "$last" in
  a) cost=0.6 ;;
  bad) cost='{cost}' ;;
  *) cost=0.01 ;;
esac
echo '{{"type":"system","subtype":"init","session_id":"s","model":"claude-test-x"}}'
echo '{{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":'"$cost"',"usage":{{"input_tokens":10,"output_tokens":5}},"modelUsage":{{"claude-test-x":{{"inputTokens":10,"outputTokens":5,"costUSD":'"$cost"'}}}}}}'
"#
    )
}

#[test]
fn non_finite_and_negative_costs_are_rejected_without_losing_the_result() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [budget]\nmode = \"block\"\nusd = 1.0\nwindow = { period = \"1h\", usd = 5.0 }\n\
        [jobs.a]\nprompt = \"a\"\n\
        [jobs.bad]\nprompt = \"bad\"\nneeds = [\"a\"]\n\
        [jobs.c]\nprompt = \"c\"\nneeds = [\"bad\"]\nmax_usd = 0.5\n";
    for cost in [r#""inf""#, r#""NaN""#, "1e309", "-1"] {
        let (t, claude) = stand_in(&bad_cost_claude(cost), manifest);
        let t = t.file(
            "again.toml",
            "[budget]\nmode = \"block\"\nwindow = { period = \"1h\", usd = 5.0 }\n\
             [jobs.again]\nprompt = \"again\"\n",
        );
        let out = t
            .with_args(&["run", "--claude-path", &claude])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v = last_run(&t);
        assert_eq!(status(&v, "bad"), "completed", "{cost}: {stdout}");
        assert_eq!(
            v["instances"]["bad"]["total_cost_usd"].as_f64(),
            Some(0.0),
            "{cost}"
        );
        let run = scope(&v, "run");
        assert_eq!(run["usd_used"].as_f64(), Some(0.6), "{cost}: {stdout}");
        assert_eq!(
            status(&v, "c"),
            "blocked",
            "{cost}: the spend was reset: {stdout}"
        );
        assert!(stdout.contains("usage anomaly"), "{cost}: {stdout}");
        let again = t
            .with_args(&["run", "again.toml", "--claude-path", &claude])
            .output()
            .unwrap();
        assert_eq!(
            again.status.code(),
            Some(0),
            "{cost}: the window is not blocked: {}",
            String::from_utf8_lossy(&again.stdout)
        );
    }
}
