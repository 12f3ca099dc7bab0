//! The scenarios, each one `orch run` of a manifest with the real CLI against a scripted mock.
//! Each asserts what orch recorded (status, steps, argv) and that orch's tokens and dollars equal
//! the CLI's own `result` figures.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::assert_no_survivors;
use crate::mock::{Reply, Usage};
use crate::support::{Scenario, close, result_line, signal, status, steps, wait_exit};

/// Agent defaults for every scenario: the mock's model, tools allowed without asking.
const DEFAULTS: &str = r#"
[settings]
startup_delay = "0s"
[defaults]
model = "claude-opus-5-5"
permission_mode = "bypassPermissions"
allowed_tools = ["Bash"]
"#;

fn manifest(rest: &str) -> String {
    format!("{DEFAULTS}\n{rest}")
}

#[test]
fn a_plain_turn() {
    let s = Scenario::new(
        &manifest("[jobs.hello]\nprompt = \"say hello\"\n"),
        vec![Reply::text("Hello from the mock.", Usage::WARM)],
    );
    let out = s.run();
    assert_eq!(out.code, 0, "{}", out.output);
    let v = s.results();
    assert_eq!(status(&v, "hello"), "completed");
    let step = &steps(&v, "hello")[0];
    assert!(step["argv"].as_array().unwrap().iter().any(|a| a == "--session-id"));
    assert_eq!(step["result"]["text"], "Hello from the mock.");
    let calls = s.mock.message_requests();
    assert_eq!(calls.len(), 1, "one API call");
    assert_eq!(calls[0].body["stream"], true);
    let orch = s.assert_figures("plain turn", &v, "hello");
    // Independent of both: what the mock served.
    assert_eq!(orch.tokens, Usage::WARM.total());
}
