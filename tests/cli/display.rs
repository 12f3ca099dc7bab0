//! What the user sees: the plain reporter and the final summary (snapshots through the
//! redactor), zen's status tables, `--quiet`, colours, `-v`, and the NDJSON event stream checked
//! against its schema.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::harness::{Test, redact_run, root};

const PIPELINE: &str = r#"
[settings]
startup_delay = "0s"
max_parallel = 1

[budget]
mode = "warn"
tokens = 6_000

[jobs.lint]
run = ["true"]

[jobs.review]
command = "/review src"
pre_commands = ["/clear"]
needs = ["lint"]

[jobs.broken]
shell = "echo nope >&2; sleep 0.5; exit 3"

[jobs.after-broken]
run = ["true"]
needs = ["broken"]
"#;

fn sim_test(manifest: &str) -> Test {
    let t = Test::new().file("orch.toml", manifest);
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
        .env("ORCH_SIM_DELAY_MS", "0")
}

fn only_results(t: &Test) -> Value {
    let runs = t.path().join(".orch/runs");
    let dir = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn plain_lines_and_the_final_summary() {
    let t = sim_test(PIPELINE).args(&[
        "run",
        "--simulate",
        "--max-console-lines",
        "0",
        "--status-report-interval",
        "0",
    ]);
    let out = t.run();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains('\x1b'), "no ANSI codes off a terminal");
    // A budget notice tells the spend of the read batch that crossed the mark; how the agent's
    // lines fall into reads depends on the machine's load. The figure is checked against the
    // mark here, the line's wording by the snapshot.
    let text = redact_run(&out.stdout, &t);
    let mut lines = Vec::new();
    for line in text.lines() {
        let notice = line.split_once("⚠ budget: ").and_then(|(_, rest)| {
            let (what, figure) = rest.rsplit_once(": ")?;
            let spent: u64 = figure.strip_suffix("/6000 tokens")?.parse().ok()?;
            Some((what, spent))
        });
        match notice {
            Some((what, spent)) => {
                let mark = if what.contains("80 %") { 4800 } else { 6000 };
                assert!((mark..=8212).contains(&spent), "{line}");
                lines.push(line.replace(&format!(": {spent}/6000"), ": [spent]/6000"));
            }
            None => lines.push(line.to_string()),
        }
    }
    insta::assert_snapshot!(lines.join("\n") + "\n");
}

#[test]
fn the_results_file_has_the_figures_of_the_summary() {
    let t = sim_test(PIPELINE).args(&["run", "--simulate", "--quiet"]);
    let out = t.run();
    let v = only_results(&t);
    let summary = &out.stdout[out.stdout.find("\n  status ").expect("a summary")..];
    for (name, i) in v["instances"].as_object().unwrap() {
        let row = summary
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no summary row for {name}:\n{}", out.stdout));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], i["status"].as_str().unwrap(), "{row}");
        assert_eq!(cols[3], i["duration"].as_str().unwrap(), "{row}");
        assert_eq!(cols[4], i["total_tokens"].to_string(), "{row}");
        let cost = match i["total_cost_usd"].as_f64() {
            Some(c) => format!(
                "${c:.4}{}",
                if i["cost_is_estimate"] == true {
                    "~"
                } else {
                    ""
                }
            ),
            None => "-".into(),
        };
        assert_eq!(cols[5], cost, "{row}");
        assert_eq!(cols[6], i["model"].as_str().unwrap_or("-"), "{row}");
    }
    let total = v["metadata"]["token_usage"]["total_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        out.stdout.contains(&format!("; {total} tokens (")),
        "{}",
        out.stdout
    );
    let run_dir = v["metadata"]["run_dir"].as_str().unwrap();
    let rel = run_dir
        .strip_prefix(&format!("{}/", t.path().display()))
        .unwrap();
    assert!(out.stdout.contains(&format!("results: {rel}/results.json")));
    assert!(out.stdout.contains(&format!("logs:    {rel}/logs")));
}

#[test]
fn quiet_shows_errors_and_the_summary_only() {
    let t = sim_test(PIPELINE).args(&["run", "--simulate", "--quiet"]);
    let out = t.run();
    assert!(!out.stdout.contains("started"), "{}", out.stdout);
    assert!(!out.stdout.contains("STATUS REPORT"), "{}", out.stdout);
    assert!(out.stdout.contains("✘ broken failed"), "{}", out.stdout);
    assert!(out.stdout.contains("↷ after-broken"), "{}", out.stdout);
    assert!(out.stdout.contains("the run budget reached its limit"));
    assert!(!out.stdout.contains("is at 80 %"), "{}", out.stdout);
    assert!(out.stdout.contains("not run of 4 jobs"), "{}", out.stdout);
}

#[test]
fn zens_status_table_comes_every_interval_with_the_last_lines_of_each_job() {
    let manifest = r#"
[settings]
startup_delay = "0s"
[jobs.slow-a]
prompt = "take your time"
env = { ORCH_SIM_TURNS = "14", ORCH_SIM_DELAY_MS = "150" }
[jobs.slow-b]
prompt = "take yours too"
env = { ORCH_SIM_TURNS = "14", ORCH_SIM_DELAY_MS = "150" }
"#;
    let t = sim_test(manifest).args(&[
        "run",
        "--simulate",
        "--status-report-interval",
        "1",
        "--max-console-lines",
        "2",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let tables = out.stdout.matches("STATUS REPORT [").count();
    assert!(tables >= 2, "{tables} tables:\n{}", out.stdout);
    let first = &out.stdout[out.stdout.find("╔═══ STATUS REPORT").unwrap()..];
    let first = &first[..first.find("╚").unwrap()];
    for needle in [
        "Total: 2 jobs",
        "Running: 2",
        "Median:",
        "vs Med",
        "Cache",
        "Tools",
        "Cost",
        "Model",
        "slow-a",
        "slow-b",
        "║      │ ",
    ] {
        assert!(first.contains(needle), "{needle:?} missing:\n{first}");
    }
    // At most two output lines under each of the two jobs.
    assert!(first.matches("║      │ ").count() <= 4, "{first}");
}

#[test]
fn output_lines_are_cut_to_max_line_length() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[jobs.long]\nshell = \"printf '%0200d\\\\n' 0\"\n",
        )
        .args(&[
            "run",
            "--max-line-length",
            "30",
            "--status-report-interval",
            "0",
        ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("│ long: "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let shown = line.split("│ long: ").nth(1).unwrap();
    assert_eq!(shown.chars().count(), 30, "{line}");
    assert!(shown.ends_with('…'));
}

#[test]
fn verbose_turns_on_diagnostics_on_stderr() {
    let t = Test::new().file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n");
    let quiet = t.with_args(&["run", "--quiet"]).output().unwrap();
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let loud = t.with_args(&["-v", "run", "--quiet"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(stderr.contains("reporters"), "{stderr}");
}

/// Runs orch under a pseudo-terminal (`script`), returning everything it drew.
fn under_a_terminal(t: &Test, args: &str, no_color: bool) -> Option<String> {
    let script = which("script")?;
    let cmd = format!("{} {args}", super::harness::orch_bin().display());
    let mut c = std::process::Command::new(script);
    c.args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .current_dir(t.path())
        .env("HOME", t.path().join("home"))
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .env_remove("CLICOLOR_FORCE");
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let out = c.output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[test]
fn a_terminal_gets_the_live_view_and_no_color_removes_its_colours() {
    let t = sim_test(PIPELINE);
    let Some(colored) = under_a_terminal(&t, "run --simulate", false) else {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    };
    assert!(colored.contains(" steps "), "the progress bar:\n{colored}");
    assert!(has_colour(&colored), "colours on a terminal:\n{colored}");
    assert!(colored.contains("not run of 4 jobs"), "{colored}");
    let plain = under_a_terminal(&t, "run --simulate", true).unwrap();
    assert!(plain.contains(" steps "), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR:\n{plain}");
    let lines = under_a_terminal(&t, "run --simulate --no-progress", true).unwrap();
    assert!(!lines.contains(" steps "), "{lines}");
    assert!(lines.contains("▶ lint started"), "{lines}");
}

/// Whether `text` sets a foreground colour (`ESC [ 3x m`); cursor moves such as `ESC [ 3 A`
/// are not colours.
fn has_colour(text: &str) -> bool {
    text.match_indices("\x1b[3").any(|(i, _)| {
        let rest = &text.as_bytes()[i + 3..];
        rest.len() >= 2 && rest[0].is_ascii_digit() && matches!(rest[1], b'm' | b';')
    })
}

/// Every line of an events file, parsed.
fn event_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_committed_events_schema_is_what_orch_schema_prints() {
    let out = Test::new().args(&["schema", "--events"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let committed =
        std::fs::read_to_string(root().join("schemas/orch-events.schema.json")).unwrap();
    assert!(
        committed == out.stdout,
        "schemas/orch-events.schema.json is stale: run `cargo run -- schema --events > schemas/orch-events.schema.json`"
    );
}

#[test]
fn events_on_stdout_leave_the_human_output_on_stderr() {
    let t = sim_test(PIPELINE).args(&["run", "--simulate", "--events", "-"]);
    let out = t.run();
    assert!(!out.stdout.is_empty());
    for line in out.stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["v"], 1);
    }
    assert!(out.stderr.contains("not run of 4 jobs"), "{}", out.stderr);
}

#[test]
fn every_event_kind_validates_against_the_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/orch-events.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let kinds: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["properties"]["event"]["const"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut lines = Vec::new();

    // 1. A pipeline with output, usage, a warned budget, a failure and a skip.
    let t = sim_test(PIPELINE);
    t.with_args(&["run", "--simulate", "--quiet", "--events", "a.ndjson"])
        .output()
        .unwrap();
    lines.extend(event_lines(&t.path().join("a.ndjson")));

    // 2. fail_fast stops the run.
    let t = sim_test(
        "[settings]\nstartup_delay = \"0s\"\nfail_fast = true\n\
         [jobs.bad]\nrun = [\"false\"]\n[jobs.slow]\nrun = [\"sleep\", \"5\"]\n",
    );
    t.with_args(&["run", "--quiet", "--events", "b.ndjson"])
        .output()
        .unwrap();
    lines.extend(event_lines(&t.path().join("b.ndjson")));

    // 3. A rejected rate limit pauses and resumes launches; a fractional token count in the
    //    result is a usage anomaly.
    let script = "#!/bin/sh\nfor last; do :; done\n\
        if [ \"$last\" = \"first\" ]; then\n  reset=$(( $(date +%s) + 1 ))\n\
        echo \"{\\\"type\\\":\\\"rate_limit_event\\\",\\\"rate_limit_info\\\":{\\\"status\\\":\\\"rejected\\\",\\\"resetsAt\\\":$reset}}\"\nfi\n\
        echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"total_cost_usd\":0.001,\"usage\":{\"input_tokens\":1,\"output_tokens\":1.5},\"modelUsage\":{}}'\n";
    let t = Test::new().file("claude", script).file(
        "orch.toml",
        "[settings]\nstartup_delay = \"0s\"\n[jobs.first]\nprompt = \"first\"\n\
         [jobs.second]\nprompt = \"second\"\nneeds = [\"first\"]\n",
    );
    let claude = t.path().join("claude");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&claude)
        .status()
        .unwrap();
    t.with_args(&[
        "run",
        "--quiet",
        "--claude-path",
        claude.to_str().unwrap(),
        "--events",
        "c.ndjson",
    ])
    .output()
    .unwrap();
    lines.extend(event_lines(&t.path().join("c.ndjson")));

    // 3b. A job's outputs, and a for_each fan-out that expands from them.
    let t = Test::new().file(
        "orch.toml",
        "[settings]\nstartup_delay = \"0s\"\n[jobs.src]\nrun = [\"printf\", \"[1, 2]\"]\noutputs = \"json\"\n\
         [jobs.each]\nneeds = [\"src\"]\nfor_each = \"${{ jobs.src.outputs.json }}\"\nrun = [\"echo\", \"${{ item }}\"]\n",
    );
    t.with_args(&["run", "--quiet", "--events", "d.ndjson"])
        .output()
        .unwrap();
    lines.extend(event_lines(&t.path().join("d.ndjson")));

    // 4. An orch killed mid-run leaves a run that the next start reconciles.
    let t = sim_test("[jobs.hang]\nprompt = \"wait\"\nenv = { ORCH_SIM_HANG = \"1\" }\n")
        .allow_dead_run("orch is SIGKILLed to leave a run for the next start to reconcile");
    let mut child = t
        .with_args(&["run", "--simulate", "--quiet"])
        .spawn()
        .unwrap();
    let runs = t.path().join(".orch/runs");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(&runs).is_ok_and(|mut d| {
        d.next().is_some_and(|e| {
            std::fs::read_dir(e.unwrap().path().join("logs")).is_ok_and(|mut l| l.next().is_some())
        })
    }) {
        assert!(std::time::Instant::now() < end, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let t = t.env("ORCH_SIM_HANG", "0");
    std::fs::write(
        t.path().join("orch.toml"),
        "[jobs.quick]\nrun = [\"true\"]\n",
    )
    .unwrap();
    t.with_args(&["run", "--quiet", "--events", "d.ndjson"])
        .output()
        .unwrap();
    lines.extend(event_lines(&t.path().join("d.ndjson")));

    // 5. A start time, and Ctrl-C while waiting for it.
    let t = Test::new().file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n");
    lines.extend(signalled(
        &t,
        &["--start-at", "30s"],
        "run_scheduled",
        "INT",
    ));

    // 6. A cron service whose run outlasts a fire time, stopped with SIGTERM.
    let t = Test::new().file("orch.toml", "[jobs.a]\nrun = [\"sleep\", \"1.5\"]\n");
    lines.extend(signalled(
        &t,
        &["--schedule", "* * * * * *"],
        "fire_skipped",
        "TERM",
    ));

    // 7. A retry, throttling, and a rate limit that resets beyond max_pause (tests/cli/retry.rs
    //    tests each of them).
    let t = sim_test(
        "[settings]\nstartup_delay = \"0s\"\nmax_pause = \"1m\"\n\
         [jobs.a]\nprompt = \"a\"\nenv = { ORCH_SIM_FAIL = \"api_retry\" }\n\
         retry = { attempts = 2, backoff = \"100ms\" }\n\
         [jobs.b]\nprompt = \"b\"\n\
         [jobs.c]\nprompt = \"c\"\nneeds = [\"a\"]\n\
         env = { ORCH_SIM_FAIL = \"rate_limit\", ORCH_SIM_RESETS_IN_S = \"3600\" }\n",
    );
    t.with_args(&["run", "--simulate", "--quiet", "--events", "e.ndjson"])
        .output()
        .unwrap();
    lines.extend(event_lines(&t.path().join("e.ndjson")));

    // A ledger that cannot be written, and a wait long enough to pass a milestone (an hour),
    // are hard to provoke in a test: those kinds are built here. (A full disk, which produces the
    // write faults for real, needs root: `recovery::a_full_disk_loses_no_spend_and_says_what_it_lost`.)
    for event in [
        orch::events::Event::LedgerFailed {
            error: "disk full".into(),
        },
        orch::events::Event::LogWriteFailed {
            step: 0,
            label: "a".into(),
            stream: "stdout".into(),
            path: "/state/runs/r/logs/001-a.log".into(),
            error: "No space left on device (os error 28)".into(),
            bytes_lost: 4096,
        },
        orch::events::Event::ResultsWriteFailed {
            path: "/state/runs/r/results.json".into(),
            error: "No space left on device (os error 28)".into(),
            written_to: Some("/tmp/orch-results-r.json".into()),
        },
        orch::events::Event::WaitUpdated {
            at: chrono::DateTime::UNIX_EPOCH.fixed_offset(),
            left: Duration::from_secs(3600),
        },
        // Produced for real on the test cluster: slurm::slurm_per_run_allocation_...
        orch::events::Event::StepPlaced {
            step: 0,
            label: "a".into(),
            node: "n1".into(),
            job_step: "12.0".into(),
        },
        // Produced for real by run_core::writes_that_cannot_land_by_the_end_are_reconciled...
        orch::events::Event::LedgerWritesNotLanded {
            writes: 2,
            error: Some("database is locked".into()),
            message: orch::runner::not_landed_message(2),
        },
    ] {
        let built = orch::report::ndjson::line(&event).unwrap();
        lines.push(serde_json::from_str(&built).unwrap());
    }

    let mut seen = BTreeSet::new();
    for line in &lines {
        let errors: Vec<String> = validator
            .iter_errors(line)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{line}: {errors:#?}");
        seen.insert(line["event"].as_str().unwrap().to_string());
    }
    let missing: Vec<_> = kinds.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "event kinds never produced: {missing:?}"
    );
}

/// Runs `orch run ARGS --events e.ndjson`, waits for an event of kind `until`, sends `signal`,
/// and returns the events.
fn signalled(t: &Test, args: &[&str], until: &str, signal: &str) -> Vec<Value> {
    let mut argv = vec!["run", "--quiet", "--events", "e.ndjson"];
    argv.extend_from_slice(args);
    let mut child = t
        .with_args(&argv)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = t.path().join("e.ndjson");
    let needle = format!("\"event\":\"{until}\"");
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&file).is_ok_and(|s| s.contains(&needle)) {
        assert!(std::time::Instant::now() < end, "no {until} event");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    event_lines(&file)
}

/// Runs orch under a pseudo-terminal of `cols` x `rows` (`script`, then `stty`), returning
/// everything it drew.
fn under_a_sized_terminal(t: &Test, args: &str, cols: u16, rows: u16) -> Option<String> {
    let script = which("script")?;
    let cmd = format!(
        "stty cols {cols} rows {rows}; {} {args}",
        super::harness::orch_bin().display()
    );
    let out = std::process::Command::new(script)
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .current_dir(t.path())
        .env("HOME", t.path().join("home"))
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS")
        .env_remove("LINES")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `text` without CSI escape sequences.
fn strip_csi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const WIDE: &str = r#"
[settings]
startup_delay = "0s"
max_parallel = 2

[budget]
tokens = 1_000_000
commands."/review" = { usd = 2.0 }

[defaults]
model = "claude-sonnet-4-5-20250929"

[jobs.a-job-with-a-name-long-enough-to-eat-the-output-column]
prompt = "go"
env = { ORCH_SIM_TURNS = "6", ORCH_SIM_DELAY_MS = "60" }

[jobs."レビュー-review"]
command = "/review src"
env = { ORCH_SIM_TURNS = "6", ORCH_SIM_DELAY_MS = "60" }
max_usd = 1.0

[jobs.after]
run = ["true"]
needs = ["レビュー-review"]
"#;

#[test]
fn at_80_columns_the_view_is_synchronized_and_the_summary_fits() {
    let t = sim_test(WIDE);
    let Some(drawn) = under_a_sized_terminal(&t, "run --simulate", 80, 24) else {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    };
    assert!(
        drawn.contains("\x1b[?2026h"),
        "synchronized output:\n{drawn:?}"
    );
    assert!(drawn.contains("\x1b[?2026l"), "{drawn:?}");
    assert!(drawn.contains("\x1b[?25l"), "a hidden cursor:\n{drawn:?}");
    let shown = drawn.rfind("\x1b[?25h").expect("the cursor shown again");
    assert!(shown > drawn.rfind("\x1b[?25l").unwrap(), "{drawn:?}");
    assert!(drawn.rfind("\x1b[?2026h") < Some(shown), "{drawn:?}");
    // The command budget has a bar before anything spent on it; the waiting job is listed.
    let text = strip_csi(&drawn);
    assert!(
        text.contains("budget /review        [░░░░░░░░░░]   0%"),
        "{text}"
    );
    assert!(text.contains("1 waiting, next: after"), "{text}");
    let summary = strip_csi(&drawn[shown..]);
    assert!(summary.contains("of 3 jobs"), "{summary}");
    for line in summary.lines() {
        let line = line.trim_end_matches('\r');
        assert!(
            unicode_width::UnicodeWidthStr::width(line) <= 80,
            "{} columns: {line}\n{summary}",
            unicode_width::UnicodeWidthStr::width(line)
        );
    }
    // A wide character in a name does not shift the columns: the duration column ends at the
    // same place on every row.
    let rows: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("✔ completed"))
        .collect();
    assert_eq!(rows.len(), 3, "{summary}");
    let ends: Vec<usize> = rows
        .iter()
        .map(|l| {
            // The duration is the first field ending in `s` after the name.
            let dur = l
                .split_whitespace()
                .skip(3)
                .find(|w| w.ends_with('s') && w.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap();
            let end = l.find(&format!(" {dur}")).unwrap() + 1 + dur.len();
            unicode_width::UnicodeWidthStr::width(&l[..end])
        })
        .collect();
    assert!(ends.iter().all(|e| *e == ends[0]), "{ends:?}\n{summary}");
    assert!(summary.contains("sonnet-4-5"), "{summary}");
}

#[test]
fn one_job_is_one_job() {
    let out = sim_test("[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--quiet"])
        .run();
    assert!(out.stdout.contains("not run of 1 job in"), "{}", out.stdout);
}

#[test]
fn the_demo_paces_the_simulated_agent() {
    let demo = std::fs::read_to_string(root().join("manifests/demo.toml")).unwrap();
    let demo = demo.replace("workspace = \"..\"", "workspace = \".\"");
    let t = Test::new()
        .file("orch.toml", &demo)
        .file("README.md", "# a\n\nb\n");
    let state = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap()).args(&[
        "run",
        "--simulate",
        "--quiet",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = only_results(&t);
    for job in ["docs-agent", "final-review"] {
        let d = v["instances"][job]["duration"].as_str().unwrap();
        let secs: f64 = d.trim_end_matches('s').parse().unwrap();
        assert!(secs >= 2.0, "{job} took {d}: too quick to watch");
    }
}

/// Runs orch under an 80x24 pseudo-terminal and types Ctrl-C into it once `ready` is drawn:
/// the terminal's own line discipline sends SIGINT and echoes `^C`, as for a person. Returns
/// everything drawn.
fn ctrl_c_under_a_terminal(t: &Test, args: &str, ready: &str) -> Option<String> {
    use std::io::{Read, Write};
    let script = which("script")?;
    let cmd = format!(
        "stty cols 80 rows 24; {} {args}",
        super::harness::orch_bin().display()
    );
    let mut child = std::process::Command::new(script)
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .current_dir(t.path())
        .env("HOME", t.path().join("home"))
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1")
        .env(super::harness::MARK_VAR, t.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let drawn = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let drawn = drawn.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                drawn.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&drawn.lock().unwrap()).contains(ready) {
        assert!(std::time::Instant::now() < end, "never drew {ready:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take()?;
    stdin.write_all(b"\x03").ok()?;
    stdin.flush().ok()?;
    child.wait().ok()?;
    drop(stdin);
    reader.join().ok()?;
    let text = String::from_utf8_lossy(&drawn.lock().unwrap()).into_owned();
    Some(text)
}

#[test]
fn ctrl_c_on_a_terminal_ends_the_view_cleanly() {
    let t = sim_test(
        "[settings]\nstartup_delay = \"0s\"\n\
         [jobs.slow]\nprompt = \"wait\"\nenv = { ORCH_SIM_TURNS = \"200\", ORCH_SIM_DELAY_MS = \"50\" }\n\
         [jobs.later]\nrun = [\"true\"]\nneeds = [\"slow\"]\n",
    );
    let Some(drawn) = ctrl_c_under_a_terminal(&t, "run --simulate", "1 waiting, next: later")
    else {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    };
    // Replay what was drawn on an 80x24 screen.
    let screen = indicatif::InMemoryTerm::new(24, 80);
    indicatif::TermLike::write_str(
        &screen,
        &drawn.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
    )
    .unwrap();
    let text = screen.contents();
    let interrupted = text
        .find("■ interrupted")
        .unwrap_or_else(|| panic!("no interrupted line:\n{text}\n{drawn:?}"));
    assert!(
        !text[..interrupted].contains(" steps "),
        "a stale progress line above the interrupted line:\n{text}"
    );
    assert!(!text.contains(" steps "), "the view is gone:\n{text}");
    assert!(text.contains("not run of 2 jobs"), "{text}");
    assert!(
        drawn.rfind("\x1b[?25h") > drawn.rfind("\x1b[?25l"),
        "the cursor shown again:\n{drawn:?}"
    );
}

/// A step that writes an OSC 52 clipboard write, a screen clear, a cursor move, a title and a
/// carriage return, and fails; its job name carries a screen clear too.
const ESCAPES: &str = r#"
[settings]
startup_delay = "0s"
[jobs."evil\u001b[2J"]
shell = "printf 'a\\033]52;c;cHduZWQ=\\007b\\033[2Jc\\033[5;5Hd\\re\\n'; printf 'x\\033]0;title\\033\\\\y\\n' >&2; if [ -n \"$HOLD\" ]; then while [ ! -e release ]; do sleep 0.05; done; rm release; fi; exit 3"
"#;

/// Runs orch under a pseudo-terminal with `HOLD=1`, so the step waits for a `release` file;
/// creates that file once one of `seen` has been drawn. Returns everything drawn.
fn held_under_a_terminal(t: &Test, args: &str, no_color: bool, seen: &[&str]) -> Option<String> {
    use std::io::Read;
    let script = which("script")?;
    let cmd = format!("{} {args}", super::harness::orch_bin().display());
    let mut c = std::process::Command::new(script);
    c.args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .current_dir(t.path())
        .env("HOME", t.path().join("home"))
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .env("HOLD", "1")
        .env_remove("CLICOLOR_FORCE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let mut child = c.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    // A deadline, not a synchronisation: a hung run must fail the test, not block it.
    let pid = child.id();
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // Only while `script` is unreaped (its pid cannot be reused then): `done` comes first.
        if watchdog.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    });
    let mut drawn = Vec::new();
    let mut buf = [0u8; 4096];
    let mut released = false;
    // Ends at EOF: orch exits once released; the harness's own timeout guards the rest.
    while let Ok(n) = stdout.read(&mut buf) {
        if n == 0 {
            break;
        }
        drawn.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&drawn);
        if !released && seen.iter().any(|s| text.contains(s)) {
            std::fs::write(t.path().join("release"), "").unwrap();
            released = true;
        }
    }
    let _ = done.send(());
    let _ = child.wait();
    assert!(
        released,
        "{seen:?} was never drawn:\n{:?}",
        String::from_utf8_lossy(&drawn)
    );
    Some(String::from_utf8_lossy(&drawn).into_owned())
}

/// What a child may not send to the user's terminal through orch.
fn assert_no_foreign_escapes(text: &str) {
    for bad in ["\x1b]52", "\x1b[2J", "\x1b[5;5H", "\x1b]0;", "\u{9b}"] {
        assert!(
            !text.contains(bad),
            "{bad:?} reached the terminal:\n{text:?}"
        );
    }
}

#[test]
fn escape_sequences_from_a_step_never_reach_the_terminal() {
    let t = Test::new().file("orch.toml", ESCAPES);
    let out = t.with_args(&["run"]).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // Plain lines with NO_COLOR: not one ESC, whoever wrote it.
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(!stdout.contains('\r'), "{stdout:?}");
    assert!(
        stdout.contains("abcd␍e"),
        "the text itself is kept: {stdout}"
    );
    assert!(stdout.contains("xy"), "{stdout}");
    assert!(stdout.contains("evil"), "{stdout}");
    // The log keeps every byte.
    let runs = t.path().join(".orch/runs");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    let logs: Vec<_> = std::fs::read_dir(run.path().join("logs"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        logs.iter()
            .any(|log| log.windows(7).any(|w| w == b"\x1b]52;c;")),
        "the log has the raw bytes"
    );
    // Under a terminal the step waits until its line has been drawn.
    // Output is shown as the latest line every 200 ms: either of the two may be the one drawn.
    let lines_of_evil = ["abcd", "xy"];
    let Some(live) = held_under_a_terminal(&t, "run", true, &lines_of_evil) else {
        eprintln!("skipped the terminal half: no `script` to make a terminal");
        return;
    };
    assert_no_foreign_escapes(&live);
    let coloured = held_under_a_terminal(&t, "run", false, &lines_of_evil).unwrap();
    assert_no_foreign_escapes(&coloured);
    let lines = held_under_a_terminal(&t, "run --no-progress", true, &["started"]).unwrap();
    assert!(!lines.contains('\x1b'), "{lines:?}");
}
