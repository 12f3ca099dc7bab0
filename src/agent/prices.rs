//! The price table of Claude models, for live cost estimates while a step runs and for
//! `orch plan` forecasts.
//!
//! Owns list prices per million tokens and model-name lookup (exact id, alias, dated id, then
//! family and version fallback). It must never be used to overrule the CLI's own
//! `total_cost_usd`: when the `result` line arrives, that figure wins.
//!
//! `claude-opus-5-5` is not a published price: it is derived from the Claude Code 2.1.331
//! fixtures (see the test `reproduces_every_fixture_cost`). Two fixtures that differ only in
//! output tokens (error-max-turns and interrupted-by-sigint: 50 tokens, $0.001 apart) fix output
//! at $20/M. With the usual cache-write multipliers (5-minute 1.25× input, 1-hour 2× input),
//! error-max-turns then gives 16 503 × input = $0.066012, so input is $4/M, and text-only gives
//! cache reads at $0.20/M. Every fixture's `costUSD` is reproduced exactly by these figures.

use crate::agent::stream::TokenCounts;
use serde::Serialize;

/// List prices of one model in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    /// Canonical model id this price belongs to.
    pub model: &'static str,
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Cache writes with the 5-minute lifetime.
    pub cache_write_5m: f64,
    /// Cache writes with the 1-hour lifetime.
    pub cache_write_1h: f64,
    /// Cache reads (hits and refreshes).
    pub cache_read: f64,
}

impl Price {
    /// Cost in US dollars of `tokens` at this price.
    ///
    /// Cache writes without a 5m/1h split (older transcripts) are charged at the 5-minute rate.
    pub fn cost(&self, tokens: &TokenCounts) -> f64 {
        let creation = tokens.cache_creation.max(
            tokens
                .cache_creation_5m
                .saturating_add(tokens.cache_creation_1h),
        );
        let write_5m = creation.saturating_sub(tokens.cache_creation_1h);
        (tokens.input as f64 * self.input
            + tokens.output as f64 * self.output
            + write_5m as f64 * self.cache_write_5m
            + tokens.cache_creation_1h as f64 * self.cache_write_1h
            + tokens.cache_read as f64 * self.cache_read)
            / 1_000_000.0
    }
}

/// A price with the standard cache multipliers of input (1.25×, 2×, 0.1×).
const fn standard(model: &'static str, input: f64, output: f64) -> Price {
    Price {
        model,
        input,
        output,
        cache_write_5m: input * 1.25,
        cache_write_1h: input * 2.0,
        cache_read: input * 0.1,
    }
}

/// Every known model, newest first within each family.
static PRICES: &[Price] = &[
    Price {
        model: "claude-opus-5-5",
        input: 4.0,
        output: 20.0,
        cache_write_5m: 5.0,
        cache_write_1h: 8.0,
        cache_read: 0.2,
    },
    standard("claude-opus-4-6", 5.0, 25.0),
    standard("claude-opus-4-5", 5.0, 25.0),
    standard("claude-opus-4-1", 15.0, 75.0),
    standard("claude-opus-4", 15.0, 75.0),
    standard("claude-3-opus", 15.0, 75.0),
    standard("claude-sonnet-4-6", 3.0, 15.0),
    standard("claude-sonnet-4-5", 3.0, 15.0),
    standard("claude-sonnet-4", 3.0, 15.0),
    standard("claude-3-7-sonnet", 3.0, 15.0),
    standard("claude-3-5-sonnet", 3.0, 15.0),
    standard("claude-haiku-4-5", 1.0, 5.0),
    standard("claude-3-5-haiku", 0.8, 4.0),
    Price {
        model: "claude-3-haiku",
        input: 0.25,
        output: 1.25,
        cache_write_5m: 0.3,
        cache_write_1h: 0.5,
        cache_read: 0.03,
    },
];

/// What Claude Code's model aliases stand for in this table.
const ALIASES: &[(&str, &str)] = &[
    ("opus", "claude-opus-5-5"),
    ("sonnet", "claude-sonnet-4-6"),
    ("haiku", "claude-haiku-4-5"),
    ("opusplan", "claude-opus-5-5"),
    ("best", "claude-opus-5-5"),
    ("default", "claude-opus-5-5"),
];

const FAMILIES: &[&str] = &["opus", "sonnet", "haiku"];

/// The price of `model`: a full id (`claude-sonnet-4-5-20250929`), a short id
/// (`claude-opus-4-5`), an alias (`opus`, `sonnet`, `haiku`), a provider-prefixed id
/// (`us.anthropic.claude-…-v1:0`) or a context suffix (`…[1m]`). An unknown version of a known
/// family gets the newest listed version not above it (else the family's oldest); anything
/// else is `None`.
pub fn price_for(model: &str) -> Option<&'static Price> {
    let name = normalize(model);
    if let Some((_, target)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
        return find(target);
    }
    find(&name).or_else(|| by_family(&name))
}

/// Every name the table knows: the aliases, then the model ids.
pub fn known_names() -> impl Iterator<Item = &'static str> {
    ALIASES
        .iter()
        .map(|(alias, _)| *alias)
        .chain(PRICES.iter().map(|p| p.model))
}

/// Whether `model` has a price ([`price_for`] finds it).
pub fn is_known(model: &str) -> bool {
    price_for(model).is_some()
}

/// Up to three known names closest to `model`, closest first, for "did you mean" hints.
pub fn closest(model: &str) -> Vec<&'static str> {
    let name = normalize(model);
    let mut scored: Vec<(f64, &'static str)> = known_names()
        .map(|known| (strsim::jaro_winkler(&name, known), known))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

fn find(id: &str) -> Option<&'static Price> {
    PRICES.iter().find(|p| p.model == id)
}

/// Lowercases and strips provider prefixes, `[1m]`-style suffixes, `-v1:0` and `-YYYYMMDD`.
fn normalize(model: &str) -> String {
    let mut s = model.trim().to_ascii_lowercase();
    if let Some(i) = s.find('[') {
        s.truncate(i);
    }
    if let Some(i) = s.find("claude-") {
        s.drain(..i);
    }
    // Vertex uses `@20250929`, Bedrock `-20250929-v1:0`.
    for sep in ['@', ':'] {
        if let Some(i) = s.find(sep) {
            s.truncate(i);
        }
    }
    if let Some(stripped) = s.strip_suffix("-v1").or_else(|| s.strip_suffix("-v2")) {
        s = stripped.to_owned();
    }
    if let Some((head, tail)) = s.rsplit_once('-')
        && tail.len() == 8
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        s = head.to_owned();
    }
    s
}

/// Family and version fallback: `claude-opus-4-7` → the newest opus at or below 4.7.
fn by_family(name: &str) -> Option<&'static Price> {
    let family = FAMILIES.iter().find(|f| name.contains(*f))?;
    let wanted = version(name);
    let mut same_family: Vec<&'static Price> =
        PRICES.iter().filter(|p| p.model.contains(family)).collect();
    same_family.sort_by_key(|p| std::cmp::Reverse(version(p.model)));
    same_family
        .iter()
        .find(|p| version(p.model) <= wanted)
        .or_else(|| same_family.last())
        .copied()
}

/// The numeric parts of a model id, in order: `claude-3-5-sonnet` → [3, 5], `claude-opus-4-1`
/// → [4, 1]. Dates are stripped by `normalize` before this is called.
fn version(name: &str) -> Vec<u32> {
    name.split(['-', '.'])
        .filter_map(|part| part.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests;
