//! Claude Code configuration per job, env files, secret masking and the model table, through
//! the real binary: `orch plan` (text and JSON), `orch run` with the simulated agent and real
//! child processes, `orch convert`.

use serde_json::Value;

use super::harness::Test;

const FAST: &str = "[settings]\nstartup_delay = \"0s\"\n";

fn sim(t: Test) -> Test {
    let state = t.path().join("sim");
    t.env("ORCH_SIM_STATE_DIR", state.to_str().expect("utf-8"))
        .env("ORCH_SIM_DELAY_MS", "0")
}

/// The folder of the only run in the test's state folder.
fn run_dir(t: &Test) -> std::path::PathBuf {
    let runs = t.path().join(".orch/runs");
    std::fs::read_dir(&runs)
        .expect("runs")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("one run")
}

/// Every file under `dir`, with its text (lossy).
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                out.push((p, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

/// The plan's argv of each step of job `name`, from `orch plan --format json`.
fn planned_argvs(t: &Test, name: &str) -> Vec<Vec<String>> {
    let out = t
        .with_args(&["plan", "--format", "json"])
        .output()
        .expect("orch plan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let steps = plan["steps"].as_array().expect("steps");
    steps
        .iter()
        .filter(|s| s["job"] == name)
        .map(|s| {
            s["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|a| a.as_str().expect("text").to_string())
                .collect()
        })
        .collect()
}

fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
    argv.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// Every new key reaches the argv of every step of a chain (the CLI restores a resumed
/// session's transcript, not its flags), files absolute, inline tables as JSON text; the
/// simulated agent runs the chain to the end with them.
#[test]
fn every_key_is_on_every_step_of_the_chain_and_the_run_completes() {
    let manifest = format!(
        r#"{FAST}
[defaults]
disallowed_tools = ["WebFetch"]

[jobs.review]
prompt = "review"
pre_commands = ["/clear"]
append_system_prompt = "Answer in French."
system_prompt = "You are terse."
disallowed_tools = ["Bash(git push *)", "Edit"]
mcp_config = ["mcp.json", {{ mcpServers = {{ t = {{ command = "python3", args = ["t.py"] }} }} }}]
strict_mcp_config = true
add_dirs = ["docs"]
fallback_model = "haiku"
settings = {{ env = {{ A = "1" }} }}
agents = {{ rev = {{ description = "Reviews", prompt = "You review" }} }}
permission_prompt_tool = "mcp__perm__ask"
"#
    );
    let t = sim(Test::new()
        .file("orch.toml", &manifest)
        .file("mcp.json", r#"{"mcpServers": {}}"#)
        .file("docs/README", "x"));
    let dir = t.path().canonicalize().expect("canonical");
    let argvs = planned_argvs(&t, "review");
    assert_eq!(argvs.len(), 2, "{argvs:#?}");
    for argv in &argvs {
        assert!(
            has_pair(argv, "--append-system-prompt", "Answer in French."),
            "{argv:?}"
        );
        assert!(
            has_pair(argv, "--system-prompt", "You are terse."),
            "{argv:?}"
        );
        assert!(
            has_pair(argv, "--disallowedTools", "Bash(git push *),Edit"),
            "{argv:?}"
        );
        let mcp = dir.join("mcp.json");
        assert!(
            argv.windows(2).any(|w| w[0] == "--mcp-config"
                && std::path::Path::new(&w[1]).canonicalize().ok() == Some(mcp.clone())),
            "{argv:?}"
        );
        assert!(has_pair(
            argv,
            "--mcp-config",
            r#"{"mcpServers":{"t":{"args":["t.py"],"command":"python3"}}}"#
        ));
        assert!(argv.contains(&"--strict-mcp-config".to_string()));
        assert!(argv.iter().any(|a| a.ends_with("/docs")), "{argv:?}");
        assert!(has_pair(argv, "--fallback-model", "haiku"));
        assert!(has_pair(argv, "--settings", r#"{"env":{"A":"1"}}"#));
        assert!(has_pair(
            argv,
            "--agents",
            r#"{"rev":{"description":"Reviews","prompt":"You review"}}"#
        ));
        assert!(has_pair(argv, "--permission-prompt-tool", "mcp__perm__ask"));
    }
    assert!(argvs[0].contains(&"--session-id".to_string()));
    assert!(argvs[1].contains(&"--resume".to_string()));

    let out = t
        .with_args(&["run", "--simulate"])
        .output()
        .expect("orch run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir(&t).join("results.json")).expect("results"),
    )
    .expect("JSON");
    assert_eq!(results["instances"]["review"]["status"], "completed");
}

/// A flag orch sets itself in `extra_args` is a load-time error at its place, naming the key
/// to use; nothing runs. Another flag is passed as written.
#[test]
fn a_flag_orch_sets_in_extra_args_is_refused_with_the_key_to_use() {
    let t = Test::new()
        .file(
            "orch.toml",
            "[jobs.a]\nprompt = \"x\"\nextra_args = [\"--effort\", \"high\", \"--max-turns=3\"]\n",
        )
        .args(&["plan"])
        .status(2)
        .stderr_contains("`jobs.a.extra_args`: `--max-turns` is a flag orch sets itself")
        .stderr_contains("use `max_turns`, not extra_args")
        .stderr_contains("orch::manifest::agent_option");
    t.run();

    let ok = Test::new().file(
        "orch.toml",
        "[jobs.a]\nprompt = \"x\"\nextra_args = [\"--effort\", \"high\"]\n",
    );
    let argv = &planned_argvs(&ok, "a")[0];
    let at = argv.iter().position(|a| a == "--effort").expect("--effort");
    assert_eq!(argv[at + 1], "high");
    assert!(
        at < argv
            .iter()
            .position(|a| a == "--session-id")
            .expect("session")
    );
}

/// Secret values (a `secrets` name filled from an env file, a `*_TOKEN` from the env file,
/// ANTHROPIC_API_KEY from orch's environment) are `***` in the terminal, the events, the
/// results, the plan (text and JSON) and setup errors; the step's own log keeps its bytes.
#[test]
fn secrets_never_leave_orch_unmasked() {
    let (key, token, api) = (
        "deploy-key-marker-91",
        "api-token-marker-92",
        "sk-ant-marker-93",
    );
    let manifest = format!(
        r#"{FAST}
[defaults]
env_file = "secrets.env"

[jobs.shout]
run = ["sh", "-c", "echo key=$DEPLOY_KEY token=$CI_TOKEN api=$ANTHROPIC_API_KEY; echo $DEPLOY_KEY >&2"]
secrets = ["DEPLOY_KEY"]

[jobs.agent]
needs = ["shout"]
prompt = "summarise ${{{{ jobs.shout.outputs.stdout }}}}"
append_system_prompt = "the key is {key}"

[jobs.missing]
run = ["no-such-program-{key}"]
"#
    );
    let t = sim(Test::new().file("orch.toml", &manifest).file(
        "secrets.env",
        &format!("DEPLOY_KEY={key}\nCI_TOKEN=\"{token}\"\n"),
    ))
    .env("ANTHROPIC_API_KEY", api);
    let secrets = [key, token, api];
    let clean = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows {s}:\n{text}");
        }
    };

    for args in [&["plan"][..], &["plan", "--format", "json"]] {
        let out = t.with_args(args).output().expect("orch plan");
        let stdout = String::from_utf8_lossy(&out.stdout);
        clean("plan", &stdout);
        clean("plan's stderr", &String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("***"), "{stdout}");
    }

    let events = t.path().join("events.ndjson");
    let out = t
        .with_args(&[
            "run",
            "--simulate",
            "--events",
            events.to_str().expect("utf-8"),
        ])
        .output()
        .expect("orch run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    clean("the terminal", &stdout);
    clean("stderr", &String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("key=*** token=*** api=***"), "{stdout}");
    let events = std::fs::read_to_string(&events).expect("events");
    clean("the events", &events);
    assert!(events.contains("key=*** token=*** api=***"), "{events}");
    let run = run_dir(&t);
    let results = std::fs::read_to_string(run.join("results.json")).expect("results");
    clean("the results", &results);
    assert!(results.contains("no-such-program-***"), "{results}");
    // The log is the child's own bytes: the secret really went through.
    let logs = files_under(&run.join("logs"));
    assert!(
        logs.iter()
            .any(|(p, text)| p.to_string_lossy().contains("shout") && text.contains(key)),
        "no log holds what the step wrote"
    );

    // A setup error that quotes a secret.
    let broken =
        format!("{manifest}\n[jobs.elsewhere]\nrun = [\"true\"]\nworkspace = \"ws-{key}\"\n");
    std::fs::write(t.path().join("orch.toml"), broken).expect("write");
    let out = t.with_args(&["plan"]).output().expect("orch plan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ws-***"), "{stderr}");
    clean("the error", &stderr);
}

/// An env file that cannot be read is a diagnostic at its value.
#[test]
fn a_missing_env_file_is_a_diagnostic() {
    Test::new()
        .file(
            "orch.toml",
            "[jobs.a]\nrun = [\"true\"]\nenv_file = \".env.missing\"\n",
        )
        .args(&["plan"])
        .status(2)
        .stderr_contains("orch::manifest::env_file")
        .stderr_contains("cannot read the env file")
        .stderr_contains(".env.missing")
        .run();
}

/// An unknown model: a plan warning with the closest known names, and a live estimate (a step
/// that ends without Claude Code's result) shows "price unknown", never $0.0000.
#[test]
fn an_unknown_model_warns_and_its_estimate_is_price_unknown() {
    let manifest = format!("{FAST}[jobs.a]\nprompt = \"x\"\nmodel = \"sonet\"\n");
    let t = sim(Test::new().file("orch.toml", &manifest))
        .env("ORCH_SIM_NO_RESULT", "1")
        .args(&["plan"])
        .stdout_contains("model \"sonet\" is not in orch's price table (closest known: sonnet");
    t.run();
    let out = t
        .with_args(&["run", "--simulate"])
        .output()
        .expect("orch run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("price unknown"), "{stdout}");
    assert!(!stdout.contains("$0.0000~  sonet"), "{stdout}");
    assert!(stdout.contains("some prices unknown"), "{stdout}");
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir(&t).join("results.json")).expect("results"),
    )
    .expect("JSON");
    assert_eq!(
        results["instances"]["a"]["price_unknown"], true,
        "{results:#}"
    );
}

/// `orch convert`: zen's "system message: ..." pre-command becomes `append_system_prompt`, with
/// a note; the converted file plans the same argv as the JSON.
#[test]
fn convert_turns_a_system_message_into_append_system_prompt() {
    let json = r#"{"instances": [{"name": "t", "command": "/test", "model": "sonnet",
        "pre_commands": ["/clear", "system message: Focus on testing"]}]}"#;
    let t = Test::new().file("zen.json", json);
    let out = t
        .with_args(&["convert", "zen.json"])
        .output()
        .expect("convert");
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(toml.contains("# Note: job \"t\": its \"system message: ...\" pre-command is now `append_system_prompt`"), "{toml}");
    assert!(
        toml.contains("append_system_prompt = \"Focus on testing\""),
        "{toml}"
    );
    assert!(toml.contains("pre_commands = [\"/clear\"]"), "{toml}");
    assert!(toml.contains("model = \"sonnet\""), "{toml}");
    std::fs::write(t.path().join("orch.toml"), &toml).expect("write");
    let argvs = planned_argvs(&t, "t");
    assert_eq!(argvs.len(), 2, "the system message is no step of its own");
    assert!(has_pair(
        &argvs[1],
        "--append-system-prompt",
        "Focus on testing"
    ));
    assert!(has_pair(&argvs[1], "--model", "sonnet"));
}
