//! orch's retries with the real CLI: a 529 that outlasts Claude Code's own retries, then orch's
//! retry continuing the session with `--resume`.

use crate::mock::{Reply, Usage};
use crate::support::{Scenario, status, steps};

#[test]
fn a_529_beyond_the_clis_retries_is_retried_by_orch_continuing_the_session() {
    let manifest = r#"
[settings]
startup_delay = "0s"
[defaults]
model = "claude-opus-5-5"
permission_mode = "bypassPermissions"
allowed_tools = ["Bash"]
[jobs.flaky]
prompt = "leave a mark, then report"
retry = { attempts = 2, backoff = "1s", jitter = false, prompt = "Go on from where you stopped." }
"#;
    let s = Scenario::new(
        manifest,
        vec![
            // The first attempt: one tool call (the session has a turn), then 529 on the call
            // and on the CLI's two retries.
            Reply::bash("echo ran > mark.txt", Usage::COLD),
            Reply::Error { status: 529 },
            Reply::Error { status: 529 },
            Reply::Error { status: 529 },
            // orch's retry.
            Reply::text("Done.", Usage::WARM),
        ],
    )
    .env("CLAUDE_CODE_MAX_RETRIES", "2");
    let out = s.run();
    assert_eq!(out.code, 0, "{}", out.output);
    let v = s.results();
    assert_eq!(status(&v, "flaky"), "completed");
    let step = &steps(&v, "flaky")[0];
    let attempts = step["attempts"].as_array().expect("two attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["kind"], "overloaded");
    assert_eq!(attempts[1]["resumed"], true);
    let argv: Vec<&str> = step["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(argv.contains(&"--resume"), "{argv:?}");
    assert_eq!(argv.last(), Some(&"Go on from where you stopped."));
    // The retry really continued the conversation: its call carries the first attempt's turn.
    let calls = s.mock.message_requests();
    assert_eq!(calls.len(), 5, "a tool turn, three 529s, the retry");
    assert!(
        calls[4].message_count() > calls[0].message_count(),
        "{} vs {}",
        calls[4].message_count(),
        calls[0].message_count()
    );
    assert!(
        calls[4]
            .texts()
            .iter()
            .any(|t| t.contains("Go on from where you stopped.")),
        "{:?}",
        calls[4].texts()
    );
    // Results and ledger hold both attempts' spend, equal to the CLI's session total.
    s.assert_figures("retry after 529", &v, "flaky");
}
