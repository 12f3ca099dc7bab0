//! The stream-json parser: one stdout line of `claude -p --output-format stream-json --verbose`
//! in, one typed [`StreamEvent`] out.
//!
//! Owns the mapping from Claude Code's wire shapes to orch's event vocabulary. It must never
//! fail on input: blank lines, garbage, non-UTF-8 and non-JSON give `None`; unknown `type`s and
//! `subtype`s give [`StreamEvent::Other`]; unknown fields and fields of an unexpected type are
//! ignored. It keeps no state (deduplication is [`crate::agent::accounting`]'s job) and it
//! parses each line in a single serde pass without building a `serde_json::Value` (but for a
//! result's `structured_output`, which is the agent's answer itself). It reads only what orch
//! uses: a `user` line (tool results) that starts with its type, as Claude Code writes it, is not
//! parsed at all (so it is `User` even when the rest of it is not JSON), and an `assistant` line
//! is read for its message alone.
//!
//! It is also where numbers are made safe: a token count is capped at [`TOKEN_CAP`] per field, a
//! cost must be finite, non-negative and at most [`COST_CAP_USD`]; whatever does not fit is
//! counted at the cap (tokens) or rejected as zero (costs) and recorded as an [`Anomaly`] on the
//! event, so nothing downstream ever sees a figure that can wrap, poison a sum, or go negative.

mod figures;
mod lenient;
mod raw;

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The most tokens orch takes from one field (`input_tokens`, ...) of one message or result.
///
/// 10^12 is about a million times the largest context window of any current model (10^6
/// tokens), so no real API response or session comes near it; yet it keeps every sum orch makes
/// far from the i64/u64 limits: 4 fields at the cap per message, summed over 10^6 messages, is
/// 4·10^18, still below i64::MAX (9.2·10^18).
pub const TOKEN_CAP: u64 = 1_000_000_000_000;

/// The most dollars orch takes from one cost field (`total_cost_usd`, `costUSD`): one million.
///
/// A whole day of the most expensive model at full speed costs a few thousand dollars; a figure
/// a thousand times that is a bug or a forged line. In the ledger's nano-dollars the cap is
/// 10^15, so thousands of capped results still sum below i64::MAX (and every sum saturates).
pub const COST_CAP_USD: f64 = 1_000_000.0;

/// A usage figure that orch could not take as Claude Code wrote it: what it was and what was
/// counted instead. Reported as a warning; never an error, never a lost line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Anomaly {
    /// Where the value was, such as `message.usage.input_tokens` or `total_cost_usd`.
    pub field: String,
    /// The value as written (a number, a string, or the JSON type it had).
    pub value: String,
    /// What is wrong with it, such as "is above the cap of 10^12 tokens".
    pub problem: String,
    /// What orch counted instead.
    pub counted: String,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {} {}; counted as {}",
            self.field, self.value, self.problem, self.counted
        )
    }
}

/// Token counts of one API response, one model or one step, as Claude Code reports them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct TokenCounts {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache (both lifetimes).
    pub cache_creation: u64,
    /// Of `cache_creation`, those written with the 5-minute lifetime.
    pub cache_creation_5m: u64,
    /// Of `cache_creation`, those written with the 1-hour lifetime.
    pub cache_creation_1h: u64,
}

impl TokenCounts {
    /// input + output + cache_read + cache_creation (the 5m/1h split is part of cache_creation).
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    /// Adds `other` field by field (saturating).
    pub fn add(&mut self, other: &TokenCounts) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_creation = self.cache_creation.saturating_add(other.cache_creation);
        self.cache_creation_5m = self
            .cache_creation_5m
            .saturating_add(other.cache_creation_5m);
        self.cache_creation_1h = self
            .cache_creation_1h
            .saturating_add(other.cache_creation_1h);
    }

    /// `self - other` field by field, never below zero.
    pub fn saturating_sub(&self, other: &TokenCounts) -> TokenCounts {
        TokenCounts {
            input: self.input.saturating_sub(other.input),
            output: self.output.saturating_sub(other.output),
            cache_read: self.cache_read.saturating_sub(other.cache_read),
            cache_creation: self.cache_creation.saturating_sub(other.cache_creation),
            cache_creation_5m: self
                .cache_creation_5m
                .saturating_sub(other.cache_creation_5m),
            cache_creation_1h: self
                .cache_creation_1h
                .saturating_sub(other.cache_creation_1h),
        }
    }
}

/// One model's tokens and cost, from an entry of the result line's `modelUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelUsage {
    /// Tokens used by this model.
    pub tokens: TokenCounts,
    /// The CLI's own cost for this model (`costUSD`).
    pub cost_usd: f64,
}

/// One parsed stdout line of Claude Code's stream-json output.
///
/// An assistant line, the most frequent one that orch reads, borrows its strings from the line
/// (but those written with escapes); the rarer events own theirs.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent<'a> {
    /// `system/init`: the session has started.
    Init {
        /// The session id (for `--resume`).
        session_id: String,
        /// The main model, when reported.
        model: Option<String>,
    },
    /// One `assistant` line. One API response may span several lines sharing `message_id`.
    Assistant {
        /// The API message id; lines with the same id carry the same usage.
        message_id: Cow<'a, str>,
        /// The model that answered; `<synthetic>` for messages the CLI made up itself.
        model: Cow<'a, str>,
        /// Start-of-response usage snapshot (`output` is a placeholder).
        usage: TokenCounts,
        /// Tool names of this line's `tool_use` blocks.
        tool_uses: Vec<Cow<'a, str>>,
        /// Ids of the same `tool_use` blocks, index for index with `tool_uses` (empty if absent).
        tool_use_ids: Vec<Cow<'a, str>>,
        /// The first text block, truncated to [`DISPLAY_TEXT_MAX`] bytes, for display.
        text: Option<Cow<'a, str>>,
        /// Set when the message comes from a subagent.
        parent_tool_use_id: Option<Cow<'a, str>>,
        /// Usage figures that were capped or rejected (see [`TOKEN_CAP`]).
        anomalies: Vec<Anomaly>,
    },
    /// A `user` line (tool results, interruptions).
    User,
    /// `system/api_retry`: the CLI is retrying a failed API call.
    ApiRetry {
        /// Retry attempt number, from 1.
        attempt: u32,
        /// HTTP status of the failure, when known.
        error_status: Option<u16>,
        /// Error kind, such as `overloaded`.
        error: Option<String>,
        /// Delay before the retry.
        retry_delay_ms: Option<u64>,
    },
    /// `rate_limit_event`: the account's rate-limit status.
    RateLimit {
        /// `allowed`, `allowed_warning`, `rejected`, ...
        status: String,
        /// When the limit window resets, epoch seconds.
        resets_at: Option<i64>,
        /// Which limit, such as `five_hour` or `seven_day`.
        rate_limit_type: Option<String>,
        /// Fraction or percentage of the limit used, as reported.
        utilization: Option<f64>,
    },
    /// The final `result` line: authoritative totals.
    Result {
        /// Whether the run failed; success is `!is_error`, not `subtype`.
        is_error: bool,
        /// `success`, `error_max_turns`, `error_max_budget_usd`, `error_during_execution`, ...
        subtype: String,
        /// The CLI's cost (cumulative over the session with `--resume`).
        total_cost_usd: f64,
        /// Main-loop usage.
        usage: TokenCounts,
        /// Usage per model, subagents included (cumulative with `--resume`).
        model_usage: BTreeMap<String, ModelUsage>,
        /// Number of turns.
        num_turns: Option<u32>,
        /// The session id.
        session_id: Option<String>,
        /// The final text (`result`).
        result_text: Option<String>,
        /// Error messages (`errors`), such as "Reached maximum number of turns (1)".
        errors: Vec<String>,
        /// HTTP status of a final API error.
        api_error_status: Option<u16>,
        /// `structured_output`: the answer to `--json-schema` (the input of the model's
        /// `StructuredOutput` tool call, validated by the CLI); `None` when absent or `null`.
        structured_output: Option<serde_json::Value>,
        /// Usage and cost figures that were capped or rejected (see [`TOKEN_CAP`],
        /// [`COST_CAP_USD`]). A rejected `total_cost_usd` is replaced by the sum of the accepted
        /// per-model costs.
        anomalies: Vec<Anomaly>,
    },
    /// Any other line: unknown `type` or `subtype`, or a known one we do not use.
    Other,
}

impl StreamEvent<'_> {
    /// The same event, owning its strings.
    pub fn into_owned(self) -> StreamEvent<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        match self {
            StreamEvent::Assistant {
                message_id,
                model,
                usage,
                tool_uses,
                tool_use_ids,
                text,
                parent_tool_use_id,
                anomalies,
            } => StreamEvent::Assistant {
                message_id: own(message_id),
                model: own(model),
                usage,
                tool_uses: tool_uses.into_iter().map(own).collect(),
                tool_use_ids: tool_use_ids.into_iter().map(own).collect(),
                text: text.map(own),
                parent_tool_use_id: parent_tool_use_id.map(own),
                anomalies,
            },
            StreamEvent::Init { session_id, model } => StreamEvent::Init { session_id, model },
            StreamEvent::User => StreamEvent::User,
            StreamEvent::ApiRetry {
                attempt,
                error_status,
                error,
                retry_delay_ms,
            } => StreamEvent::ApiRetry {
                attempt,
                error_status,
                error,
                retry_delay_ms,
            },
            StreamEvent::RateLimit {
                status,
                resets_at,
                rate_limit_type,
                utilization,
            } => StreamEvent::RateLimit {
                status,
                resets_at,
                rate_limit_type,
                utilization,
            },
            StreamEvent::Result {
                is_error,
                subtype,
                total_cost_usd,
                usage,
                model_usage,
                num_turns,
                session_id,
                result_text,
                errors,
                api_error_status,
                structured_output,
                anomalies,
            } => StreamEvent::Result {
                is_error,
                subtype,
                total_cost_usd,
                usage,
                model_usage,
                num_turns,
                session_id,
                result_text,
                errors,
                api_error_status,
                structured_output,
                anomalies,
            },
            StreamEvent::Other => StreamEvent::Other,
        }
    }
}

/// Longest assistant text kept in [`StreamEvent::Assistant::text`], in bytes.
pub const DISPLAY_TEXT_MAX: usize = 4096;

/// Parses one stdout line (without or with its trailing newline).
///
/// Returns `None` for blank lines and anything that is not a JSON object, but for a line that
/// starts `{"type":"user",`, which is `User` unread; never panics.
pub fn parse_line(line: &[u8]) -> Option<StreamEvent<'_>> {
    let trimmed = line.trim_ascii();
    // Cheap pre-check: every stream-json line is an object; skip the parser for obvious garbage.
    if trimmed.first() != Some(&b'{') {
        return None;
    }
    // Claude Code writes `type` first on every line but the result. A user line (tool results,
    // most of a long session's bytes) holds nothing orch reads: it is not parsed at all. An
    // assistant line is read for its message only.
    if trimmed.starts_with(br#"{"type":"user","#) {
        return Some(StreamEvent::User);
    }
    if trimmed.starts_with(br#"{"type":"assistant","#)
        && let Some(raw) = read::<raw::RawAssistantLine>(trimmed)
    {
        return Some(raw.into_event());
    }
    match read::<raw::RawLine>(trimmed) {
        Some(raw) => Some(raw.into_event()),
        None => {
            // serde_json refuses a number beyond f64 (`1e309`) and with it the whole line; quoted,
            // such a number becomes a string that the field's own check rejects, and the rest of
            // the line (is_error, usage, the result text) is still read.
            let quoted = lenient::quote_overflowing_numbers(trimmed)?;
            let raw: raw::RawLine = serde_json::from_slice(&quoted).ok()?;
            Some(raw.into_event().into_owned())
        }
    }
}

/// One line in one serde pass. Checked once as a whole, the line's strings need no UTF-8 check
/// each (serde_json's str reader skips it); a line that is not UTF-8 is still read, its broken
/// strings refused.
fn read<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Option<T> {
    match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str(text).ok(),
        Err(_) => serde_json::from_slice(line).ok(),
    }
}

#[cfg(test)]
mod tests;
