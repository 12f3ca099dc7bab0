//! Run history in the CLI: `orch runs` (filters, JSON, 80 columns), `orch show` (finished and
//! live, `latest`, prefixes, an ambiguous prefix), `orch logs` (rendered, `--raw`, `--stderr`,
//! escapes neutralised) and `-f` following a step of a run another orch process runs.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::harness::{Test, wait_until};

const OK: &str = r#"
[settings]
startup_delay = "0s"
[jobs.hello]
shell = '''printf 'hi \033]0;pwned\007\033[2Jthere\n'; echo oops >&2'''
"#;

const BAD: &str = r#"
[settings]
startup_delay = "0s"
[jobs.broken]
shell = "exit 3"
"#;

fn orch(t: &Test, args: &[&str]) -> (i32, String, String) {
    let out = t.with_args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A folder with a completed run of ok.toml, then a failed run of bad.toml (one state folder).
fn two_runs() -> Test {
    let t = Test::new().file("ok.toml", OK).file("bad.toml", BAD);
    let ok = t
        .with_args(&["run", "--quiet", "ok.toml"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = t
        .with_args(&["run", "--quiet", "bad.toml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    t
}

#[test]
fn runs_are_listed_in_80_columns_filtered_by_status_and_as_json() {
    let t = two_runs();
    let (code, table, err) = orch(&t, &["runs", "--state-dir", ".orch"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains("failed") && lines[1].contains("0/1 ✘1"),
        "{table}"
    );
    assert!(
        lines[2].contains("completed") && lines[2].contains("1/1"),
        "{table}"
    );
    for l in &lines {
        assert!(l.chars().count() <= 80, "wider than 80 columns: {l:?}");
    }
    let (_, failed, _) = orch(&t, &["runs", "--status", "failed", "--state-dir", ".orch"]);
    assert_eq!(failed.lines().count(), 2, "{failed}");
    let (_, json, _) = orch(
        &t,
        &[
            "runs",
            "--format",
            "json",
            "--limit",
            "1",
            "--state-dir",
            ".orch",
        ],
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["total"], 2);
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["runs"][0]["status"], "failed");
    assert_eq!(v["runs"][0]["steps"]["failed"], 1);
    let (_, none, _) = orch(
        &t,
        &[
            "runs",
            "--since",
            "1m",
            "--status",
            "dead",
            "--state-dir",
            ".orch",
        ],
    );
    assert_eq!(none, "no runs\n");
    let (code, _, err) = orch(&t, &["runs", "--since", "soon", "--state-dir", ".orch"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
}

#[test]
fn show_takes_latest_an_id_prefix_and_names_the_candidates_of_an_ambiguous_one() {
    let t = two_runs();
    let (_, json, _) = orch(&t, &["runs", "--format", "json", "--state-dir", ".orch"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let first = v["runs"][1]["id"].as_str().unwrap().to_string();
    let (code, latest, err) = orch(&t, &["show", "latest", "--state-dir", ".orch"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        latest.contains("broken") && latest.contains("failed"),
        "{latest}"
    );
    assert!(latest.contains("results: "), "{latest}");
    let random = first.rsplit_once('-').unwrap().1;
    let (code, shown, err) = orch(&t, &["show", &random[..6], "--state-dir", ".orch"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains(&first) && shown.contains("hello"), "{shown}");
    let (_, by_start, _) = orch(&t, &["show", &first[..22], "--state-dir", ".orch"]);
    assert!(by_start.contains(&first), "{by_start}");
    let (code, _, err) = orch(&t, &["show", "2", "--state-dir", ".orch"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("ambiguous_run") && err.contains(&first),
        "{err}"
    );
    let (code, _, err) = orch(&t, &["show", "nope", "--state-dir", ".orch"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no run \"nope\"") && err.contains(&first),
        "{err}"
    );
    let (_, j, _) = orch(
        &t,
        &["show", &first, "--format", "json", "--state-dir", ".orch"],
    );
    let s: Value = serde_json::from_str(&j).unwrap();
    assert_eq!(
        (s["source"].as_str(), s["live"].as_bool()),
        (Some("results"), Some(false))
    );
}

#[test]
fn logs_are_rendered_with_escapes_neutralised_raw_as_bytes_and_stderr_on_asking() {
    let t = two_runs();
    let (_, json, _) = orch(&t, &["runs", "--format", "json", "--state-dir", ".orch"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let first = v["runs"][1]["id"].as_str().unwrap().to_string();
    let (code, shown, err) = orch(&t, &["logs", &first, "hello", "--state-dir", ".orch"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("hi ") && shown.contains("there"),
        "{shown:?}"
    );
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    let raw = t
        .with_args(&["logs", &first, "hello", "--raw", "--state-dir", ".orch"])
        .output()
        .unwrap();
    assert_eq!(
        raw.stdout, b"hi \x1b]0;pwned\x07\x1b[2Jthere\n",
        "piped --raw is the bytes"
    );
    let (_, stderr, _) = orch(&t, &["logs", &first, "--stderr", "--state-dir", ".orch"]);
    assert_eq!(stderr, "oops\n");
    let (code, _, err) = orch(&t, &["logs", &first, "nosuch", "--state-dir", ".orch"]);
    assert_eq!(code, 2);
    assert!(err.contains("its steps: hello"), "{err}");
}

/// Log files are created at a stream's first byte: a step that wrote nothing has none, its
/// results still name where they would be, and `orch logs` shows them empty.
#[test]
fn a_step_that_wrote_nothing_has_no_log_files_and_its_logs_read_as_empty() {
    let t = two_runs();
    let (_, json, _) = orch(&t, &["runs", "--format", "json", "--state-dir", ".orch"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let quiet = v["runs"][0]["id"].as_str().unwrap().to_string();
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(t.path().join(format!(".orch/runs/{quiet}/results.json")))
            .unwrap(),
    )
    .unwrap();
    let step = &results["instances"]["broken"]["steps"][0];
    for field in ["log", "stderr_log"] {
        let path = step[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {step}"));
        assert!(path.ends_with(".log"), "{field}: {path}");
        assert!(!std::path::Path::new(path).exists(), "{field}: {path}");
    }
    for args in [
        &["logs", "latest", "broken"][..],
        &["logs", "latest", "broken", "--stderr"],
    ] {
        let (code, shown, err) = orch(&t, &[args, &["--state-dir", ".orch"][..]].concat());
        assert_eq!((code, shown.as_str()), (0, ""), "{args:?}: {err}");
    }
}

/// The simulated agent keeps its step running until the file `go` appears.
const WAITING: &str = r#"
[settings]
startup_delay = "0s"
[jobs.agent]
prompt = "say hi"
"#;

#[test]
fn a_running_step_of_another_orch_is_shown_live_and_followed_to_its_end() {
    let t = Test::new().file("orch.toml", WAITING);
    let go = t.path().join("go");
    let mut run = t
        .with_args(&["run", "--simulate", "--quiet"])
        .env("ORCH_SIM_WAIT_FOR", &go)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The step is running once its log has its first line.
    let runs = t.path().join(".orch/runs");
    wait_until("the step's first log line", Duration::from_secs(20), || {
        std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                std::fs::read_to_string(d.path().join("logs/001-agent.log"))
                    .is_ok_and(|l| l.contains("\"init\""))
            })
    });
    let (code, live, err) = orch(&t, &["show", "latest"]);
    assert_eq!(code, 0, "{err}");
    assert!(live.contains("live:") && live.contains("running"), "{live}");
    let mut follow = t
        .with_args(&["logs", "latest", "agent", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("· session"), "{first}");
    // The follower is still waiting: the step has not ended.
    assert!(follow.try_wait().unwrap().is_none());
    std::fs::write(&go, "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(follow.wait().unwrap().success());
    assert!(
        rest.iter().any(|l| l.starts_with("= result success")),
        "{rest:?}"
    );
    assert!(run.wait().unwrap().success());
    let (_, ended, _) = orch(&t, &["show", "latest", "--format", "json"]);
    let s: Value = serde_json::from_str(&ended).unwrap();
    assert_eq!(s["steps"][0]["status"], "completed");
}

/// A step that fails its first attempt once the file `go` appears, and passes its second.
const FLAKY: &str = r#"
[settings]
startup_delay = "0s"
[jobs.flaky]
shell = "echo attempt; if [ -f passed-once ]; then echo ok; exit 0; fi; touch passed-once; while [ ! -f go ]; do sleep 0.01; done; echo fail; exit 1"
retry = { attempts = 2, backoff = "100ms", jitter = false }
"#;

#[test]
fn following_a_retried_step_shows_each_attempts_log_in_turn() {
    let t = Test::new().file("orch.toml", FLAKY);
    let mut run = t
        .with_args(&["run", "--quiet"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let runs = t.path().join(".orch/runs");
    wait_until(
        "the first attempt's first line",
        Duration::from_secs(20),
        || {
            std::fs::read_dir(&runs)
                .into_iter()
                .flatten()
                .flatten()
                .any(|d| {
                    std::fs::read_to_string(d.path().join("logs/001-flaky.log"))
                        .is_ok_and(|l| !l.is_empty())
                })
        },
    );
    let mut follow = t
        .with_args(&["logs", "latest", "flaky", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "attempt");
    std::fs::write(t.path().join("go"), "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(follow.wait().unwrap().success());
    assert!(run.wait().unwrap().success());
    assert_eq!(rest.len(), 4, "{rest:?}");
    assert_eq!(rest[0], "fail");
    assert!(
        rest[1].starts_with("── attempt 2: ") && rest[1].ends_with("logs/001-flaky.a2.log"),
        "{rest:?}"
    );
    assert_eq!(rest[2..], ["attempt", "ok"]);
}
