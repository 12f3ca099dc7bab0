//! Price table tests: every fixture's CLI cost is reproduced, and lookups resolve.

use super::*;
use crate::agent::stream::{StreamEvent, parse_line};

const FIXTURES: &[(&str, &str)] = &[
    (
        "text-only",
        include_str!("../../../tests/fixtures/claude-code-2.1.331/text-only.jsonl"),
    ),
    (
        "tool-use-two-blocks-one-message",
        include_str!(
            "../../../tests/fixtures/claude-code-2.1.331/tool-use-two-blocks-one-message.jsonl"
        ),
    ),
    (
        "error-max-turns",
        include_str!("../../../tests/fixtures/claude-code-2.1.331/error-max-turns.jsonl"),
    ),
    (
        "error-max-budget-usd",
        include_str!("../../../tests/fixtures/claude-code-2.1.331/error-max-budget-usd.jsonl"),
    ),
    (
        "interrupted-by-sigint",
        include_str!("../../../tests/fixtures/claude-code-2.1.331/interrupted-by-sigint.jsonl"),
    ),
    (
        "api-error-529-after-retries",
        include_str!(
            "../../../tests/fixtures/claude-code-2.1.331/api-error-529-after-retries.jsonl"
        ),
    ),
];

#[test]
fn reproduces_every_fixture_cost() {
    let mut checked = 0;
    for (name, transcript) in FIXTURES {
        for event in transcript.lines().filter_map(|l| parse_line(l.as_bytes())) {
            let StreamEvent::Result {
                total_cost_usd,
                model_usage,
                ..
            } = event
            else {
                continue;
            };
            let mut sum = 0.0;
            for (model, usage) in &model_usage {
                let price = price_for(model).expect("fixture model is priced");
                let cost = price.cost(&usage.tokens);
                assert!(
                    (cost - usage.cost_usd).abs() < 1e-9,
                    "{name}: {model} priced {cost}, CLI said {}",
                    usage.cost_usd
                );
                sum += cost;
                checked += 1;
            }
            assert!(
                (sum - total_cost_usd).abs() < 1e-9,
                "{name}: {sum} vs {total_cost_usd}"
            );
        }
    }
    assert_eq!(checked, 5, "five fixtures carry a priced modelUsage entry");
}

#[test]
fn derived_opus_5_5_prices() {
    let p = price_for("claude-opus-5-5").expect("listed");
    assert_eq!(
        (
            p.input,
            p.output,
            p.cache_write_5m,
            p.cache_write_1h,
            p.cache_read
        ),
        (4.0, 20.0, 5.0, 8.0, 0.2)
    );
}

#[test]
fn lookups_by_alias_id_date_and_family() {
    let model = |m: &str| price_for(m).map(|p| p.model);
    assert_eq!(model("opus"), Some("claude-opus-5-5"));
    assert_eq!(model("Sonnet"), Some("claude-sonnet-4-6"));
    assert_eq!(model("haiku"), Some("claude-haiku-4-5"));
    assert_eq!(
        model("claude-sonnet-4-5-20250929"),
        Some("claude-sonnet-4-5")
    );
    assert_eq!(model("claude-opus-4-1-20250805"), Some("claude-opus-4-1"));
    assert_eq!(model("claude-opus-4-20250514"), Some("claude-opus-4"));
    assert_eq!(model("claude-opus-4-5"), Some("claude-opus-4-5"));
    assert_eq!(model("claude-haiku-4-5-20251001"), Some("claude-haiku-4-5"));
    assert_eq!(model("claude-3-5-haiku-20241022"), Some("claude-3-5-haiku"));
    assert_eq!(model("claude-sonnet-4-5[1m]"), Some("claude-sonnet-4-5"));
    assert_eq!(
        model("us.anthropic.claude-sonnet-4-20250514-v1:0"),
        Some("claude-sonnet-4")
    );
    assert_eq!(model("claude-opus-4-1@20250805"), Some("claude-opus-4-1"));
    // Unknown versions fall back within their family.
    assert_eq!(model("claude-opus-4-7"), Some("claude-opus-4-6"));
    assert_eq!(model("claude-sonnet-9"), Some("claude-sonnet-4-6"));
    assert_eq!(model("claude-haiku-2"), Some("claude-3-haiku"));
    assert_eq!(model("<synthetic>"), None);
    assert_eq!(model("gpt-5"), None);
}

#[test]
fn cost_handles_unsplit_cache_writes() {
    let p = price_for("claude-sonnet-4-5").expect("listed");
    let split = TokenCounts {
        input: 1_000_000,
        output: 1_000_000,
        cache_read: 1_000_000,
        cache_creation: 2_000_000,
        cache_creation_5m: 1_000_000,
        cache_creation_1h: 1_000_000,
    };
    assert!((p.cost(&split) - (3.0 + 15.0 + 0.3 + 3.75 + 6.0)).abs() < 1e-9);
    let unsplit = TokenCounts {
        cache_creation: 1_000_000,
        ..TokenCounts::default()
    };
    assert!((p.cost(&unsplit) - 3.75).abs() < 1e-9);
}
