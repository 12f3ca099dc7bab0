//! Simulator tests: its argv, its knobs, and its output fed through orch's own parser and
//! accounting.

use super::*;
use crate::agent::accounting::{Accounting, Outcome, SessionTotals};
use crate::agent::stream::{StreamEvent, parse_line};
use std::collections::HashMap;

const SESSION: &str = "5b3a9a52-8f0e-4c39-9d4b-6f2f0c7a1e11";

fn argv(extra: &[&str]) -> Vec<OsString> {
    let mut v = vec!["-p", "--output-format", "stream-json", "--verbose"];
    v.extend(["--permission-mode", "acceptEdits"]);
    v.extend(extra);
    v.into_iter().map(OsString::from).collect()
}

fn args(extra: &[&str]) -> SimArgs {
    let mut all = extra.to_vec();
    if !extra.contains(&"--") {
        all.extend(["--session-id", SESSION, "--", "list the files"]);
    }
    SimArgs::parse(&argv(&all)).expect("valid argv")
}

fn knobs(env: &[(&str, &str)]) -> Knobs {
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Knobs::from_lookup(|k| map.get(k).cloned()).expect("valid knobs")
}

fn account(stdout: &[u8], prior: Option<SessionTotals>, exit: u8) -> (Accounting, Outcome) {
    let mut acc = Accounting::new(prior);
    for ev in stdout.split(|b| *b == b'\n').filter_map(parse_line) {
        acc.observe(&ev);
    }
    let outcome = acc.finish(Some(i32::from(exit)));
    (acc, outcome)
}

fn result_of(stdout: &[u8]) -> Option<StreamEvent<'_>> {
    stdout
        .split(|b| *b == b'\n')
        .filter_map(parse_line)
        .find(|e| matches!(e, StreamEvent::Result { .. }))
}

#[test]
fn parses_the_drivers_argv() {
    let a = SimArgs::parse(&argv(&[
        "--model",
        "sonnet",
        "--allowedTools",
        "Read,Bash(git:*)",
        "--max-turns",
        "3",
        "--max-budget-usd=0.5",
        "--resume",
        SESSION,
        "--",
        "do",
        "--it",
    ]))
    .expect("valid");
    assert_eq!(a.model.as_deref(), Some("sonnet"));
    assert_eq!(a.allowed_tools, ["Read", "Bash(git:*)"]);
    assert_eq!((a.max_turns, a.max_budget_usd), (Some(3), Some(0.5)));
    assert_eq!(a.session, SessionArg::Resume(SESSION.into()));
    assert_eq!(a.prompt, "do --it");
}

#[test]
fn rejects_what_claude_would_reject() {
    let code = |extra: &[&str]| SimArgs::parse(&argv(extra)).map_err(|e| e.exit_code).err();
    assert_eq!(code(&["--frobnicate", "--", "x"]), Some(2));
    assert_eq!(code(&["--max-turns", "many", "--", "x"]), Some(2));
    assert_eq!(code(&["--permission-mode", "yolo", "--", "x"]), Some(2));
    assert_eq!(code(&["--max-turns"]), Some(2));
    assert_eq!(code(&["--session-id", "not-a-uuid", "--", "x"]), Some(1));
    assert_eq!(
        code(&["--session-id", SESSION, "--resume", SESSION, "--", "x"]),
        Some(1)
    );
    assert_eq!(code(&["--"]), Some(1));
    let no_verbose: Vec<OsString> = ["-p", "--output-format", "stream-json", "--", "x"]
        .map(OsString::from)
        .to_vec();
    assert_eq!(
        SimArgs::parse(&no_verbose).map_err(|e| e.exit_code).err(),
        Some(1)
    );
    assert!(Knobs::from_lookup(|k| (k == "ORCH_SIM_TURNS").then(|| "lots".into())).is_err());
}

#[test]
fn a_run_accounts_exactly_to_its_result() {
    for turns in ["1", "2", "4"] {
        let t = transcript(
            args(&[]),
            knobs(&[("ORCH_SIM_TURNS", turns)]),
            SESSION,
            SessionState::default(),
            None,
        );
        assert_eq!(t.exit_code, 0);
        let Some(StreamEvent::Result {
            total_cost_usd,
            model_usage,
            is_error,
            num_turns,
            ..
        }) = result_of(&t.stdout)
        else {
            panic!("no result");
        };
        assert!(!is_error);
        assert_eq!(num_turns, Some(turns.parse().expect("number")));
        let (_, outcome) = account(&t.stdout, None, t.exit_code);
        assert!(outcome.success);
        assert!(!outcome.usage.is_estimate);
        assert_eq!(outcome.usage.cost_usd, total_cost_usd);
        assert_eq!(outcome.usage.models, model_usage);
        assert_eq!(
            outcome.usage.tool_calls_total,
            turns.parse::<u32>().expect("number") - 1
        );
        assert!(total_cost_usd > 0.0);
        assert!((t.state.cost_usd - total_cost_usd).abs() < 1e-12);
    }
}

#[test]
fn each_response_is_two_lines_sharing_a_message_id() {
    let t = transcript(
        args(&[]),
        knobs(&[]),
        SESSION,
        SessionState::default(),
        None,
    );
    let events: Vec<StreamEvent> = t
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(parse_line)
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            StreamEvent::Init { .. } => "init",
            StreamEvent::Assistant { .. } => "assistant",
            StreamEvent::User => "user",
            StreamEvent::Result { .. } => "result",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "init",
            "assistant",
            "assistant",
            "user",
            "assistant",
            "result"
        ]
    );
    let (
        StreamEvent::Assistant {
            message_id: a,
            usage: ua,
            ..
        },
        StreamEvent::Assistant {
            message_id: b,
            usage: ub,
            tool_uses,
            ..
        },
    ) = (&events[1], &events[2])
    else {
        panic!("not assistants");
    };
    assert_eq!((a, ua), (b, ub));
    assert_eq!(ua.output, 1, "start-of-response placeholder");
    assert_eq!(tool_uses, &["Bash"]);
    // The live estimate counts the shared message once.
    let mut acc = Accounting::new(None);
    events[..3].iter().for_each(|e| {
        acc.observe(e);
    });
    assert_eq!(acc.usage().tokens, *ua);
}

#[test]
fn resumed_chain_is_cumulative_and_charged_by_difference() {
    let mut state = SessionState::default();
    let mut prior = None;
    let mut charged = 0.0;
    let mut step_costs = Vec::new();
    for step in 0..3 {
        let a = if step == 0 {
            args(&[])
        } else {
            args(&["--resume", SESSION, "--", "and then some more"])
        };
        let before = state.cost_usd;
        let t = transcript(a, knobs(&[]), SESSION, state.clone(), None);
        let Some(StreamEvent::Result { total_cost_usd, .. }) = result_of(&t.stdout) else {
            panic!("no result");
        };
        // serde_json's default float parser may be one ULP off, hence the tolerance.
        assert!(
            (total_cost_usd - t.state.cost_usd).abs() < 1e-12,
            "cumulative like the CLI"
        );
        let (acc, outcome) = account(&t.stdout, prior.clone(), t.exit_code);
        let own = t.state.cost_usd - before;
        assert!((outcome.usage.cost_usd - own).abs() < 1e-12, "step {step}");
        assert!(own > 0.0);
        step_costs.push(own);
        charged += outcome.usage.cost_usd;
        prior = acc.session_totals();
        state = t.state;
    }
    assert!((charged - state.cost_usd).abs() < 1e-12);
    assert!(
        step_costs[1] != step_costs[0],
        "later steps read the cache instead of writing it"
    );
}

#[test]
fn max_turns_and_max_budget_stop_with_errors() {
    let t = transcript(
        args(&["--max-turns", "1", "--session-id", SESSION, "--", "x"]),
        knobs(&[("ORCH_SIM_TURNS", "5")]),
        SESSION,
        SessionState::default(),
        None,
    );
    let Some(StreamEvent::Result {
        subtype,
        is_error,
        num_turns,
        ..
    }) = result_of(&t.stdout)
    else {
        panic!("no result");
    };
    assert_eq!(
        (subtype.as_str(), is_error, num_turns, t.exit_code),
        ("error_max_turns", true, Some(2), 1)
    );

    let one = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_TURNS", "1")]),
        SESSION,
        SessionState::default(),
        None,
    );
    let cap = format!("{}", one.state.cost_usd * 1.5);
    let a = args(&[
        "--max-budget-usd",
        &cap,
        "--session-id",
        SESSION,
        "--",
        "list the files",
    ]);
    let t = transcript(
        a,
        knobs(&[("ORCH_SIM_TURNS", "9")]),
        SESSION,
        SessionState::default(),
        None,
    );
    let Some(StreamEvent::Result {
        subtype,
        total_cost_usd,
        ..
    }) = result_of(&t.stdout)
    else {
        panic!("no result");
    };
    assert_eq!((subtype.as_str(), t.exit_code), ("error_max_budget_usd", 1));
    assert!(
        total_cost_usd >= one.state.cost_usd * 1.5,
        "stops after crossing, not before"
    );
    let (_, outcome) = account(&t.stdout, None, t.exit_code);
    assert!(!outcome.success);
    assert_eq!(outcome.usage.cost_usd, total_cost_usd);
}

#[test]
fn sigint_writes_a_result_with_the_cost_so_far() {
    // After init and the first response's two assistant lines.
    let t = transcript(
        args(&[]),
        knobs(&[]),
        SESSION,
        SessionState::default(),
        Some(3),
    );
    let Some(StreamEvent::Result {
        subtype,
        is_error,
        total_cost_usd,
        ..
    }) = result_of(&t.stdout)
    else {
        panic!("no result");
    };
    assert_eq!(
        (subtype.as_str(), is_error, t.exit_code),
        ("error_during_execution", true, 0)
    );
    assert!(total_cost_usd > 0.0);
    let (_, outcome) = account(&t.stdout, None, t.exit_code);
    assert_eq!(outcome.usage.cost_usd, total_cost_usd);
    assert!(!outcome.success);
}

#[test]
fn knobs_shape_the_output() {
    let error = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_IS_ERROR", "1"), ("ORCH_SIM_EXIT", "7")]),
        SESSION,
        SessionState::default(),
        None,
    );
    let Some(StreamEvent::Result {
        subtype, is_error, ..
    }) = result_of(&error.stdout)
    else {
        panic!("no result");
    };
    assert_eq!(
        (subtype.as_str(), is_error, error.exit_code),
        ("success", true, 7)
    );

    let none = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_NO_RESULT", "1")]),
        SESSION,
        SessionState::default(),
        None,
    );
    assert_eq!((result_of(&none.stdout), none.exit_code), (None, 0));
    let (_, outcome) = account(&none.stdout, None, none.exit_code);
    assert!(outcome.usage.is_estimate && outcome.usage.cost_usd > 0.0 && !outcome.success);

    let garbage = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_GARBAGE", "1")]),
        SESSION,
        SessionState::default(),
        None,
    );
    assert!(
        std::str::from_utf8(&garbage.stdout).is_err(),
        "has non-UTF-8 lines"
    );
    let (_, noisy) = account(&garbage.stdout, None, garbage.exit_code);
    let (_, clean) = account(
        &transcript(
            args(&[]),
            knobs(&[]),
            SESSION,
            SessionState::default(),
            None,
        )
        .stdout,
        None,
        0,
    );
    assert_eq!(noisy.usage, clean.usage);

    let huge = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_HUGE_LINE_MB", "2")]),
        SESSION,
        SessionState::default(),
        None,
    );
    let longest = huge
        .stdout
        .split(|b| *b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest >= 2_000_000);
    assert_eq!(account(&huge.stdout, None, 0).1.usage, clean.usage);

    let stream = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_STREAM_MB", "3")]),
        SESSION,
        SessionState::default(),
        None,
    );
    assert!(stream.stdout.len() >= 3_000_000);
    assert_eq!(account(&stream.stdout, None, 0).1.usage, clean.usage);

    let big = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_TOKENS_PER_TURN", "1000000")]),
        SESSION,
        SessionState::default(),
        None,
    );
    assert!(big.state.cost_usd > 100.0 * clean.usage.cost_usd);
}

const TASKS_SCHEMA: &str = r#"{"type":"object","properties":{"tasks":{"type":"array","items":{"type":"string"}}},"required":["tasks"]}"#;

fn with_schema(env: &[(&str, &str)]) -> Transcript {
    transcript(
        args(&["--json-schema", TASKS_SCHEMA]),
        knobs(env),
        SESSION,
        SessionState::default(),
        None,
    )
}

fn lines_of(stdout: &[u8]) -> Vec<serde_json::Value> {
    stdout
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

#[test]
fn json_schema_ends_with_a_structured_output_call_and_a_result_carrying_it() {
    let t = with_schema(&[]);
    assert_eq!(t.exit_code, 0);
    let lines = lines_of(&t.stdout);
    // As Claude Code 2.1.331: the last response's text, then its StructuredOutput tool_use under
    // the same message id, the tool's result, and the result line.
    let n = lines.len();
    let (text, call, user, result) = (&lines[n - 4], &lines[n - 3], &lines[n - 2], &lines[n - 1]);
    assert_eq!(text["message"]["id"], call["message"]["id"]);
    let block = &call["message"]["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], STRUCTURED_OUTPUT_TOOL);
    assert_eq!(
        block["input"],
        serde_json::json!({ "tasks": ["task 1", "task 2", "task 3"] })
    );
    assert_eq!(user["message"]["content"][0]["tool_use_id"], block["id"]);
    assert_eq!(result["structured_output"], block["input"]);
    assert_eq!(result["result"], block["input"].to_string());
    // Through orch's parser and accounting, into the outcome, valid against the schema.
    let (_, outcome) = account(&t.stdout, None, t.exit_code);
    assert!(outcome.success);
    let structured = outcome
        .result
        .and_then(|r| r.structured)
        .expect("structured");
    let schema: serde_json::Value = serde_json::from_str(TASKS_SCHEMA).unwrap();
    assert_eq!(
        crate::agent::structured::validate(&schema, &structured),
        Ok(())
    );
    // The same argv gives the same answer.
    assert_eq!(with_schema(&[]).stdout, t.stdout);
}

#[test]
fn orch_sim_items_sets_the_number_of_array_items() {
    for n in [0usize, 1, 200] {
        let t = with_schema(&[("ORCH_SIM_ITEMS", &n.to_string())]);
        let Some(StreamEvent::Result {
            structured_output: Some(v),
            ..
        }) = result_of(&t.stdout)
        else {
            panic!("no structured output");
        };
        assert_eq!(v["tasks"].as_array().map(Vec::len), Some(n));
    }
    let e = Knobs::from_lookup(|k| (k == "ORCH_SIM_ITEMS").then(|| "many".into())).unwrap_err();
    assert!(e.contains("ORCH_SIM_ITEMS"), "{e}");
}

#[test]
fn orch_sim_structured_makes_the_answer_missing_invalid_or_exhausted() {
    let t = with_schema(&[("ORCH_SIM_STRUCTURED", "missing")]);
    let Some(StreamEvent::Result {
        is_error,
        structured_output,
        ..
    }) = result_of(&t.stdout)
    else {
        panic!("no result");
    };
    assert!(
        !is_error,
        "the real CLI ends with success when the model never calls the tool"
    );
    assert_eq!(structured_output, None);
    assert!(!String::from_utf8_lossy(&t.stdout).contains(STRUCTURED_OUTPUT_TOOL));

    let t = with_schema(&[("ORCH_SIM_STRUCTURED", "invalid")]);
    let (_, outcome) = account(&t.stdout, None, t.exit_code);
    let structured = outcome
        .result
        .and_then(|r| r.structured)
        .expect("an answer");
    let schema: serde_json::Value = serde_json::from_str(TASKS_SCHEMA).unwrap();
    assert!(crate::agent::structured::validate(&schema, &structured).is_err());

    let t = with_schema(&[("ORCH_SIM_STRUCTURED", "exhausted")]);
    assert_eq!(t.exit_code, 1);
    let (_, outcome) = account(&t.stdout, None, t.exit_code);
    let result = outcome.result.expect("a result");
    assert!(result.is_error);
    assert_eq!(result.subtype, "error_max_structured_output_retries");
    assert_eq!(result.structured, None);

    let e =
        Knobs::from_lookup(|k| (k == "ORCH_SIM_STRUCTURED").then(|| "maybe".into())).unwrap_err();
    assert!(e.contains("valid, missing, invalid, exhausted"), "{e}");
}

#[test]
fn without_json_schema_nothing_structured_is_written() {
    let t = transcript(
        args(&[]),
        knobs(&[]),
        SESSION,
        SessionState::default(),
        None,
    );
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(!text.contains("structured_output") && !text.contains(STRUCTURED_OUTPUT_TOOL));
    let (_, outcome) = account(&t.stdout, None, t.exit_code);
    assert_eq!(outcome.result.expect("a result").structured, None);
}

#[test]
fn zero_turns_with_json_schema_still_answers() {
    let t = with_schema(&[("ORCH_SIM_TURNS", "0")]);
    let Some(StreamEvent::Result {
        structured_output, ..
    }) = result_of(&t.stdout)
    else {
        panic!("no result");
    };
    assert_eq!(
        structured_output,
        Some(serde_json::json!({ "tasks": ["task 1", "task 2", "task 3"] }))
    );
}

#[test]
fn a_json_schema_that_is_not_json_or_not_a_schema_is_refused_like_the_cli() {
    let not_json = SimArgs::parse(&argv(&["--json-schema", "nope", "--", "x"])).unwrap_err();
    assert_eq!(not_json.exit_code, 1);
    assert!(
        not_json
            .message
            .starts_with("Error: --json-schema is not valid JSON: "),
        "{}",
        not_json.message
    );
    let bad = r#"{"type":"object","properties":{"a":{"type":"strin"}}}"#;
    let not_schema = SimArgs::parse(&argv(&["--json-schema", bad, "--", "x"])).unwrap_err();
    assert_eq!(not_schema.exit_code, 1);
    assert!(
        not_schema
            .message
            .starts_with("Error: --json-schema is not a valid JSON Schema: "),
        "{}",
        not_schema.message
    );
    let ok = SimArgs::parse(&argv(&["--json-schema", TASKS_SCHEMA, "--", "x"])).unwrap();
    assert_eq!(ok.json_schema, serde_json::from_str(TASKS_SCHEMA).ok());
}

/// Each `ORCH_SIM_FAIL` mode writes what Claude Code writes, and orch's parser reads it so.
#[test]
fn failure_modes_write_what_the_cli_writes_and_orch_reads_them() {
    use crate::agent::stream::StreamEvent as E;
    let reset = 1_750_000_000;
    for (mode, api_retries, rejected, text) in [
        ("overloaded", 0, false, "API Error: 529"),
        ("api_retry", 10, false, "API Error: 529"),
        (
            "usage_limit",
            0,
            false,
            "Claude AI usage limit reached|1750000000",
        ),
        (
            "rate_limit",
            0,
            true,
            "Claude AI usage limit reached|1750000000",
        ),
    ] {
        let mut k = knobs(&[("ORCH_SIM_FAIL", mode), ("ORCH_SIM_FAIL_AFTER_TURNS", "1")]);
        k.failing = Some(reset);
        let t = transcript(args(&[]), k, SESSION, SessionState::default(), None);
        assert_eq!(t.exit_code, 1, "{mode}");
        let events: Vec<StreamEvent> = t
            .stdout
            .split(|b| *b == b'\n')
            .filter_map(parse_line)
            .collect();
        let retries = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    E::ApiRetry {
                        error_status: Some(529),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(retries, api_retries, "{mode}");
        let limited = events.iter().any(|e| {
            matches!(e, E::RateLimit { status, resets_at: Some(r), .. } if status == "rejected" && *r == reset)
        });
        assert_eq!(limited, rejected, "{mode}");
        let (_, outcome) = account(&t.stdout, None, t.exit_code);
        let result = outcome.result.expect("a result");
        assert!(result.is_error, "{mode}");
        assert!(result.text.unwrap().starts_with(text), "{mode}");
        // One normal response came first: the session has turns and a cost.
        assert_eq!(t.state.responses, 1, "{mode}");
        assert!(outcome.usage.cost_usd > 0.0, "{mode}");
    }
    // Without `failing` (the driver counted past ORCH_SIM_FAIL_ATTEMPTS) the run succeeds.
    let t = transcript(
        args(&[]),
        knobs(&[("ORCH_SIM_FAIL", "overloaded")]),
        SESSION,
        SessionState::default(),
        None,
    );
    assert_eq!(t.exit_code, 0);
    assert!(knobs(&[]).fail.is_none());
    assert!(Knobs::from_lookup(|k| (k == "ORCH_SIM_FAIL").then(|| "nope".into())).is_err());
}

#[test]
fn invocations_are_counted_per_session_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(state::count_invocation(dir.path(), "s1").unwrap(), 1);
    assert_eq!(state::count_invocation(dir.path(), "s1").unwrap(), 2);
    assert_eq!(state::count_invocation(dir.path(), "s2").unwrap(), 1);
}
