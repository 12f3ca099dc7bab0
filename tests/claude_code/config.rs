//! A job's Claude Code configuration, seen where it matters: in the requests the real CLI sends
//! the mock. `append_system_prompt` is in the `system` field, a `disallowed_tools` tool is gone
//! from `tools`, an `mcp_config` server of the test's own (tests/fixtures/mcp/echo_server.py, a
//! stdio MCP server in plain Python) offers its tool, and each holds on the `--resume`d step of a
//! chain as well as on the first. A job without them, run after it against the same mock, is
//! the control: its request has the tool, no server and no appended text.

use serde_json::Value;

use crate::harness::root;
use crate::mock::{Reply, Request, Usage};
use crate::support::{Scenario, status, steps};

const MARKER: &str = "Always answer in the voice of orch-config-marker-7.";
const MCP_TOOL: &str = "mcp__fixture__echo_marker";

/// Every text of the request's `system` field (a string or text blocks).
fn system_text(r: &Request) -> String {
    match &r.body["system"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

fn tool_names(r: &Request) -> Vec<String> {
    r.body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn system_prompt_disallowed_tools_and_an_mcp_server_reach_every_request_of_a_chain() {
    let server = root().join("tests/fixtures/mcp/echo_server.py");
    let manifest = format!(
        r#"
[settings]
startup_delay = "0s"
[defaults]
model = "claude-opus-5-5"
permission_mode = "bypassPermissions"

[jobs.configured]
pre_commands = ["first, look around"]
prompt = "second, answer"
append_system_prompt = "{MARKER}"
disallowed_tools = ["Bash"]
mcp_config = {{ mcpServers = {{ fixture = {{ command = "python3", args = ["{server}"] }} }} }}
strict_mcp_config = true

[jobs.control]
needs = ["configured"]
prompt = "answer too"
"#,
        server = server.display()
    );
    let s = Scenario::new(
        &manifest,
        vec![
            Reply::text("One.", Usage::COLD),
            Reply::text("Two.", Usage::WARM),
            Reply::text("Three.", Usage::WARM),
        ],
    )
    // The CLI defers MCP tools behind its ToolSearch tool by default (named in the system
    // prompt, schema loaded on demand); without tool search each is a tool of the request.
    .env("ENABLE_TOOL_SEARCH", "false");
    let out = s.run();
    assert_eq!(out.code, 0, "{}", out.output);
    let v = s.results();
    assert_eq!(status(&v, "configured"), "completed");
    assert_eq!(status(&v, "control"), "completed");
    let chain = steps(&v, "configured");
    assert_eq!(chain.len(), 2);
    assert!(
        chain[1]["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .any(|a| a == "--resume"),
        "the second step resumes the session"
    );

    let calls = s.mock.message_requests();
    assert_eq!(calls.len(), 3, "two steps and the control, one call each");
    for (i, call) in calls[..2].iter().enumerate() {
        let system = system_text(call);
        assert!(
            system.contains(MARKER),
            "call {i}: no appended text in {system}"
        );
        let tools = tool_names(call);
        assert!(
            !tools.iter().any(|t| t == "Bash"),
            "call {i} offers Bash: {tools:?}"
        );
        assert!(
            tools.iter().any(|t| t == MCP_TOOL),
            "call {i} lacks {MCP_TOOL}: {tools:?}"
        );
    }
    // The resumed step really resumed: it carries the first step's conversation.
    assert!(calls[1].message_count() > calls[0].message_count());
    // The control: the CLI's defaults, so the checks above could fail.
    let control = &calls[2];
    assert!(!system_text(control).contains(MARKER));
    let tools = tool_names(control);
    assert!(tools.iter().any(|t| t == "Bash"), "{tools:?}");
    assert!(!tools.iter().any(|t| t == MCP_TOOL), "{tools:?}");
    s.assert_figures("configured chain", &v, "configured");
}
