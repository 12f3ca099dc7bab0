//! The run core end to end: a panicking executor, SIGHUP, and a ledger another process keeps
//! locked while eight orchs run on it. The real binary, real processes, real SQLite.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{Test, assert_no_survivors, pid_alive, wait_until};
use super::run::Running;

fn only_run_dir(state: &Path) -> PathBuf {
    let runs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap_or_else(|e| panic!("{}: {e}", state.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    runs.into_iter().next().unwrap()
}

fn results_in(state: &Path) -> Value {
    let path = only_run_dir(state).join("results.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn step_of<'v>(v: &'v Value, job: &str) -> &'v Value {
    &v["instances"][job]["steps"][0]
}

fn ledger(state: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(state.join("ledger.sqlite")).unwrap()
}

fn run_status(state: &Path, run_id: &str) -> String {
    ledger(state)
        .query_row("SELECT status FROM runs WHERE id = ?1", [run_id], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn a_panicking_executor_fails_its_step_and_the_run_still_ends_with_results() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[settings]\nstartup_delay = \"0s\"\n[jobs.doomed]\nrun = [\"sleep\", \"1000\"]\n\
             [jobs.fine]\nrun = [\"true\"]\n[jobs.after]\nrun = [\"true\"]\nneeds = [\"doomed\"]\n",
        )
        .args(&["run"])
        .env("ORCH_TEST_PANIC_STEP", "doomed");
    let started = Instant::now();
    let out = t.run();
    assert!(started.elapsed() < Duration::from_secs(20), "the run hung");
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let v = results_in(&t.path().join(".orch"));
    let doomed = step_of(&v, "doomed");
    assert_eq!(doomed["status"], "failed");
    let reason = doomed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the executor panicked: ORCH_TEST_PANIC_STEP"),
        "{reason}"
    );
    assert_eq!(step_of(&v, "fine")["status"], "completed");
    assert_eq!(step_of(&v, "after")["status"], "skipped");
    // The panic unwound through the child's guard, which killed the group.
    let pid = doomed["pid"].as_u64().expect("the step ran") as u32;
    assert_no_survivors(&[pid]);
    let run_id = v["metadata"]["run_id"].as_str().unwrap();
    assert_eq!(run_status(&t.path().join(".orch"), run_id), "failed");
}

#[test]
fn sighup_stops_the_steps_with_the_ladder_and_writes_results() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[settings]\nstartup_delay = \"0s\"\n\
             [jobs.agent]\nprompt = \"hang\"\nenv = { ORCH_SIM_HANG = \"1\" }\n\
             [jobs.plain]\nrun = [\"sleep\", \"1000\"]\n",
        )
        .args(&["run", "--simulate"])
        .env("ORCH_GRACE_INT", "5s")
        .env("ORCH_GRACE_TERM", "1s");
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap());
    let mut r = Running::start(&t);
    r.expect("agent started");
    r.expect("plain started");
    let pids = r.pids();
    wait_until("the agent's init line", Duration::from_secs(10), || {
        std::fs::read_dir(t.path().join(".orch/runs"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|run| {
                std::fs::read_to_string(run.path().join("logs/001-agent.log"))
                    .is_ok_and(|log| log.contains("\"init\""))
            })
    });
    r.signal("HUP");
    let (code, lines) = r.wait();
    assert_eq!(code, 130, "{}", lines.join("\n"));
    assert_no_survivors(&pids);
    let v = results_in(&t.path().join(".orch"));
    for job in ["agent", "plain"] {
        assert_eq!(v["instances"][job]["status"], "cancelled", "{job}");
    }
    // SIGINT first: the agent wrote its result with the cost, so the usage is final.
    assert_eq!(step_of(&v, "agent")["usage"]["is_estimate"], false);
    // SIGINT was enough for sleep: no SIGKILL was needed.
    let plain = step_of(&v, "plain")["reason"].as_str().unwrap().to_string();
    assert!(plain.contains("signal 2"), "{plain}");
    let run_id = v["metadata"]["run_id"].as_str().unwrap();
    assert_eq!(run_status(&t.path().join(".orch"), run_id), "interrupted");
}

/// One orch of the busy-ledger test, in the background, writing NDJSON events to a file.
struct Orch {
    child: Child,
    events: PathBuf,
}

/// The NDJSON events written to `path` so far.
fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Orch {
    fn events(&self) -> Vec<Value> {
        read_events(&self.events)
    }

    fn count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == kind).count()
    }
}

/// Holds `BEGIN IMMEDIATE` on the ledger from another connection, as another process would.
fn hold_the_write_lock(ledger: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(ledger).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c
}

/// The acceptance: eight concurrent orchs on one ledger, another connection holding its
/// write lock for 15 s. None loses a delta, none stops showing output, and each reacts to SIGINT
/// at once (measured from the signal to its `stop_requested` event).
#[test]
fn eight_orchs_on_a_ledger_locked_for_15_s_lose_nothing_and_keep_reacting() {
    let t = Test::new().file(
        "orch.toml",
        "[settings]\nstartup_delay = \"0s\"\n\
         [jobs.a]\nprompt = \"a\"\nenv = { ORCH_SIM_TURNS = \"300\", ORCH_SIM_DELAY_MS = \"20\" }\n\
         [jobs.b]\nprompt = \"b\"\nenv = { ORCH_SIM_TURNS = \"100\", ORCH_SIM_DELAY_MS = \"20\" }\n",
    );
    let state = t.path().join("state");
    let mut orchs = Vec::new();
    for i in 0..8 {
        let events = t.path().join(format!("events-{i}.ndjson"));
        let child = t
            .with_args(&[
                "run",
                "orch.toml",
                "--simulate",
                "--quiet",
                "--events",
                events.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ])
            .env("ORCH_SIM_STATE_DIR", t.path().join("sim").to_str().unwrap())
            .env("ORCH_GRACE_INT", "3s")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        orchs.push(Orch { child, events });
    }
    for o in &orchs {
        wait_until("every step started", Duration::from_secs(30), || {
            o.count("step_started") == 2
        });
    }
    let holder = hold_the_write_lock(&state.join("ledger.sqlite"));
    let locked_at = Instant::now();
    // Output keeps flowing while the ledger is locked: every orch reports new usage.
    let seen: Vec<usize> = orchs.iter().map(|o| o.count("usage_recorded")).collect();
    for (o, before) in orchs.iter().zip(&seen) {
        wait_until("usage events while locked", Duration::from_secs(5), || {
            o.count("usage_recorded") > before + 5
        });
    }
    // Half are interrupted while the lock is held; the other half end on their own.
    let mut latencies = Vec::new();
    for o in &orchs[..4] {
        let sent = Instant::now();
        let ok = std::process::Command::new("kill")
            .args(["-INT", &o.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        // A plain text search: parsing the whole file each poll would add to the figure.
        let stopped = || {
            std::fs::read_to_string(&o.events)
                .is_ok_and(|text| text.contains("\"event\":\"stop_requested\""))
        };
        while !stopped() {
            assert!(sent.elapsed() < Duration::from_secs(15), "SIGINT ignored");
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(sent.elapsed());
    }
    assert!(
        locked_at.elapsed() < Duration::from_secs(15),
        "the lock is still held"
    );
    let worst = latencies.iter().max().copied().unwrap();
    eprintln!("SIGINT -> stop_requested with the ledger locked: {latencies:?}, worst {worst:?}");
    // The acceptance figure (measured worst: 13-21 ms with a load average of 6-10 on
    // two cores).
    assert!(worst <= Duration::from_millis(200), "worst {worst:?}");
    std::thread::sleep(Duration::from_secs(15).saturating_sub(locked_at.elapsed()));
    holder.execute_batch("COMMIT").unwrap();
    let released = Instant::now();
    for o in &mut orchs {
        let status = o.child.wait().unwrap();
        assert!(matches!(status.code(), Some(0 | 130)), "{status:?}");
    }
    eprintln!(
        "all eight ended {:?} after the lock was released",
        released.elapsed()
    );
    // No delta lost: per step, the ledger's rows add up to what results.json says.
    let db = ledger(&state);
    for (i, o) in orchs.iter().enumerate() {
        let finished = o
            .events()
            .into_iter()
            .find(|e| e["event"] == "run_finished");
        let finished = finished.unwrap_or_else(|| panic!("orch {i} did not finish"));
        let path = finished["results"].as_str().unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let run_id = v["metadata"]["run_id"].as_str().unwrap().to_string();
        for (step, job) in ["a", "b"].iter().enumerate() {
            let usage = &step_of(&v, job)["usage"];
            let want: i64 = ["input", "output", "cache_read", "cache_creation"]
                .iter()
                .map(|k| usage["tokens"][k].as_i64().unwrap())
                .sum();
            let (got, usd): (i64, f64) = db
                .query_row(
                    "SELECT COALESCE(SUM(input + output + cache_read + cache_creation), 0),
                            COALESCE(SUM(usd), 0) FROM usage WHERE run_id = ?1 AND step = ?2",
                    rusqlite::params![run_id, step as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert!(want > 0, "orch {i} {job} spent nothing");
            assert_eq!(got, want, "orch {i} step {job}");
            let cost = usage["cost_usd"].as_f64().unwrap();
            assert!((usd - cost).abs() < 1e-9, "orch {i} {job}: {usd} vs {cost}");
        }
        assert_ne!(run_status(&state, &run_id), "running", "orch {i}");
        assert!(!pid_alive(o.child.id()));
    }
}

/// The wait at the run's end is bounded: with the ledger locked past it, orch ends anyway, says
/// how many writes did not land, and leaves the run `running`; the next orch start reconciles
/// them from the step logs, and then the ledger matches the results again.
#[test]
fn writes_that_cannot_land_by_the_end_are_reconciled_by_the_next_start() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[settings]\nstartup_delay = \"0s\"\n\
             [jobs.a]\nprompt = \"a\"\nenv = { ORCH_SIM_TURNS = \"40\", ORCH_SIM_DELAY_MS = \"20\" }\n",
        )
        .file("other.toml", "[jobs.x]\nrun = [\"true\"]\n")
        .allow_dead_run("the ledger is kept locked past the run's end, so its end is reconciled");
    let state = t.path().join("state");
    let events = t.path().join("events.ndjson");
    let mut child = t
        .with_args(&[
            "run",
            "orch.toml",
            "--simulate",
            "--quiet",
            "--events",
            events.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .env("ORCH_SIM_STATE_DIR", t.path().join("sim").to_str().unwrap())
        .env("ORCH_LEDGER_WAIT", "300ms")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Lock only once the step is known to the ledger (reconciliation starts from its row).
    wait_until("the step's row", Duration::from_secs(20), || {
        rusqlite::Connection::open(state.join("ledger.sqlite"))
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM steps", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 1)
    });
    let holder = hold_the_write_lock(&state.join("ledger.sqlite"));
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    let lost = read_events(&events)
        .into_iter()
        .find(|e| e["event"] == "ledger_writes_not_landed")
        .expect("the run's end says writes did not land");
    let n = lost["writes"].as_u64().unwrap();
    assert!(n >= 2, "{lost}");
    assert!(
        stdout.contains(&format!(
            "{n} ledger writes did not land: the next orch start reconciles them"
        )),
        "{stdout}"
    );
    holder.execute_batch("COMMIT").unwrap();
    let v = results_in(&state);
    let run_id = v["metadata"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(run_status(&state, &run_id), "running");
    let said = v["metadata"]["ledger_writes_not_landed"].as_str().unwrap();
    assert!(
        said.starts_with(&format!("{n} ledger writes did not land")),
        "{said}"
    );
    // The next start (any run on the same state folder) reconciles it from the step log.
    let next = t
        .with_args(&["run", "other.toml", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(next.status.success(), "{next:?}");
    assert_eq!(run_status(&state, &run_id), "dead");
    let usage = &step_of(&v, "a")["usage"];
    let want: i64 = ["input", "output", "cache_read", "cache_creation"]
        .iter()
        .map(|k| usage["tokens"][k].as_i64().unwrap())
        .sum();
    let got: i64 = ledger(&state)
        .query_row(
            "SELECT SUM(input + output + cache_read + cache_creation) FROM usage
             WHERE run_id = ?1 AND step = 0",
            [&run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn sighup_while_waiting_for_the_start_time_exits_cleanly_and_runs_nothing() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--start-at", "2h"]);
    let mut r = Running::start(&t);
    r.expect("next run at");
    r.signal("HUP");
    let (code, lines) = r.wait();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SIGHUP: stopped while waiting; nothing ran")),
        "{}",
        lines.join("\n")
    );
    assert!(!t.path().join(".orch/runs").exists());
}

#[test]
fn sighup_during_a_cron_run_stops_that_run_and_the_service() {
    let t = Test::new()
        .file("orch.toml", "[jobs.slow]\nrun = [\"sleep\", \"30\"]\n")
        .args(&["run", "--schedule", "* * * * * *"]);
    let mut r = Running::start(&t);
    r.expect("slow started");
    let pids = r.pids();
    r.signal("HUP");
    let (code, lines) = r.wait();
    assert_eq!(code, 130, "{}", lines.join("\n"));
    assert_no_survivors(&pids);
    let v = results_in(&t.path().join(".orch"));
    assert_eq!(v["instances"]["slow"]["status"], "cancelled");
}

/// A signal while orch waits at the run's end for a ledger another process keeps locked ends
/// that wait at once (before: the signal was swallowed and orch waited the full 30 s). The
/// writes that did not land are counted and left to the next start, as after a timed-out wait.
#[test]
fn a_signal_during_the_wait_for_a_locked_ledger_at_the_end_cuts_it_short() {
    let t = Test::new();
    let go = t.path().join("go");
    let t = t
        .file(
            "orch.toml",
            &format!(
                "[settings]\nstartup_delay = \"0s\"\n[jobs.a]\nshell = \"while [ ! -e '{}' ]; do sleep 0.02; done\"\n",
                go.display()
            ),
        )
        .allow_dead_run("the ledger is locked past the run's end and SIGINT cuts the wait short");
    let state = t.path().join("state");
    let events = t.path().join("events.ndjson");
    let mut child = t
        .with_args(&[
            "run",
            "orch.toml",
            "--quiet",
            "--events",
            events.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the step's row", Duration::from_secs(20), || {
        rusqlite::Connection::open(state.join("ledger.sqlite"))
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM steps", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 1)
    });
    let holder = hold_the_write_lock(&state.join("ledger.sqlite"));
    std::fs::write(&go, "").unwrap();
    wait_until("the step's end", Duration::from_secs(20), || {
        read_events(&events)
            .iter()
            .any(|e| e["event"] == "step_finished")
    });
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    wait_until("orch to exit", Duration::from_secs(40), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let took = signalled.elapsed();
    eprintln!("SIGINT to exit during the end wait: {took:?}");
    assert!(took < Duration::from_secs(5), "orch kept waiting: {took:?}");
    // The step completed; the signal only cut the wait, so the steps' outcome is the exit code.
    assert_eq!(status.unwrap().code(), Some(0));
    let lost = read_events(&events)
        .into_iter()
        .find(|e| e["event"] == "ledger_writes_not_landed")
        .expect("the writes that did not land are counted");
    assert!(lost["writes"].as_u64().unwrap() >= 1, "{lost}");
    holder.execute_batch("COMMIT").unwrap();
    let v = results_in(&state);
    assert_eq!(step_of(&v, "a")["status"], "completed");
}
