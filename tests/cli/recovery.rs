//! Recovery: reconciliation of runs a killed orch left behind (one reconciler per dead run, from
//! any folder), and runs whose writes fail (a full disk) ending with what they lost reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rusqlite::Connection;

use super::harness::{Test, orch_bin, wait_until};

fn sim_test(manifest: &str) -> Test {
    let t = Test::new().file("orch.toml", manifest);
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
}

/// One agent step's spend: in the ledger, and as its log re-parsed tells it.
#[derive(Debug)]
#[allow(dead_code)] // `step` is there for the failure messages.
struct StepCheck {
    step: i64,
    ledger: (u64, f64),
    log: (u64, f64),
}

impl StepCheck {
    fn matches(&self) -> bool {
        self.ledger.0 == self.log.0 && (self.ledger.1 - self.log.1).abs() < 1e-9
    }
}

/// Every agent step of `run`: the ledger's sum of its rows and its log's figures, re-parsed the
/// way the live run parses them.
fn check_steps(db: &Path, run: &str, base: &Path) -> Vec<StepCheck> {
    let db = Connection::open(db).unwrap();
    let mut steps = db
        .prepare(
            "SELECT step, log, resume, session_id FROM steps
             WHERE run_id = ?1 AND is_agent = 1 ORDER BY step",
        )
        .unwrap();
    let rows: Vec<(i64, String, bool, Option<String>)> = steps
        .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut sessions = HashMap::new();
    let mut out = Vec::new();
    for (step, log, resume, session) in rows {
        let prior = if resume {
            session.as_ref().and_then(|s| sessions.get(s).cloned())
        } else {
            None
        };
        let mut acc = orch::agent::accounting::Accounting::new(prior);
        // A relative path (as older ledgers stored) is taken from the folder orch ran in.
        let bytes = std::fs::read(base.join(&log)).unwrap_or_else(|e| panic!("log {log}: {e}"));
        for line in bytes.split(|b| *b == b'\n') {
            if let Some(ev) = orch::agent::stream::parse_line(line) {
                acc.observe(&ev);
            }
        }
        if let (Some(s), Some(totals)) = (session, acc.session_totals()) {
            sessions.insert(s, totals);
        }
        let ledger: (i64, f64) = db
            .query_row(
                "SELECT COALESCE(SUM(input+output+cache_read+cache_creation),0), COALESCE(SUM(usd),0)
                 FROM usage WHERE run_id = ?1 AND step = ?2",
                rusqlite::params![run, step],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let usage = acc.usage();
        out.push(StepCheck {
            step,
            ledger: (ledger.0 as u64, ledger.1),
            log: (usage.total_tokens(), usage.cost_usd),
        });
    }
    out
}

/// Runs `orch run --simulate --quiet --state-dir state` in the background until `count` (one
/// number from its ledger) reaches `at_least`, then SIGKILLs it; the ledger's path.
fn killed_once(t: &Test, count: &str, at_least: i64, within: Duration) -> PathBuf {
    let mut orch = t
        .with_args(&["run", "--simulate", "--quiet", "--state-dir", "state"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db_path = t.path().join("state/ledger.sqlite");
    let counted = || {
        Connection::open(&db_path)
            .and_then(|db| db.query_row(count, [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
    };
    wait_until(&format!("{count} >= {at_least}"), within, || {
        counted() >= at_least
    });
    orch.kill().unwrap();
    orch.wait().unwrap();
    db_path
}

fn only_run(db: &Path) -> String {
    let db = Connection::open(db).unwrap();
    db.query_row("SELECT id FROM runs", [], |r| r.get(0))
        .unwrap()
}

fn run_status(db: &Path, run: &str) -> String {
    let db = Connection::open(db).unwrap();
    db.query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0))
        .unwrap()
}

/// Several reconcilers (`orch ledger` processes started together) find the same dead run; the
/// claim lets exactly one add what its logs hold, so every step's ledger sum equals its log's.
#[test]
fn concurrent_reconcilers_add_a_dead_run_exactly_once() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.a]\nprompt = \"one\"\nenv = { ORCH_SIM_TURNS = \"300\", ORCH_SIM_DELAY_MS = \"0\" }\n\
        [jobs.b]\ncommand = \"/two x\"\npre_commands = [\"/clear\"]\nenv = { ORCH_SIM_TURNS = \"300\", ORCH_SIM_DELAY_MS = \"0\" }\n";
    let t = sim_test(manifest)
        .allow_dead_run("the finished run is turned into a dead one for the reconcilers");
    let out = t
        .with_args(&["run", "--simulate", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Make the finished run a dead one whose final figures reached the logs but not the ledger:
    // its orch's start time no longer matches (as after a SIGKILL and pid reuse), and only the
    // live estimates are left.
    let db_path = t.path().join(".orch/ledger.sqlite");
    let run = only_run(&db_path);
    {
        let db = Connection::open(&db_path).unwrap();
        db.execute_batch(
            "UPDATE runs SET status = 'running', finished_at = NULL, pid_start = pid_start + 1;
             DELETE FROM usage WHERE kind != 'estimate';
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }
    assert!(
        check_steps(&db_path, &run, t.path())
            .iter()
            .any(|s| !s.matches()),
        "the crafted dead run must miss usage"
    );
    let pristine = std::fs::read(&db_path).unwrap();
    let trials = 12;
    let reconcilers = 4;
    let mut over = Vec::new();
    for trial in 0..trials {
        let state = t.path().join(format!("trial-{trial}"));
        std::fs::create_dir_all(&state).unwrap();
        let db = state.join("ledger.sqlite");
        std::fs::write(&db, &pristine).unwrap();
        let children: Vec<_> = (0..reconcilers)
            .map(|_| {
                t.with_args(&["ledger", "--format", "json", "--state-dir"])
                    .arg(&state)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(run_status(&db, &run), "dead", "trial {trial}");
        let checks = check_steps(&db, &run, t.path());
        if checks.iter().any(|s| !s.matches()) {
            over.push((trial, checks));
        }
    }
    let worst = over
        .iter()
        .flat_map(|(_, checks)| checks)
        .filter(|c| c.log.1 > 0.0)
        .map(|c| 100.0 * (c.ledger.1 - c.log.1) / c.log.1)
        .fold(0.0f64, f64::max);
    eprintln!(
        "{} of {trials} trials with {reconcilers} concurrent reconcilers miscounted, worst step +{worst:.0} % in dollars",
        over.len()
    );
    assert!(over.is_empty(), "miscounted: {over:#?}");
    // The crafted ledger itself is reconciled too, so the post-test check (ledger == results)
    // holds for it as well.
    let out = t
        .with_args(&["ledger", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A run with a relative `--state-dir`, killed with SIGKILL mid-run, is reconciled by the next
/// orch started from another folder with the state folder's absolute path: the ledger stores
/// absolute paths, so the logs are found.
#[test]
fn a_relative_state_dir_is_reconciled_from_another_folder() {
    let manifest = "[settings]\nstartup_delay = \"0s\"\n\
        [jobs.a]\nprompt = \"one\"\nenv = { ORCH_SIM_TURNS = \"100000\", ORCH_SIM_DELAY_MS = \"2\" }\n";
    let t = sim_test(manifest).allow_dead_run("orch is SIGKILLed mid-run, on purpose");
    let db_path = killed_once(&t, "SELECT COUNT(*) FROM usage", 5, Duration::from_secs(30));
    let run = only_run(&db_path);
    // What reached the log but not the ledger (here: everything) must come back from the log.
    Connection::open(&db_path)
        .unwrap()
        .execute("DELETE FROM usage", [])
        .unwrap();
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = Command::new(orch_bin())
        .current_dir(&elsewhere)
        .env("HOME", t.path().join("home"))
        .args(["ledger", "--format", "json", "--state-dir"])
        .arg(t.path().join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run_status(&db_path, &run), "dead");
    let checks = check_steps(&db_path, &run, t.path());
    assert!(!checks.is_empty());
    for check in &checks {
        assert!(check.log.0 > 0, "{check:?}");
        assert!(check.matches(), "usage not reconciled: {check:?}");
    }
    let db = Connection::open(&db_path).unwrap();
    let (run_dir, log): (String, String) = db
        .query_row(
            "SELECT r.run_dir, s.log FROM runs r JOIN steps s ON s.run_id = r.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(Path::new(&run_dir).is_absolute(), "{run_dir}");
    assert!(Path::new(&log).is_absolute(), "{log}");
}

/// The four jobs of a run whose logs could not be written: each completed, with the tokens and
/// dollars its simulated agent counted itself, and its lost log bytes reported in the results and
/// the summary. Returns the faults and the steps' pids.
fn check_jobs(
    t: &Test,
    results: &serde_json::Value,
    stdout: &str,
) -> (Vec<serde_json::Value>, Vec<u32>) {
    let faults = results["faults"].as_array().unwrap().clone();
    let mut pids = Vec::new();
    for job in ["a", "b", "c", "d"] {
        let instance = &results["instances"][job];
        assert_eq!(instance["status"], "completed", "{job}");
        let step = &instance["steps"][0];
        pids.push(step["pid"].as_u64().unwrap() as u32);
        // What the simulated agent itself counted (its session file, outside the full disk).
        let session = step["usage"]["session_id"].as_str().unwrap();
        let own: serde_json::Value = serde_json::from_slice(
            &std::fs::read(t.path().join("sim").join(format!("{session}.json"))).unwrap(),
        )
        .unwrap();
        let own_tokens: u64 = own["models"]
            .as_object()
            .unwrap()
            .values()
            .map(|m| {
                let t = &m["tokens"];
                ["input", "output", "cache_read", "cache_creation"]
                    .iter()
                    .map(|k| t[k].as_u64().unwrap())
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(instance["total_tokens"].as_u64(), Some(own_tokens), "{job}");
        let cost = instance["total_cost_usd"].as_f64().unwrap();
        assert!(
            (cost - own["cost_usd"].as_f64().unwrap()).abs() < 1e-9,
            "{job}: {cost} vs {own}"
        );
        assert_eq!(instance["cost_is_estimate"], false, "{job}");
        let lost: u64 = faults
            .iter()
            .filter(|f| f["kind"] == "log" && f["step"] == job)
            .map(|f| f["bytes_lost"].as_u64().unwrap())
            .sum();
        assert!(lost > 0, "{job}'s lost log bytes are reported: {faults:?}");
        assert!(
            stdout.contains(&format!("log of `{job}` (stdout): ")),
            "{stdout}"
        );
    }
    (faults, pids)
}

/// A small tmpfs as the state folder of one orch invocation. As root it is mounted here and
/// unmounted when dropped (the test failing included). Otherwise orch runs in a user and mount
/// namespace of its own (`unshare --user --map-root-user --mount`, util-linux), where an
/// unprivileged user may mount a tmpfs; it vanishes with orch, so the test reads only what lies
/// outside it. A machine that allows neither fails the test, saying so; it never passes without
/// having filled a disk.
struct Tmpfs {
    dir: std::path::PathBuf,
    size: &'static str,
    mounted: bool,
}

impl Tmpfs {
    /// A tmpfs of `size` (mount's syntax: `200k`) at `dir`.
    fn new(dir: &Path, size: &'static str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let mut disk = Tmpfs {
            dir: dir.to_path_buf(),
            size,
            mounted: false,
        };
        if nix::unistd::geteuid().is_root() {
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            disk.mounted = true;
        }
        disk
    }

    /// `orch` as `cmd` would run it, on the full disk: unchanged as root, else inside its own
    /// user and mount namespace that mounts the tmpfs first.
    fn around(&self, cmd: Command) -> Command {
        if self.mounted {
            return cmd;
        }
        let mut wrapped = Command::new("unshare");
        wrapped
            .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o "size=$1" tmpfs "$2" || exit 97; shift 2; exec "$@""#)
            .arg("sh")
            .arg(self.size)
            .arg(&self.dir)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .env_clear();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a process still holding a file there must not keep the mount alive.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Four simulated agents write far more than a 200 KB state folder holds. The run still ends
/// with a summary and a results file (written elsewhere, its path printed), exits with its
/// steps' outcome (0: all completed, never 2), reports every step's spend exactly as the agents
/// reported it, says how many log bytes were lost, and leaves no process behind.
#[test]
fn a_full_disk_loses_no_spend_and_says_what_it_lost() {
    let jobs: String = ["a", "b", "c", "d"]
        .iter()
        .map(|j| {
            format!("[jobs.{j}]\nprompt = \"work {j}\"\nenv = {{ ORCH_SIM_STREAM_MB = \"1\" }}\n")
        })
        .collect();
    let t = sim_test(&format!("[settings]\nstartup_delay = \"0s\"\n{jobs}"));
    let state = t.path().join("state");
    let disk = Tmpfs::new(&state, "200k");
    let mut orch = t.with_args(&["run", "--simulate", "--no-progress", "--state-dir"]);
    orch.arg(&state)
        // Where the results file falls back to: the test's own folder, on another file system.
        .env("TMPDIR", t.path().join("tmp"))
        .arg("--events")
        .arg(t.path().join("events.ndjson"));
    let out = disk.around(orch).output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(97),
        "no tmpfs: this test needs root or unprivileged user namespaces: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 completed, 0 failed"), "{stdout}");
    assert!(
        stdout.contains("cannot write the results file"),
        "the fault is reported as it happens: {stdout}"
    );
    // The summary's last lines say where the results went.
    let results_path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .unwrap_or_else(|| panic!("no results line: {stdout}"))
        .trim()
        .to_string();
    let results_path = t.path().join(results_path);
    assert!(
        !results_path.starts_with(&state),
        "the results cannot be on the full disk: {}",
        results_path.display()
    );
    assert!(
        results_path.starts_with(t.path().join("tmp")),
        "{}",
        results_path.display()
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&results_path).unwrap()).unwrap();
    let (faults, pids) = check_jobs(&t, &results, &stdout);
    assert!(
        faults.iter().any(|f| f["kind"] == "results"
            && f["written_to"].as_str() == Some(results_path.to_str().unwrap())),
        "{faults:?}"
    );
    assert!(
        stdout.contains("not written (No space left on device"),
        "{stdout}"
    );
    // The same faults reached the event stream as they happened.
    let events = std::fs::read_to_string(t.path().join("events.ndjson")).unwrap();
    let kinds: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| {
            e["event"] == "log_write_failed" || e["event"] == "results_write_failed"
        })
        .collect();
    assert!(
        kinds
            .iter()
            .any(|e| e["event"] == "log_write_failed" && e["bytes_lost"].as_u64() > Some(0)),
        "{events}"
    );
    assert!(
        kinds.iter().any(|e| e["event"] == "results_write_failed"
            && e["written_to"].as_str() == Some(results_path.to_str().unwrap())),
        "{events}"
    );
    super::harness::assert_no_survivors(&pids);
}

/// The same faults from a file-size limit (RLIMIT_FSIZE, set on orch alone, inherited by its
/// agents, which write little): writes fail with EFBIG instead of SIGXFSZ killing orch, and the
/// run ends as the full disk's does. Needs no root.
#[test]
fn a_file_size_limit_is_a_reported_fault_not_a_crash() {
    use std::os::unix::process::CommandExt;
    let jobs: String = ["a", "b", "c", "d"]
        .iter()
        .map(|j| {
            format!("[jobs.{j}]\nprompt = \"work {j}\"\nenv = {{ ORCH_SIM_STREAM_MB = \"1\" }}\n")
        })
        .collect();
    let t = sim_test(&format!("[settings]\nstartup_delay = \"0s\"\n{jobs}"));
    let mut cmd = t.with_args(&["run", "--simulate", "--no-progress"]);
    // SAFETY: setrlimit is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // Below each step's 1 MB log, above what the ledger (and its WAL) and the results
            // file need: at 300 KB a busy WAL sometimes crossed it too, and the run's end could
            // not land.
            let limit = 800_000;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, limit, limit)
                .map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 completed, 0 failed"), "{stdout}");
    assert!(stdout.contains("cannot write its stdout log"), "{stdout}");
    let results_path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .unwrap_or_else(|| panic!("no results line: {stdout}"))
        .trim()
        .to_string();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join(results_path)).unwrap()).unwrap();
    let (_, pids) = check_jobs(&t, &results, &stdout);
    assert!(stdout.contains("not written (File too large"), "{stdout}");
    super::harness::assert_no_survivors(&pids);
}

/// Group commit loses no recorded spend: eight agents streaming fast, orch SIGKILLed while their
/// estimates wait in the writer's group window (up to 100 ms of them never reach the ledger);
/// the next orch re-reads the logs and every step's ledger sum equals what its log holds.
#[test]
fn sigkill_inside_the_group_window_loses_no_spend() {
    let mut manifest = String::from("[settings]\nstartup_delay = \"0s\"\n");
    for i in 0..8 {
        manifest.push_str(&format!(
            "[jobs.a{i}]\nprompt = \"p\"\nenv = {{ ORCH_SIM_TURNS = \"100000\", ORCH_SIM_DELAY_MS = \"1\" }}\n"
        ));
    }
    let t = sim_test(&manifest).allow_dead_run("orch is SIGKILLed mid-run, on purpose");
    // Estimates of all 8 steps.
    let db_path = killed_once(
        &t,
        "SELECT COUNT(DISTINCT step) FROM usage WHERE kind = 'estimate'",
        8,
        Duration::from_secs(60),
    );
    let run = only_run(&db_path);
    let behind = check_steps(&db_path, &run, t.path())
        .iter()
        .filter(|c| !c.matches())
        .count();
    eprintln!("steps whose log was ahead of the ledger at the kill: {behind} of 8");
    let out = t
        .with_args(&["ledger", "--format", "json", "--state-dir", "state"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run_status(&db_path, &run), "dead");
    let checks = check_steps(&db_path, &run, t.path());
    assert_eq!(checks.len(), 8);
    for check in &checks {
        assert!(check.log.0 > 0, "{check:?}");
        assert!(check.matches(), "spend lost at the kill: {check:?}");
    }
}
