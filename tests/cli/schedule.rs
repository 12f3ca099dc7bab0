//! Scheduling end to end: a seconds-level cron service with the simulated agent (one results file
//! per fire, skipped fires when a run overlaps, SIGTERM between and during runs), `--start-at`
//! waits, and the book's scheduling chapter (manifests, forms, systemd unit) checked for real.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{Test, assert_no_survivors, root};
use super::run::Running;

/// The run folders in the test's state folder, oldest first (run ids start with their time).
fn runs(t: &Test) -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir(t.path().join(".orch/runs")) else {
        return Vec::new();
    };
    let mut runs: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
    runs.sort();
    runs
}

fn results(run: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(run.join("results.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Waits until `n` lines containing `needle` have arrived.
fn expect_n(r: &mut Running, needle: &str, n: usize) {
    let end = Instant::now() + Duration::from_secs(30);
    while r.seen.iter().filter(|l| l.contains(needle)).count() < n {
        let left = end.saturating_duration_since(Instant::now());
        match r.lines.recv_timeout(left) {
            Ok(line) => r.seen.push(line),
            Err(_) => panic!("no {n} lines with {needle:?}; saw:\n{}", r.seen.join("\n")),
        }
    }
}

const SERVICE: &str = r#"
[schedule]
cron = "*/2 * * * * *"

[settings]
startup_delay = "0s"

[jobs.review]
prompt = "review the diff"

[jobs.pause]
run = ["sleep", "2.5"]
"#;

#[test]
fn a_cron_service_runs_each_fire_skips_overlaps_and_stops_on_sigterm_between_runs() {
    let t = Test::new()
        .file("orch.toml", SERVICE)
        .env("ORCH_SIM_DELAY_MS", "5")
        .args(&["run", "--simulate"]);
    let mut r = Running::start(&t);
    r.expect("next run at");
    // Each run lasts about 2.5 s, so the fire time 2 s after each start finds it still going.
    expect_n(&mut r, "results: ", 3);
    // Between runs: the service is waiting for the next fire time, 1.5 s away.
    expect_n(&mut r, "next run at", 4);
    r.signal("TERM");
    let started = Instant::now();
    let (code, lines) = r.wait();
    assert!(started.elapsed() < Duration::from_secs(2), "exits at once");
    let text = lines.join("\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("SIGTERM: schedule stopped between runs after 3 runs"),
        "{text}"
    );
    let skipped = lines
        .iter()
        .filter(|l| l.contains("skipped: run") && l.contains("was still going"))
        .count();
    assert!(skipped >= 2, "{text}");
    let runs = runs(&t);
    assert_eq!(runs.len(), 3, "one run folder per fire: {runs:?}");
    for run in &runs {
        let v = results(run);
        assert_eq!(v["instances"]["review"]["status"], "completed", "{v}");
        assert_eq!(v["instances"]["pause"]["status"], "completed", "{v}");
        assert!(
            v["metadata"]["token_usage"]["total_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    // Each run has its own ledger entry.
    let out = t
        .with_args(&["ledger", "--format", "json", "--by", "run"])
        .output()
        .unwrap();
    let ledger = String::from_utf8_lossy(&out.stdout);
    for run in &runs {
        let id = run.file_name().unwrap().to_string_lossy().into_owned();
        assert!(ledger.contains(&id), "{id} not in the ledger: {ledger}");
    }
}

#[test]
fn sigterm_during_a_run_stops_that_run_and_the_service() {
    let t = Test::new()
        .file("orch.toml", "[jobs.slow]\nrun = [\"sleep\", \"30\"]\n")
        .args(&["run", "--schedule", "* * * * * *"]);
    let mut r = Running::start(&t);
    r.expect("slow started");
    let pids = r.pids();
    r.signal("TERM");
    let (code, lines) = r.wait();
    assert_eq!(code, 130, "{}", lines.join("\n"));
    assert_no_survivors(&pids);
    let runs = runs(&t);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        results(&runs[0])["instances"]["slow"]["status"],
        "cancelled"
    );
}

#[test]
fn once_runs_the_next_fire_time_only() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[schedule]\ncron = \"@yearly\"\n[jobs.a]\nrun = [\"true\"]\n",
        )
        .args(&["run", "--schedule", "* * * * * *", "--once"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cron \"* * * * * *\""),
        "{}",
        out.stdout
    );
    assert_eq!(runs(&t).len(), 1);
}

#[test]
fn start_at_waits_then_runs_once() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--start-at", "1s"]);
    let started = Instant::now();
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(out.stdout.contains("next run at"), "{}", out.stdout);
    assert_eq!(runs(&t).len(), 1);
}

#[test]
fn ctrl_c_while_waiting_exits_cleanly_and_runs_nothing() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[schedule]\nstart_at = \"2h\"\n[jobs.a]\nrun = [\"true\"]\n",
        )
        .args(&["run"]);
    let mut r = Running::start(&t);
    let line = r.expect("next run at");
    assert!(line.contains("(in 2h)"), "{line}");
    r.signal("INT");
    let (code, lines) = r.wait();
    assert_eq!(code, 0);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SIGINT: stopped while waiting; nothing ran"))
    );
    assert!(runs(&t).is_empty());
}

#[test]
fn nonsense_start_times_list_the_accepted_forms() {
    for bad in ["13pm", "25:00", "soon"] {
        let t = Test::new()
            .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
            .args(&["run", "--start-at", bad]);
        let out = t.run();
        assert_eq!(out.code, 2, "{bad}");
        assert!(
            out.stderr.contains("\"10:30pm\"") && out.stderr.contains("ISO 8601"),
            "{bad}: {}",
            out.stderr
        );
    }
    let t = Test::new()
        .file(
            "orch.toml",
            "[schedule]\nstart_at = \"2001-01-01\"\n[jobs.a]\nrun = [\"true\"]\n",
        )
        .args(&["run"]);
    let out = t.run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("in the past"), "{}", out.stderr);
}

/// The rows of the Markdown table after `heading`: the first backticked text of each cell.
fn table_codes(text: &str, heading: &str) -> Vec<String> {
    let section = text.split(heading).nth(1).expect("heading");
    let mut codes = Vec::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').collect();
        for cell in cells.iter().skip(1).take(2) {
            codes.extend(cell.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    codes
}

#[test]
fn the_scheduling_chapter_examples_are_real() {
    let text = std::fs::read_to_string(root().join("book/src/scheduling.md")).unwrap();
    let forms = table_codes(&text, "## Start times");
    assert!(forms.len() >= 20, "{forms:?}");
    for form in &forms {
        assert!(orch::schedule::parse_start_at(form).is_ok(), "{form}");
    }
    let crons = table_codes(&text, "## Cron schedules");
    assert!(crons.len() >= 10, "{crons:?}");
    for expr in &crons {
        assert!(orch::schedule::parse_cron(expr).is_ok(), "{expr}");
    }
    // Every manifest of the chapter plans, with its start time and five fire times.
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 2);
    for block in blocks {
        let t =
            Test::new()
                .file("orch.toml", block)
                .args(&["plan", "--format", "json", "--simulate"]);
        let out = t.run();
        assert_eq!(out.code, 0, "{block}\n{}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        if block.contains("cron") {
            assert_eq!(v["schedule"]["next"].as_array().unwrap().len(), 5);
        }
        if block.contains("start_at") {
            assert!(v["schedule"]["starts"].is_string(), "{v}");
        }
    }
    // The systemd unit runs a command orch accepts, and lets orch stop its own steps.
    let unit = text
        .split("```ini\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert!(unit.contains("KillMode=mixed") && unit.contains("TimeoutStopSec=60"));
    let t = Test::new().file(
        "orch.toml",
        "[schedule]\ncron = \"0 2 * * *\"\n[jobs.a]\nrun = [\"true\"]\n",
    );
    let mut dry = args.clone();
    dry.push("--dry-run");
    let out = t.with_args(&dry).output().unwrap();
    assert!(
        out.status.success(),
        "{exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
