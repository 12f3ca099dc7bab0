//! What people coming from zen (the old Python tool) meet: its dry run, direct mode, workspace,
//! results file, flags and `ledger --config`, each against the real binary and simulated agent.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::harness::Test;

/// A test whose simulated sessions stay in its own folder.
fn sim(t: Test) -> Test {
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().unwrap())
}

/// The results files of every run under `state` (`<state>/runs/*/results.json`).
fn results_under(state: &Path) -> Vec<Value> {
    let Ok(dirs) = std::fs::read_dir(state.join("runs")) else {
        return Vec::new();
    };
    dirs.map(|e| e.unwrap().path().join("results.json"))
        .filter(|p| p.exists())
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// The files in `dir` whose names start with zen's results prefix.
fn zen_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("claude_instances_results_"))
        })
        .collect()
}

// ---- dry runs say when the run would start ----

#[test]
fn dry_run_and_plan_show_the_start_time_and_the_wait() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--dry-run", "--start-at", "2h"])
        .status(0)
        .stdout_contains("schedule: start at \"2h\"")
        .stdout_contains("schedule: the first run would start in 2h\n");
    let out = t.run();
    assert!(!out.stdout.contains("schedule: none"), "{}", out.stdout);
    // The same in `orch plan`, which rejected --start-at before.
    let plan = t.with_args(&["plan", "--start-at", "2h"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("the first run would start in 2h"),
        "{stdout}"
    );
    assert!(!t.path().join(".orch").exists(), "a dry run starts nothing");
}

#[test]
fn plan_with_a_schedule_and_once_shows_the_one_fire_time() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["plan", "--schedule", "0 2 * * *", "--once"])
        .status(0)
        .stdout_contains("schedule: cron \"0 2 * * *\"")
        .stdout_contains("one run, then exit (--once)")
        .stdout_contains("schedule: the first run would start in ");
    let out = t.run();
    let fires = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" 02:00:00 "))
        .count();
    assert_eq!(fires, 1, "{}", out.stdout);
    // Without --once, the dry run lists five, as the service would run at each.
    let dry = t
        .with_args(&["run", "--dry-run", "--schedule", "0 2 * * *"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(stdout.matches(" 02:00:00 ").count(), 5, "{stdout}");
}

// ---- direct mode ----

#[test]
fn direct_mode_runs_one_command_with_zens_instance_flags() {
    let t = sim(Test::new()).args(&[
        "run",
        "--simulate",
        "--no-progress",
        "--startup-delay",
        "0",
        "--command",
        "/createtestsv2 frontend",
        "--instance-name",
        "fe",
        "--instance-description",
        "Frontend tests",
        "--session-id",
        "s-1",
        "--clear-history",
        "--compact-history",
    ]);
    let t = t.status(0);
    t.run();
    let runs = results_under(&t.path().join(".orch"));
    assert_eq!(runs.len(), 1, "one run, in ./.orch");
    let fe = &runs[0]["instances"]["fe"];
    assert_eq!(fe["status"], "completed", "{fe:#}");
    assert_eq!(fe["description"], "Frontend tests");
    let labels: Vec<&str> = fe["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels.len(),
        3,
        "/clear, /compact, then the command: {labels:?}"
    );
    let main = fe["steps"][2]["argv"].as_array().unwrap();
    assert!(
        main.iter().any(|a| a == "/createtestsv2 frontend"),
        "{main:?}"
    );
    assert!(
        main.iter().any(|a| a == "--resume" || a == "--session-id"),
        "{main:?}"
    );
    // zen wrote its auto-named results file in the current folder.
    let files = zen_files(t.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.ends_with("_fe.json"), "{name}");
    assert_eq!(runs[0]["metadata"]["generated_filename"], name.as_str());
    // The dry run of the same command line shows the job and starts nothing.
    let other = Test::new();
    let dry = other
        .with_args(&[
            "run",
            "--dry-run",
            "--simulate",
            "--command",
            "/createtestsv2 x",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("createtestsv2"), "{stdout}");
    assert!(!other.path().join(".orch").exists(), "{stdout}");
}

#[test]
fn a_positional_slash_command_runs_in_direct_mode_with_a_hint() {
    let t = sim(Test::new())
        .args(&["run", "--simulate", "--no-progress", "/review everything"])
        .status(0)
        .stderr_contains("running it as a slash command")
        .stderr_contains("--command \"/review everything\"");
    t.run();
    let runs = results_under(&t.path().join(".orch"));
    assert_eq!(runs[0]["instances"]["review"]["status"], "completed");
}

#[test]
fn a_missing_manifest_hints_at_direct_mode_and_stray_flags_are_refused() {
    Test::new()
        .args(&["run", "nothere.toml"])
        .status(2)
        .stderr_contains("cannot read manifest")
        .stderr_contains("orch run --command")
        .run();
    Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--clear-history"])
        .status(2)
        .stderr_contains("--clear-history")
        .stderr_contains("no --command or --prompt")
        .run();
}

// ---- the workspace ----

const CONFIG: &str = r#"{"instances": [{"name": "test-creator", "command": "/createtestsv2 unit"},
  {"name": "ssot-gardener", "prompt": "tidy up"}]}"#;

#[test]
fn a_json_config_runs_in_the_current_folder_and_writes_zens_results_file() {
    let t = sim(Test::new().file("other/dir/cfg.json", CONFIG))
        .args(&[
            "run",
            "--simulate",
            "--no-progress",
            "--config",
            "other/dir/cfg.json",
        ])
        .status(0);
    t.run();
    assert!(
        !t.path().join("other/dir/.orch").exists(),
        "state beside the config"
    );
    let runs = results_under(&t.path().join(".orch"));
    assert_eq!(runs.len(), 1, "the run's state is in ./.orch");
    let log = runs[0]["instances"]["test-creator"]["steps"][0]["log"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(log).unwrap();
    let cwd = t.path().canonicalize().unwrap();
    assert!(
        text.contains(&format!("\"cwd\":\"{}\"", cwd.display())),
        "the job ran in the current folder: {}",
        text.lines().next().unwrap_or("")
    );
    let files = zen_files(t.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    // claude_instances_results_<YYYYMMDD_HHMMSS>_<names>.json
    let stamp = &name["claude_instances_results_".len()..][..15];
    assert!(
        stamp
            .chars()
            .enumerate()
            .all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() }),
        "{name}"
    );
    assert!(name.ends_with("_testcreator_ssotgardener.json"), "{name}");
    let copy: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(copy, runs[0]);
    // And the ledger is found where the run put it.
    t.with_args(&["ledger", "--config", "other/dir/cfg.json"])
        .output()
        .map(|o| {
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert_eq!(o.status.code(), Some(0), "{stdout}");
            assert!(
                stdout.contains(runs[0]["metadata"]["run_id"].as_str().unwrap()),
                "{stdout}"
            );
        })
        .unwrap();
}

#[test]
fn a_toml_manifest_keeps_its_own_folder_with_config() {
    let t = Test::new()
        .file("sub/orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--no-progress", "--config", "sub/orch.toml"])
        .status(0);
    t.run();
    assert_eq!(results_under(&t.path().join("sub/.orch")).len(), 1);
    assert!(
        zen_files(t.path()).is_empty(),
        "no zen file for a TOML manifest"
    );
}

#[test]
fn a_missing_workspace_is_a_setup_error_naming_it() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"pwd\"]\n")
        .args(&["run", "--workspace", "no/such/dir"])
        .status(2)
        .stderr_contains("workspace `no/such/dir` does not exist")
        .stderr_contains("--workspace");
    t.run();
    assert!(!t.path().join(".orch/runs").exists(), "nothing started");
}

// ---- the results file ----

#[test]
fn the_results_file_has_zens_keys_with_zens_meanings() {
    let t = sim(Test::new().file(
        "orch.toml",
        "[settings]\nstartup_delay = \"0s\"\n[budget]\nmode = \"block\"\ntokens = 100000\n\
         [jobs.worker]\nprompt = \"work\"\n\
         [jobs.greedy]\nprompt = \"wants more than the run has\"\nmax_tokens = 200000\n",
    ))
    .args(&["run", "--simulate", "--no-progress"]);
    t.run();
    let v = &results_under(&t.path().join(".orch"))[0];
    let w = &v["instances"]["worker"];
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert!(n(w, "cache_creation_tokens") > 0, "{w:#}");
    assert_eq!(
        n(w, "cached_tokens"),
        n(w, "cache_read_tokens") + n(w, "cache_creation_tokens")
    );
    assert_eq!(
        n(w, "total_tokens"),
        n(w, "input_tokens") + n(w, "output_tokens") + n(w, "cached_tokens")
    );
    assert_eq!(v["instances"]["greedy"]["status"], "blocked");
    assert_eq!(v["failed"], 1, "zen counted a blocked job as failed");
    assert_eq!(v["blocked"], 1);
    assert_eq!(v["skipped"], 0);
    let m = &v["metadata"];
    assert_eq!(m["agents"], serde_json::json!(["worker", "greedy"]));
    assert_eq!(
        m["generated_filename"],
        Value::Null,
        "no --output, no --config"
    );
    let u = &m["token_usage"];
    assert_eq!(n(u, "cached_tokens"), n(w, "cached_tokens"));
    assert_eq!(n(u, "total_tool_calls"), n(w, "tool_calls"));
}

// ---- flags ----

#[test]
fn command_budget_takes_zens_form_and_names_a_bad_amount() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\ncommand = \"/createtestsv2 unit\"\n")
        .args(&[
            "plan",
            "--simulate",
            "--command-budget",
            "createtestsv2=5000",
        ])
        .status(0)
        .stdout_contains("/createtestsv2 5000 tokens");
    t.run();
    let bad = t
        .with_args(&["plan", "--simulate", "--command-budget", "/x=abc"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the amount \"abc\""), "{stderr}");
}

#[test]
fn output_format_json_is_accepted_with_a_warning() {
    Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--no-progress", "--output-format", "json"])
        .status(0)
        .stderr_contains("--output-format json changes nothing")
        .run();
}

#[test]
fn long_flags_can_be_abbreviated_unless_ambiguous() {
    let t = Test::new()
        .file("orch.toml", "[jobs.a]\nrun = [\"true\"]\n")
        .args(&["run", "--dry"])
        .status(0)
        .stdout_contains("plan \"orch\"");
    t.run();
    assert!(!t.path().join(".orch").exists(), "--dry is --dry-run");
    // --output is exact although --output-format shares its start; --outp is ambiguous.
    let exact = t
        .with_args(&["run", "--dry-run", "--output", "x.json"])
        .output()
        .unwrap();
    assert_eq!(exact.status.code(), Some(0));
    let ambiguous = t.with_args(&["run", "--outp", "x.json"]).output().unwrap();
    assert_eq!(ambiguous.status.code(), Some(2));
    assert!(!t.path().join(".orch").exists());
}

#[test]
fn an_empty_json_config_gets_a_json_example() {
    let out = Test::new()
        .file("cfg.json", "{\"instances\": []}")
        .args(&["plan", "--config", "cfg.json"])
        .status(2)
        .stderr_contains("the manifest defines no jobs")
        .stderr_contains("\"command\": \"/createtestsv2 unit\"")
        .run();
    assert!(!out.stderr.contains("[jobs.hello]"), "{}", out.stderr);
}

// ---- the book ----

#[test]
fn the_cli_reference_lists_every_flag() {
    let book = std::fs::read_to_string(super::harness::root().join("book/src/cli.md")).unwrap();
    let t = Test::new();
    let mut missing = Vec::new();
    for sub in [
        &["plan"][..],
        &["run"],
        &["ledger"],
        &["commands"],
        &["commands", "inspect"],
        &["convert"],
        &["schema"],
        &["completions"],
        &["man"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = t.with_args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            let Some(name) = word.strip_prefix("--") else {
                continue;
            };
            if name.is_empty() || name == "help" || name == "version" {
                continue;
            }
            // "`--name`", "`--name VALUE`" or "`--name=...`", not a longer flag that starts so.
            let listed = ['`', ' ', '=']
                .iter()
                .any(|end| book.contains(&format!("`--{name}{end}")));
            if !listed {
                missing.push(format!("orch {} --{name}", sub.join(" ")));
            }
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "book/src/cli.md lacks: {missing:?}");
}
