//! Accounting tests: every real fixture, and a synthetic `--resume` chain.

use super::*;
use crate::agent::prices::price_for;
use crate::agent::stream::parse_line;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                "../../../tests/fixtures/claude-code-2.1.331/",
                $name,
                ".jsonl"
            ))
            .as_slice(),
        )
    };
}

const FIXTURES: &[(&str, &[u8])] = &[
    fixture!("text-only"),
    fixture!("tool-use-two-blocks-one-message"),
    fixture!("error-max-turns"),
    fixture!("error-max-budget-usd"),
    fixture!("interrupted-by-sigint"),
    fixture!("api-error-529-after-retries"),
    fixture!("killed-by-sigterm-no-result"),
];

fn fixture(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .expect("known fixture")
}

fn events(bytes: &[u8]) -> Vec<StreamEvent<'_>> {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(parse_line)
        .collect()
}

fn run(bytes: &[u8], prior: Option<SessionTotals>, exit: Option<i32>) -> (Accounting, Outcome) {
    let mut acc = Accounting::new(prior);
    for ev in events(bytes) {
        acc.observe(&ev);
    }
    let outcome = acc.finish(exit);
    (acc, outcome)
}

fn opus(tokens: TokenCounts) -> f64 {
    price_for("claude-opus-5-5").expect("priced").cost(&tokens)
}

#[test]
fn every_fixture_with_a_result_matches_it_exactly() {
    for (name, bytes) in FIXTURES {
        let Some(StreamEvent::Result {
            total_cost_usd,
            model_usage,
            ..
        }) = events(bytes)
            .into_iter()
            .find(|e| matches!(e, StreamEvent::Result { .. }))
        else {
            continue;
        };
        let (_, outcome) = run(bytes, None, Some(0));
        let usage = &outcome.usage;
        assert!(!usage.is_estimate, "{name}");
        assert_eq!(usage.cost_usd, total_cost_usd, "{name}");
        let mut tokens = TokenCounts::default();
        model_usage.values().for_each(|m| tokens.add(&m.tokens));
        assert_eq!(usage.tokens, tokens, "{name}");
        assert_eq!(usage.models, model_usage, "{name}");
        assert!(!usage.models.contains_key(SYNTHETIC_MODEL), "{name}");
    }
}

#[test]
fn text_only_succeeds_with_its_totals() {
    let (acc, outcome) = run(fixture("text-only"), None, Some(0));
    assert!(outcome.success);
    let usage = acc.usage();
    assert_eq!(usage.cost_usd, 0.004172);
    assert_eq!(usage.total_tokens(), 8 + 12 + 12000 + 300);
    assert_eq!(usage.model.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(
        usage.session_id.as_deref(),
        Some("64d2903f-9641-4e77-9203-03033ed8ea1e")
    );
    assert_eq!(usage.num_turns, Some(1));
    assert_eq!(usage.tool_calls_total, 0);
    // A non-zero exit code fails a step even with a clean result.
    assert!(!run(fixture("text-only"), None, Some(1)).1.success);
    assert!(!run(fixture("text-only"), None, None).1.success);
}

#[test]
fn two_blocks_of_one_message_are_counted_once() {
    let evs = events(fixture("tool-use-two-blocks-one-message"));
    let mut acc = Accounting::new(None);
    let mut updates = Vec::new();
    for ev in &evs[..3] {
        updates.extend(acc.observe(ev));
    }
    let one_message = TokenCounts {
        input: 3,
        output: 1,
        cache_read: 0,
        cache_creation: 12000,
        cache_creation_5m: 10000,
        cache_creation_1h: 2000,
    };
    let usage = acc.usage();
    assert!(usage.is_estimate);
    assert_eq!(usage.tokens, one_message);
    assert!((usage.cost_usd - opus(one_message)).abs() < 1e-12);
    assert_eq!(usage.tool_calls.get("Bash"), Some(&1));
    // One update for the message's usage, one for its tool call.
    assert_eq!(updates.len(), 2);
    // The same line seen again changes nothing.
    assert_eq!(acc.observe(&evs[2]), None);
    assert_eq!(acc.usage().tool_calls_total, 1);
    for ev in &evs[3..] {
        acc.observe(ev);
    }
    let outcome = acc.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(outcome.usage.cost_usd, 0.071324);
    assert_eq!(outcome.usage.tokens.output, 69);
    assert_eq!(outcome.usage.tool_calls_total, 1);
}

#[test]
fn api_error_529_is_not_success_and_skips_the_synthetic_message() {
    let bytes = fixture("api-error-529-after-retries");
    let evs = events(bytes);
    let mut acc = Accounting::new(None);
    for ev in &evs[..evs.len() - 1] {
        assert_eq!(acc.observe(ev), None, "no usage before the result: {ev:?}");
    }
    assert!(acc.usage().models.is_empty());
    let (_, outcome) = run(bytes, None, Some(1));
    assert!(!outcome.success);
    let result = outcome.result.expect("has a result");
    assert!(result.is_error);
    assert_eq!(result.subtype, "success");
    assert_eq!(result.api_error_status, Some(529));
    assert_eq!(outcome.usage.api_retries, 2);
    assert_eq!(outcome.usage.cost_usd, 0.0);
    assert_eq!(outcome.usage.total_tokens(), 0);
    // Even a zero exit code does not make an is_error result a success.
    assert!(!run(bytes, None, Some(0)).1.success);
}

#[test]
fn limits_and_interruptions_are_failures_with_their_cost() {
    let cases = [
        ("error-max-turns", "error_max_turns", 0.067152, 1),
        ("error-max-budget-usd", "error_max_budget_usd", 0.134304, 2),
        (
            "interrupted-by-sigint",
            "error_during_execution",
            0.066152,
            0,
        ),
    ];
    for (name, subtype, cost, tools) in cases {
        let exit = if name == "interrupted-by-sigint" {
            0
        } else {
            1
        };
        let (_, outcome) = run(fixture(name), None, Some(exit));
        assert!(!outcome.success, "{name}");
        assert_eq!(
            outcome.result.map(|r| r.subtype).as_deref(),
            Some(subtype),
            "{name}"
        );
        assert_eq!(outcome.usage.cost_usd, cost, "{name}");
        assert!(!outcome.usage.is_estimate, "{name}");
        assert_eq!(outcome.usage.tool_calls_total, tools, "{name}");
    }
}

#[test]
fn killed_by_sigterm_stays_an_estimate() {
    let (acc, outcome) = run(fixture("killed-by-sigterm-no-result"), None, Some(143));
    assert!(!outcome.success);
    assert_eq!(outcome.result, None);
    assert!(outcome.usage.is_estimate);
    assert_eq!(outcome.usage.cost_usd, 0.0);
    assert_eq!(
        outcome.usage.session_id.as_deref(),
        Some("94204c0c-421d-415d-b33a-d5cba9dae6ff")
    );
    assert_eq!(acc.session_totals(), None);
}

#[test]
fn interrupted_estimate_is_replaced_by_the_result() {
    let evs = events(fixture("interrupted-by-sigint"));
    let mut acc = Accounting::new(None);
    let estimate = evs
        .iter()
        .filter_map(|e| acc.observe(e))
        .next()
        .expect("an update");
    assert!(estimate.is_estimate);
    assert!(estimate.cost_usd > 0.0);
    let last = evs
        .iter()
        .filter_map(|e| acc.observe(e))
        .last()
        .expect("the result");
    assert!(!last.is_estimate);
    assert_eq!(last.cost_usd, 0.066152);
}

#[test]
fn rate_limits_are_recorded() {
    let line = br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1771390800,"rateLimitType":"five_hour"}}"#;
    let mut acc = Accounting::new(None);
    assert_eq!(acc.observe(&parse_line(line).expect("parses")), None);
    assert_eq!(
        acc.usage().rate_limits,
        vec![RateLimitRecord {
            status: "allowed_warning".into(),
            resets_at: Some(1771390800),
            rate_limit_type: Some("five_hour".into()),
            utilization: None,
        }]
    );
}

/// One step of a synthetic session whose result carries cumulative figures.
fn resumed_step(session: &str, step: u32, cumulative: (u64, u64, f64)) -> String {
    let (input, output, cost) = cumulative;
    format!(
        concat!(
            r#"{{"type":"system","subtype":"init","session_id":"{s}","model":"claude-opus-5-5"}}"#,
            "\n",
            r#"{{"type":"assistant","message":{{"id":"msg_{n}","model":"claude-opus-5-5","content":[{{"type":"tool_use","id":"toolu_{n}","name":"Read","input":{{}}}}],"usage":{{"input_tokens":10,"output_tokens":1}}}},"session_id":"{s}"}}"#,
            "\n",
            r#"{{"type":"result","subtype":"success","is_error":false,"session_id":"{s}","total_cost_usd":{c},"usage":{{"input_tokens":10,"output_tokens":5}},"modelUsage":{{"claude-opus-5-5":{{"inputTokens":{i},"outputTokens":{o},"costUSD":{c}}}}},"num_turns":1}}"#,
            "\n"
        ),
        s = session,
        n = step,
        i = input,
        o = output,
        c = cost
    )
}

#[test]
fn resumed_chain_charges_each_step_its_difference() {
    let cumulative = [(10, 100, 0.25), (25, 180, 0.625), (40, 300, 1.125)];
    let expected = [(10, 100, 0.25), (15, 80, 0.375), (15, 120, 0.5)];
    let mut prior = None;
    let mut charged = 0.0;
    for (step, (cum, want)) in cumulative.iter().zip(expected).enumerate() {
        let transcript = resumed_step("sess-1", step as u32, *cum);
        let (acc, outcome) = run(transcript.as_bytes(), prior.clone(), Some(0));
        assert!(outcome.success);
        let usage = &outcome.usage;
        assert_eq!(
            (usage.tokens.input, usage.tokens.output),
            (want.0, want.1),
            "step {step}"
        );
        assert!(
            (usage.cost_usd - want.2).abs() < 1e-12,
            "step {step}: {}",
            usage.cost_usd
        );
        assert_eq!(usage.tool_calls_total, 1);
        charged += usage.cost_usd;
        prior = acc.session_totals();
        assert_eq!(prior.as_ref().map(|p| p.cost_usd), Some(cum.2));
    }
    assert!((charged - 1.125).abs() < 1e-12);
}

#[test]
fn a_result_below_the_prior_is_a_fresh_session() {
    let prior = SessionTotals {
        cost_usd: 5.0,
        models: BTreeMap::new(),
        basis: None,
    };
    let transcript = resumed_step("sess-2", 0, (10, 100, 0.25));
    let (_, outcome) = run(transcript.as_bytes(), Some(prior), Some(0));
    assert_eq!(outcome.usage.cost_usd, 0.25);
    assert_eq!(outcome.usage.tokens.output, 100);
}

#[test]
fn step_usage_round_trips_through_json() {
    let (_, outcome) = run(fixture("tool-use-two-blocks-one-message"), None, Some(0));
    let json = serde_json::to_string(&outcome).expect("serializes");
    let back: Outcome = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, outcome);
}

#[test]
fn anomalies_are_reported_once_per_message_and_once_for_the_result() {
    let big = r#"{"type":"assistant","message":{"id":"m1","model":"claude-test-x","usage":{"input_tokens":10000000000000000000,"output_tokens":1}}}"#;
    let result = r#"{"type":"result","subtype":"success","is_error":false,"total_cost_usd":"NaN","usage":{"input_tokens":10000000000000000000,"output_tokens":2},"modelUsage":{"claude-test-x":{"inputTokens":10000000000000000000,"outputTokens":2,"costUSD":0.5}}}"#;
    let mut acc = Accounting::new(None);
    for line in [big, big] {
        acc.observe(&parse_line(line.as_bytes()).expect("parsed"));
    }
    let first = acc.take_anomalies();
    assert_eq!(
        first.len(),
        1,
        "a repeated message line is one anomaly: {first:?}"
    );
    assert!(acc.take_anomalies().is_empty(), "taken once");
    assert_eq!(acc.usage().tokens.input, crate::agent::stream::TOKEN_CAP);
    acc.observe(&parse_line(result.as_bytes()).expect("parsed"));
    let fields: Vec<String> = acc.take_anomalies().into_iter().map(|a| a.field).collect();
    assert_eq!(
        fields,
        [
            "usage.input_tokens",
            "modelUsage.claude-test-x.inputTokens",
            "total_cost_usd"
        ]
    );
    let outcome = acc.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(
        outcome.usage.tokens.total(),
        crate::agent::stream::TOKEN_CAP + 2
    );
    assert_eq!(
        outcome.usage.cost_usd, 0.5,
        "the rejected total falls back to the models'"
    );
}

/// A `--resume` step that streamed one message with `streamed` input tokens and whose result
/// reports `reported` input tokens, 50 output tokens and `cost` dollars (as `subtype`).
fn resumed_result(streamed: u64, reported: u64, cost: f64, subtype: &str) -> String {
    let is_error = subtype != "success";
    format!(
        concat!(
            r#"{{"type":"system","subtype":"init","session_id":"s","model":"claude-opus-5-5"}}"#,
            "\n",
            r#"{{"type":"assistant","message":{{"id":"msg_r","model":"claude-opus-5-5","content":[],"usage":{{"input_tokens":{s},"output_tokens":1}}}},"session_id":"s"}}"#,
            "\n",
            r#"{{"type":"result","subtype":"{sub}","is_error":{e},"session_id":"s","total_cost_usd":{c},"usage":{{"input_tokens":{s},"output_tokens":5}},"modelUsage":{{"claude-opus-5-5":{{"inputTokens":{r},"outputTokens":50,"costUSD":{c}}}}},"num_turns":1}}"#,
            "\n"
        ),
        s = streamed,
        r = reported,
        c = cost,
        sub = subtype,
        e = is_error,
    )
}

/// The session's totals after a first step of 30 input and 20 output tokens for $0.40.
fn prior_of_30() -> SessionTotals {
    let mut models = BTreeMap::new();
    models.insert(
        "claude-opus-5-5".to_string(),
        ModelUsage {
            tokens: TokenCounts {
                input: 30,
                output: 20,
                ..TokenCounts::default()
            },
            cost_usd: 0.40,
        },
    );
    SessionTotals {
        cost_usd: 0.40,
        models,
        basis: Some(CostBasis::Fresh),
    }
}

#[test]
fn a_cumulative_result_after_resume_is_charged_its_difference() {
    // Claude Code 2.1.331: the result covers the session (30 before, 40 streamed now = 70).
    let text = resumed_result(40, 70, 1.0, "success");
    let (acc, outcome) = run(text.as_bytes(), Some(prior_of_30()), Some(0));
    let usage = &outcome.usage;
    assert_eq!(usage.cost_basis, Some(CostBasis::Cumulative));
    assert_eq!((usage.tokens.input, usage.tokens.output), (40, 30));
    assert!((usage.cost_usd - 0.60).abs() < 1e-12, "{}", usage.cost_usd);
    let totals = acc.session_totals().unwrap();
    assert_eq!(totals.cost_usd, 1.0);
    assert_eq!(totals.basis, Some(CostBasis::Cumulative));
}

#[test]
fn a_per_process_result_after_resume_is_charged_as_it_is() {
    // An older CLI: the result covers this process only (42 input, near the 40 it streamed);
    // taking it as cumulative would charge 12 tokens for a process that sent 40.
    let text = resumed_result(40, 42, 0.55, "success");
    let (acc, outcome) = run(text.as_bytes(), Some(prior_of_30()), Some(0));
    let usage = &outcome.usage;
    assert_eq!(usage.cost_basis, Some(CostBasis::PerProcess));
    assert_eq!((usage.tokens.input, usage.tokens.output), (42, 50));
    assert!((usage.cost_usd - 0.55).abs() < 1e-12, "{}", usage.cost_usd);
    // The session's running total adds this process's figures to the prior.
    let totals = acc.session_totals().unwrap();
    assert!((totals.cost_usd - 0.95).abs() < 1e-12);
    assert_eq!(totals.models["claude-opus-5-5"].tokens.input, 72);
    // The next step of the same older CLI is read the same way, from that total.
    let next = resumed_result(10, 11, 0.1, "success");
    let (_, outcome) = run(next.as_bytes(), Some(totals), Some(0));
    assert_eq!(outcome.usage.cost_basis, Some(CostBasis::PerProcess));
    assert_eq!(outcome.usage.tokens.input, 11);
}

#[test]
fn the_decision_ties_towards_cumulative_and_never_goes_negative() {
    assert_eq!(CostBasis::decide(70, 30, 40), CostBasis::Cumulative);
    assert_eq!(CostBasis::decide(42, 30, 40), CostBasis::PerProcess);
    // Nothing streamed (an error before any message): the session's figures, charged ~0.
    assert_eq!(CostBasis::decide(30, 30, 0), CostBasis::Cumulative);
    // Equally close: 2.1.331's meaning.
    assert_eq!(CostBasis::decide(20, 10, 10), CostBasis::Cumulative);
    assert_eq!(CostBasis::decide(5, 30, 5), CostBasis::PerProcess);
    // A cumulative cost below the prior per model is never a negative charge.
    let mut prior = prior_of_30();
    prior.models.get_mut("claude-opus-5-5").unwrap().cost_usd = 0.9;
    let text = resumed_result(40, 70, 0.9, "success");
    let (_, outcome) = run(text.as_bytes(), Some(prior), Some(0));
    assert!(outcome.usage.cost_usd >= 0.0);
    assert!(outcome.usage.models.values().all(|m| m.cost_usd >= 0.0));
}

#[test]
fn an_error_result_after_resume_keeps_its_cost() {
    // A usage-limit stop still spent money: its difference is charged, like a success's.
    let text = resumed_result(40, 70, 1.0, "error_during_execution");
    let (_, outcome) = run(text.as_bytes(), Some(prior_of_30()), Some(1));
    assert!(!outcome.success);
    assert!(!outcome.usage.is_estimate);
    assert!((outcome.usage.cost_usd - 0.60).abs() < 1e-12);
    assert_eq!(outcome.usage.tokens.input, 40);
}
