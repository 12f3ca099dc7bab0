//! Structured output through the real CLI's `--json-schema`: what Claude Code 2.1.331 does,
//! pinned by tests against the mock, and a pipeline whose second job is given the first job's
//! structured answer.
//!
//! What the pinned CLI does (found in its bundled JS and confirmed by the tests below):
//! - **How it asks.** `--json-schema <json>` is parsed at start-up; JSON that does not parse is
//!   `Error: --json-schema is not valid JSON: ...` and a schema its bundled Ajv rejects against
//!   the meta-schema is `Error: --json-schema is not a valid JSON Schema: ...`, both exit 1 before any request.
//!   Otherwise every request of the main loop offers one more tool, `StructuredOutput` (the JS
//!   constant `Oa = "StructuredOutput"`), whose `input_schema` is the schema exactly as given and
//!   whose description is "Use this tool to return your final response in the requested
//!   structured format. You MUST call this tool exactly once at the end of your response to
//!   provide the structured output." There is no `tool_choice`, no system-prompt text and no
//!   `output_config.format` (the API's own structured outputs, beta
//!   `structured-outputs-2025-12-15`, which the CLI uses only for some providers and models; it
//!   does not against the mock). The CLI lints the schema (`tengu_structured_output_schema_lint`): a root that is not
//!   `type: 'object'` is "root_not_object", since the API accepts only an object as a tool's
//!   input; it still sends it (the mock takes anything, the real API would refuse every request).
//! - **What the model must send back.** A `tool_use` of `StructuredOutput` whose `input` is the
//!   answer. The CLI validates it with Ajv; a match gets the `tool_result` "Structured output
//!   provided successfully" and ends the turn at once (no further request); a mismatch gets an
//!   error `tool_result`, "Output does not match required schema: /tasks/0: must be string", and
//!   the model is asked again, up to `MAX_STRUCTURED_OUTPUT_RETRIES` (default 5) calls; then the
//!   result is `subtype: "error_max_structured_output_retries"`, `is_error: true`,
//!   `terminal_reason: "structured_output_retry_exhausted"`, `errors: ["Failed to provide valid
//!   structured output after 5 attempts — last StructuredOutput error: ..."]`, exit 1.
//! - **A model that never calls it.** After a reply without the call the CLI sends one reminder,
//!   a user text "[structured-output-enforce] You MUST call the StructuredOutput tool to complete
//!   this request. Call this tool now." (`BYn`); if the next reply has no call either, the run
//!   ends with a plain **successful** result without `structured_output`: orch, not the CLI, has
//!   to fail such a job.
//! - **On stdout** (stream-json): the call is an `assistant` line with the `tool_use` (sharing its
//!   response's `message.id`), then a `user` line with the tool's result (`tool_use_result:
//!   "Structured output provided successfully"`), then the `result` line with
//!   `structured_output` (the validated `input`, derived from an internal `structured_output`
//!   attachment), `stop_reason: "tool_use"`, and `result` set to the answer as compact JSON
//!   when no text came after the call (`if(Cs===""&&Rs!==void 0)Cs=JSON.stringify(Rs)`).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::mock::{Reply, STRUCTURED_OUTPUT_TOOL, Usage};
use crate::support::{Scenario, status, steps, wait_exit};

fn tasks_schema() -> Value {
    json!({ "type": "object",
        "properties": { "tasks": { "type": "array", "items": { "type": "string" } } },
        "required": ["tasks"] })
}

/// What one direct run of the CLI wrote: its exit code and its stream-json lines.
struct CliRun {
    code: i32,
    lines: Vec<Value>,
}

impl CliRun {
    fn result(&self) -> &Value {
        self.lines
            .iter()
            .find(|l| l["type"] == "result")
            .unwrap_or_else(|| panic!("no result line: {:#?}", self.lines))
    }
}

/// `claude -p PROMPT --output-format stream-json --verbose --json-schema SCHEMA` in the
/// scenario's folder and sandbox, to the end; checks that it left no process behind.
fn run_cli(s: &Scenario, schema: &Value) -> CliRun {
    let out = std::fs::File::create(s.path().join("claude.out")).expect("claude.out");
    let schema = schema.to_string();
    let mut child = s
        .claude_command(&[
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            crate::mock::MODEL,
            "--permission-mode",
            "bypassPermissions",
            "--json-schema",
            &schema,
            "--",
            "make a plan",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(std::fs::File::create(s.path().join("claude.err")).expect("claude.err"))
        .spawn()
        .expect("claude starts");
    let code = wait_exit(&mut child, Duration::from_secs(120));
    s.assert_no_process_left();
    let text = std::fs::read_to_string(s.path().join("claude.out")).unwrap_or_default();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    CliRun { code, lines }
}

#[test]
fn the_cli_asks_through_a_structured_output_tool_and_returns_its_input() {
    let answer = json!({ "tasks": ["write the parser", "test it"] });
    let s = Scenario::new("", vec![Reply::structured(answer.clone(), Usage::COLD)]);
    let run = run_cli(&s, &tasks_schema());
    assert_eq!(run.code, 0, "{:#?}", run.lines);

    // How it asks: one more tool, the schema as its input schema, nothing forced.
    let calls = s.mock.message_requests();
    assert_eq!(
        calls.len(),
        1,
        "a valid call ends the turn: no second request"
    );
    let tool = calls[0]
        .offered_tool(STRUCTURED_OUTPUT_TOOL)
        .unwrap_or_else(|| {
            panic!(
                "no {STRUCTURED_OUTPUT_TOOL} in {:?}",
                calls[0].body["tools"]
            )
        });
    assert_eq!(tool["input_schema"], tasks_schema());
    assert!(
        tool["description"]
            .as_str()
            .is_some_and(|d| d.contains("MUST call this tool exactly once")),
        "{tool}"
    );
    assert!(
        calls[0].body.get("tool_choice").is_none(),
        "{}",
        calls[0].body
    );

    // What it writes: the call, the tool's result, and a result line carrying the answer.
    let call = run
        .lines
        .iter()
        .flat_map(|l| {
            l["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|b| b["type"] == "tool_use" && b["name"] == STRUCTURED_OUTPUT_TOOL)
        .expect("the StructuredOutput call on stdout");
    assert_eq!(call["input"], answer);
    let result = run.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["structured_output"], answer);
    assert_eq!(result["result"], answer.to_string());

    // And orch's parser takes it from that line.
    let line = result.to_string();
    let Some(orch::agent::stream::StreamEvent::Result {
        structured_output, ..
    }) = orch::agent::stream::parse_line(line.as_bytes())
    else {
        panic!("orch does not parse the result line: {line}");
    };
    assert_eq!(structured_output, Some(answer));
}

#[test]
fn a_model_that_never_calls_the_tool_is_reminded_once_then_the_run_succeeds_without_it() {
    let s = Scenario::new("", vec![Reply::text("No tool for me.", Usage::WARM)]);
    let run = run_cli(&s, &tasks_schema());
    assert_eq!(run.code, 0, "{:#?}", run.lines);
    let calls = s.mock.message_requests();
    assert_eq!(calls.len(), 2, "the answer and one reminder");
    assert!(
        calls[1].texts().iter().any(
            |t| t.contains("[structured-output-enforce]") && t.contains(STRUCTURED_OUTPUT_TOOL)
        ),
        "{:?}",
        calls[1].texts()
    );
    let result = run.result();
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert!(result.get("structured_output").is_none(), "{result}");
}

#[test]
fn answers_that_do_not_match_are_sent_back_and_after_five_the_run_fails() {
    let s = Scenario::new(
        "",
        vec![Reply::structured(json!({ "tasks": [5] }), Usage::WARM)],
    );
    let run = run_cli(&s, &tasks_schema());
    assert_eq!(run.code, 1, "{:#?}", run.lines);
    let calls = s.mock.message_requests();
    assert_eq!(
        calls.len(),
        5,
        "MAX_STRUCTURED_OUTPUT_RETRIES defaults to 5"
    );
    let refusals = calls[1].tool_results();
    assert_eq!(refusals.len(), 1, "{:?}", calls[1].body["messages"]);
    assert_eq!(refusals[0]["is_error"], true);
    assert_eq!(
        refusals[0]["content"],
        "Output does not match required schema: /tasks/0: must be string"
    );
    let result = run.result();
    assert_eq!(result["subtype"], "error_max_structured_output_retries");
    assert_eq!(result["is_error"], true);
    assert_eq!(
        result["terminal_reason"],
        "structured_output_retry_exhausted"
    );
    assert!(result.get("structured_output").is_none(), "{result}");
}

/// The manifest of the pipeline scenario: a planner with an `output_schema`, and a job whose
/// prompt takes the plan's first task.
const PIPELINE: &str = r#"
[settings]
startup_delay = "0s"
[defaults]
model = "claude-opus-5-5"
permission_mode = "bypassPermissions"
allowed_tools = ["Bash"]

[jobs.plan]
prompt = "make a plan"
output_schema = { type = "object", properties = { tasks = { type = "array", items = { type = "string" } } }, required = ["tasks"] }

[jobs.work]
needs = ["plan"]
prompt = "Do ${{ jobs.plan.outputs.structured.tasks[0] }}"
"#;

#[test]
fn a_jobs_structured_output_reaches_the_prompt_of_the_job_that_needs_it() {
    let answer = json!({ "tasks": ["rewrite the lexer", "benchmark it"] });
    let s = Scenario::new(
        PIPELINE,
        vec![
            Reply::structured(answer.clone(), Usage::COLD),
            Reply::text("Rewrote it.", Usage::WARM),
        ],
    );
    let out = s.run();
    assert_eq!(out.code, 0, "{}", out.output);
    let v = s.results();
    assert_eq!(status(&v, "plan"), "completed");
    assert_eq!(status(&v, "work"), "completed");

    // The planner: orch passed the schema, the CLI offered the tool, the answer came back.
    let step = &steps(&v, "plan")[0];
    let argv = step["argv"].as_array().unwrap();
    let at = argv
        .iter()
        .position(|a| a == "--json-schema")
        .expect("--json-schema");
    let passed: Value = serde_json::from_str(argv[at + 1].as_str().unwrap()).unwrap();
    assert_eq!(passed, tasks_schema());
    let calls = s.mock.message_requests();
    assert_eq!(calls.len(), 2, "one call per job");
    assert_eq!(
        calls[0]
            .offered_tool(STRUCTURED_OUTPUT_TOOL)
            .map(|t| &t["input_schema"]),
        Some(&tasks_schema())
    );
    assert!(calls[1].offered_tool(STRUCTURED_OUTPUT_TOOL).is_none());
    // (a) the job's structured output, in the results file.
    assert_eq!(
        v["instances"]["plan"]["outputs"]["structured"], answer,
        "{v:#}"
    );
    // (b) the dependent job's request carries the rendered prompt.
    let texts = calls[1].texts();
    assert!(
        texts.iter().any(|t| t.contains("Do rewrite the lexer")),
        "{texts:?}"
    );
    s.assert_figures("structured plan", &v, "plan");
    s.assert_figures("structured work", &v, "work");
}
