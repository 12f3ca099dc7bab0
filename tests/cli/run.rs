//! `orch run` end to end: the real binary, real child processes, the simulated agent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{Test, assert_no_survivors, pid_alive, root, wait_until};

/// Reads the results file of the only run in the test's state folder.
fn results(t: &Test) -> Value {
    let runs = t.path().join(".orch/runs");
    let mut dirs: Vec<_> = std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one run: {dirs:?}");
    let path = dirs.pop().unwrap().join("results.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn steps(v: &Value, job: &str) -> Vec<Value> {
    v["instances"][job]["steps"].as_array().unwrap().clone()
}

fn status(v: &Value, job: &str) -> String {
    v["instances"][job]["status"].as_str().unwrap().to_string()
}

/// orch running in the background, its stdout lines arriving on a channel.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) lines: mpsc::Receiver<String>,
    pub(super) seen: Vec<String>,
}

impl Running {
    pub(super) fn start(t: &Test) -> Running {
        let mut child = t
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    pub(super) fn expect(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The pids of the steps started so far.
    pub(super) fn pids(&mut self) -> Vec<u32> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen
            .iter()
            .filter_map(|l| l.split("(pid ").nth(1))
            .filter_map(|p| p.trim_end_matches(')').parse().ok())
            .collect()
    }

    pub(super) fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub(super) fn wait(mut self) -> (i32, Vec<String>) {
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < end, "orch did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen)
    }
}

#[test]
fn stagger_and_max_parallel_are_honoured() {
    let manifest = r#"
        [settings]
        startup_delay = "300ms"
        max_parallel = 2
        [jobs.a]
        run = ["sleep", "0.8"]
        [jobs.b]
        run = ["sleep", "0.8"]
        [jobs.c]
        run = ["sleep", "0.8"]
        [jobs.d]
        run = ["sleep", "0.8"]
    "#;
    let t = Test::new().file("orch.toml", manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let parse = |s: &Value| chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap();
    let mut spans: Vec<(
        chrono::DateTime<chrono::FixedOffset>,
        chrono::DateTime<chrono::FixedOffset>,
    )> = ["a", "b", "c", "d"]
        .iter()
        .map(|j| {
            let s = &steps(&v, j)[0];
            (parse(&s["started"]), parse(&s["finished"]))
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        let gap = (w[1].0 - w[0].0).num_milliseconds();
        assert!(gap >= 290, "launches {gap} ms apart, stagger is 300 ms");
    }
    // Never more than two at once: a third launch waits for a finish.
    for (i, (start, _)) in spans.iter().enumerate() {
        let overlapping = spans[..i].iter().filter(|(_, end)| end > start).count();
        assert!(
            overlapping < 2,
            "{overlapping} running when step {i} started"
        );
    }
}

#[test]
fn a_failure_skips_its_dependents_and_says_so() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [jobs.broken]
        shell = "echo about to fail >&2; exit 3"
        [jobs.after]
        run = ["true"]
        needs = ["broken"]
        [jobs.later]
        run = ["true"]
        needs = ["after"]
        [jobs.independent]
        run = ["true"]
    "#;
    let t = Test::new().file("orch.toml", manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("✘ broken failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("↷ after skipped: `broken` failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("↷ later skipped: `after` skipped"),
        "{}",
        out.stdout
    );
    let v = results(&t);
    assert_eq!(status(&v, "broken"), "failed");
    assert_eq!(status(&v, "after"), "skipped");
    assert_eq!(status(&v, "later"), "skipped");
    assert_eq!(status(&v, "independent"), "completed");
    assert_eq!(v["completed"], 1);
    assert_eq!(v["failed"], 1);
    let broken = &steps(&v, "broken")[0];
    assert_eq!(broken["exit_code"], 3);
    assert_eq!(broken["output_tail"][0], "about to fail");
    let log = broken["stderr_log"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(log).unwrap(), "about to fail\n");
}

#[test]
fn fail_fast_cancels_the_rest() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        fail_fast = true
        [jobs.slow]
        run = ["sleep", "30"]
        [jobs.broken]
        shell = "sleep 0.3; exit 1"
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run"])
        .env("ORCH_GRACE_INT", "2s");
    let out = t.run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = results(&t);
    assert_eq!(status(&v, "broken"), "failed");
    assert_eq!(status(&v, "slow"), "cancelled");
    assert_no_survivors(&[steps(&v, "slow")[0]["pid"].as_u64().unwrap() as u32]);
}

#[test]
fn huge_lines_and_garbage_neither_hang_nor_crash_and_tokens_still_add_up() {
    let manifest = r#"
        [settings]
        startup_delay = "0s"
        [jobs.huge]
        prompt = "write a lot"
        env = { ORCH_SIM_HUGE_LINE_MB = "20", ORCH_SIM_DELAY_MS = "0" }
        [jobs.garbage]
        prompt = "write nonsense"
        env = { ORCH_SIM_GARBAGE = "1", ORCH_SIM_DELAY_MS = "0" }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run", "--simulate"]);
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap());
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    for job in ["huge", "garbage"] {
        let step = &steps(&v, job)[0];
        let log = std::fs::read(step["log"].as_str().unwrap()).unwrap();
        // The result line in the log is what Claude Code (here, the simulator) said it cost.
        let result = log
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .find(|l| l["type"] == "result")
            .expect("a result line");
        assert_eq!(
            step["usage"]["cost_usd"].as_f64(),
            result["total_cost_usd"].as_f64(),
            "{job}"
        );
        assert_eq!(step["usage"]["is_estimate"], false);
        if job == "huge" {
            assert!(log.len() > 20_000_000, "the log keeps the whole 20 MB line");
        }
    }
}

#[test]
fn a_timeout_stops_the_step_with_the_ladder() {
    let manifest = r#"
        [jobs.forever]
        run = ["sleep", "1000"]
        timeout = "500ms"
    "#;
    let t = Test::new().file("orch.toml", manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = results(&t);
    assert_eq!(status(&v, "forever"), "timed_out");
    let step = &steps(&v, "forever")[0];
    assert!(
        step["reason"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 500ms")
    );
    assert_no_survivors(&[step["pid"].as_u64().unwrap() as u32]);
}

#[test]
fn a_grandchild_holding_the_pipe_is_reported_and_killed() {
    let manifest = r#"
        [jobs.leaky]
        prompt = "leave something behind"
        env = { ORCH_SIM_GRANDCHILD = "1" }
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run", "--simulate"]);
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap());
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let step = &steps(&v, "leaky")[0];
    let leaked: Vec<u32> = step["leaked_pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    assert!(!leaked.is_empty(), "the sleeping grandchild is reported");
    assert!(
        out.stdout.contains("killed leftover processes"),
        "{}",
        out.stdout
    );
    for pid in leaked {
        wait_until("the grandchild to die", Duration::from_secs(5), || {
            !pid_alive(pid)
        });
    }
    assert_no_survivors(&[step["pid"].as_u64().unwrap() as u32]);
}

const LONG_RUN: &str = r#"
    [settings]
    startup_delay = "0s"
    [jobs.agent]
    prompt = "hang"
    env = { ORCH_SIM_HANG = "1" }
    [jobs.stubborn]
    shell = "trap '' INT TERM; echo ready; while :; do sleep 0.05; done"
    [jobs.plain]
    run = ["sleep", "1000"]
    [jobs.later]
    run = ["true"]
    needs = ["plain"]
"#;

fn start_long_run(t: &Test) -> (Running, Vec<u32>) {
    let mut r = Running::start(t);
    r.expect("agent started");
    r.expect("stubborn started");
    // Signal only once its traps are set: before that, a shell dies of the first signal.
    r.expect("stubborn: ready");
    r.expect("plain started");
    let pids = r.pids();
    assert_eq!(pids.len(), 3);
    // Signal only once the agent is up (its init line is logged), as a person would.
    wait_until("the agent's init line", Duration::from_secs(10), || {
        let runs = t.path().join(".orch/runs");
        std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|run| {
                std::fs::read_to_string(run.path().join("logs/001-agent.log"))
                    .is_ok_and(|log| log.contains("\"init\""))
            })
    });
    (r, pids)
}

fn long_run_test() -> Test {
    let t = Test::new()
        .file("orch.toml", LONG_RUN)
        .args(&["run", "--simulate"])
        .env("ORCH_GRACE_INT", "1s")
        .env("ORCH_GRACE_TERM", "500ms");
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
}

#[test]
fn sigint_stops_every_step_writes_results_and_leaves_no_process() {
    let t = long_run_test();
    let (r, pids) = start_long_run(&t);
    r.signal("INT");
    let (code, lines) = r.wait();
    assert_eq!(code, 130, "{}", lines.join("\n"));
    assert_no_survivors(&pids);
    let v = results(&t);
    for job in ["agent", "stubborn", "plain", "later"] {
        assert_eq!(status(&v, job), "cancelled", "{job}");
    }
    assert_eq!(v["metadata"]["interrupted"], true);
    // SIGINT first: the simulated agent (like Claude Code) writes its result with the cost.
    let agent = &steps(&v, "agent")[0];
    assert_eq!(agent["usage"]["is_estimate"], false, "{agent}");
}

#[test]
fn sigterm_does_the_same() {
    let t = long_run_test();
    let (r, pids) = start_long_run(&t);
    r.signal("TERM");
    let (code, _) = r.wait();
    assert_eq!(code, 130);
    assert_no_survivors(&pids);
    let v = results(&t);
    assert_eq!(status(&v, "stubborn"), "cancelled");
    assert!(
        steps(&v, "stubborn")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "the stubborn step needed SIGKILL"
    );
}

#[test]
fn a_second_interrupt_kills_at_once() {
    let t = Test::new()
        .file("orch.toml", LONG_RUN)
        .args(&["run", "--simulate"])
        .env("ORCH_GRACE_INT", "60s")
        .env("ORCH_GRACE_TERM", "60s");
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap());
    let (mut r, pids) = start_long_run(&t);
    r.signal("INT");
    r.expect("interrupted: stopping every step");
    r.signal("INT");
    let started = Instant::now();
    let (code, _) = r.wait();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "did not wait for the 60 s grace"
    );
    assert_eq!(code, 130);
    assert_no_survivors(&pids);
    assert_eq!(status(&results(&t), "stubborn"), "cancelled");
}

#[test]
fn sigkill_to_orch_leaves_no_process() {
    let t = long_run_test();
    let (mut r, pids) = start_long_run(&t);
    r.child.kill().unwrap();
    let _ = r.child.wait();
    assert_no_survivors(&pids);
}

#[test]
fn fixture_transcripts_are_charged_what_the_cli_reported() {
    let fixtures = root().join("tests/fixtures/claude-code-2.1.331");
    for (name, exit, status_want) in [
        ("text-only", 0, "completed"),
        ("tool-use-two-blocks-one-message", 0, "completed"),
        ("error-max-turns", 1, "failed"),
        ("error-max-budget-usd", 1, "failed"),
        ("api-error-529-after-retries", 1, "failed"),
        ("killed-by-sigterm-no-result", 143, "failed"),
    ] {
        let fixture = fixtures.join(format!("{name}.jsonl"));
        let text = std::fs::read_to_string(&fixture).unwrap();
        let result: Option<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["type"] == "result");
        // A stand-in `claude` that replays the transcript and exits as the real CLI did.
        let script = format!("#!/bin/sh\ncat '{}'\nexit {exit}\n", fixture.display());
        let t = Test::new()
            .file("claude", &script)
            .file("orch.toml", "[jobs.replay]\nprompt = \"list the files\"\n");
        let claude = t.path().join("claude");
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&claude)
            .status()
            .unwrap();
        let t = t.args(&["run", "--claude-path", claude.to_str().unwrap()]);
        let out = t.run();
        let v = results(&t);
        assert_eq!(status(&v, "replay"), status_want, "{name}: {}", out.stdout);
        let inst = &v["instances"]["replay"];
        match result {
            Some(r) => {
                assert_eq!(
                    inst["total_cost_usd"].as_f64(),
                    r["total_cost_usd"].as_f64(),
                    "{name}"
                );
                assert_eq!(inst["cost_is_estimate"], false, "{name}");
                let usage: u64 = r["modelUsage"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|m| {
                        [
                            "inputTokens",
                            "outputTokens",
                            "cacheReadInputTokens",
                            "cacheCreationInputTokens",
                        ]
                        .iter()
                        .map(|k| m[k].as_u64().unwrap())
                        .sum::<u64>()
                    })
                    .sum();
                assert_eq!(inst["total_tokens"], usage, "{name}");
            }
            None => assert_eq!(inst["cost_is_estimate"], true, "{name}"),
        }
    }
}

#[test]
fn a_resumed_chain_is_charged_its_true_cost() {
    let manifest = r#"
        [jobs.chain]
        command = "/createtestsv2 unit"
        pre_commands = ["/clear", "/compact"]
    "#;
    let t = Test::new()
        .file("orch.toml", manifest)
        .args(&["run", "--simulate"]);
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap());
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = results(&t);
    let steps = steps(&v, "chain");
    assert_eq!(steps.len(), 3);
    let mut charged = 0.0;
    for step in &steps {
        let log = std::fs::read_to_string(step["log"].as_str().unwrap()).unwrap();
        let cumulative = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["type"] == "result")
            .unwrap()["total_cost_usd"]
            .as_f64()
            .unwrap();
        charged += step["usage"]["cost_usd"].as_f64().unwrap();
        // Each step's own charge plus the earlier ones make the session's cumulative total.
        assert!(
            (charged - cumulative).abs() < 1e-9,
            "{charged} vs {cumulative}"
        );
    }
    let total = v["instances"]["chain"]["total_cost_usd"].as_f64().unwrap();
    assert!((total - charged).abs() < 1e-9);
    assert!(
        steps[2]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--resume")
    );
}

#[test]
fn claude_missing_is_a_setup_error_before_anything_runs() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[jobs.first]\nrun = [\"touch\", \"ran\"]\n[jobs.agent]\nprompt = \"hi\"\n",
        )
        .args(&["run"])
        .env("PATH", "/usr/bin:/bin");
    let out = t.run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("orch::agent::not_found"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--simulate"), "{}", out.stderr);
    assert!(!t.path().join("ran").exists(), "nothing ran");
}

#[test]
fn output_flag_writes_the_results_there_too() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--output", "out/results.json", "--quiet"]);
    let out = t.run();
    assert_eq!(out.code, 0);
    assert!(!out.stdout.contains("started"), "--quiet: {}", out.stdout);
    let copy: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("out/results.json")).unwrap())
            .unwrap();
    assert_eq!(copy["total_instances"], 1);
    assert_eq!(copy["instances"]["a"]["status"], "completed");
    assert_eq!(copy, results(&t));
}

#[test]
fn a_rejected_rate_limit_pauses_agent_launches_until_it_resets() {
    // A stand-in `claude`: the first job is told it hit a rate limit that resets in 2 s.
    let script = r#"#!/bin/sh
for last; do :; done
if [ "$last" = "first" ]; then
  reset=$(( $(date +%s) + 2 ))
  echo "{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"rejected\",\"resetsAt\":$reset,\"rateLimitType\":\"five_hour\"}}"
fi
echo '{"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.001,"usage":{"input_tokens":1,"output_tokens":1},"modelUsage":{}}'
"#;
    let manifest = r#"
        [settings]
        startup_delay = "100ms"
        [jobs.first]
        prompt = "first"
        [jobs.second]
        prompt = "second"
        needs = ["first"]
        [jobs.lint]
        run = ["true"]
        needs = ["first"]
    "#;
    let t = Test::new()
        .file("claude", script)
        .file("orch.toml", manifest);
    let claude = t.path().join("claude");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&claude)
        .status()
        .unwrap();
    let t = t.args(&["run", "--claude-path", claude.to_str().unwrap()]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("no agent step starts before"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("agent steps start again"),
        "{}",
        out.stdout
    );
    let v = results(&t);
    let at = |job: &str| {
        chrono::DateTime::parse_from_rfc3339(steps(&v, job)[0]["started"].as_str().unwrap())
            .unwrap()
    };
    let first_done =
        chrono::DateTime::parse_from_rfc3339(steps(&v, "first")[0]["finished"].as_str().unwrap())
            .unwrap();
    // The process step went on; the agent step waited for the reset (1–2 s after the event).
    assert!(
        (at("lint") - first_done).num_milliseconds() < 900,
        "lint waited"
    );
    assert!(
        (at("second") - first_done).num_milliseconds() >= 900,
        "second did not wait"
    );
}

#[test]
fn a_timeout_reaches_a_step_that_closed_its_pipes() {
    let manifest = r#"
        [jobs.quiet]
        shell = "exec >/dev/null 2>&1; sleep 1000"
        timeout = "500ms"
    "#;
    let t = Test::new().file("orch.toml", manifest).args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = results(&t);
    assert_eq!(status(&v, "quiet"), "timed_out");
    assert_no_survivors(&[steps(&v, "quiet")[0]["pid"].as_u64().unwrap() as u32]);
}
