//! The wire shapes of stream-json lines as lenient, borrowing serde structs, and their
//! conversion into [`StreamEvent`].
//!
//! Owns field names and shape tolerance only; it must never reject a line for a field it does
//! not need, and never allocate a line's large text beyond [`DISPLAY_TEXT_MAX`].

use super::figures::Anomalies;
use super::lenient::{Lenient, LenientVec, Num, Scalar, Strings};
use super::{DISPLAY_TEXT_MAX, ModelUsage, StreamEvent, TokenCounts};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Every top-level field orch reads from any line type; all optional.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Scalar<'a>,
    #[serde(borrow)]
    subtype: Scalar<'a>,
    #[serde(borrow)]
    session_id: Scalar<'a>,
    #[serde(borrow)]
    model: Scalar<'a>,
    #[serde(borrow)]
    message: Lenient<RawMessage<'a>>,
    #[serde(borrow)]
    parent_tool_use_id: Scalar<'a>,
    // system/api_retry
    #[serde(borrow)]
    attempt: Scalar<'a>,
    #[serde(borrow)]
    error_status: Scalar<'a>,
    #[serde(borrow)]
    error: Scalar<'a>,
    #[serde(borrow)]
    retry_delay_ms: Scalar<'a>,
    // rate_limit_event: nested under rate_limit_info, or (older shape) at the top level
    #[serde(borrow)]
    rate_limit_info: Lenient<RawRateLimit<'a>>,
    #[serde(borrow)]
    status: Scalar<'a>,
    #[serde(rename = "resetsAt", alias = "resets_at", borrow)]
    resets_at: Scalar<'a>,
    #[serde(rename = "rateLimitType", alias = "rate_limit_type", borrow)]
    rate_limit_type: Scalar<'a>,
    #[serde(borrow)]
    utilization: Scalar<'a>,
    // result
    #[serde(borrow)]
    is_error: Scalar<'a>,
    #[serde(borrow)]
    total_cost_usd: Scalar<'a>,
    usage: Lenient<RawUsage>,
    #[serde(rename = "modelUsage")]
    model_usage: Lenient<BTreeMap<String, Lenient<RawModelUsage>>>,
    #[serde(borrow)]
    num_turns: Scalar<'a>,
    #[serde(borrow)]
    result: Scalar<'a>,
    errors: Strings,
    #[serde(borrow)]
    api_error_status: Scalar<'a>,
    /// The answer to `--json-schema`, any JSON; `null` is `None`. The one field read into a
    /// `Value`: it is data for later jobs, not a figure.
    structured_output: Option<serde_json::Value>,
}

/// An `assistant` line: the only fields of one that orch reads, so the rest of it (session id,
/// uuid, ...) is skipped unread. Read instead of [`RawLine`] when a line starts with its type.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAssistantLine<'a> {
    /// Read (and so checked for a duplicate) like [`RawLine::kind`], never used.
    #[serde(rename = "type", borrow)]
    _kind: Scalar<'a>,
    #[serde(borrow)]
    message: Lenient<RawMessage<'a>>,
    #[serde(borrow)]
    parent_tool_use_id: Scalar<'a>,
}

impl<'a> RawAssistantLine<'a> {
    /// The event [`RawLine::into_event`] makes of the same line; it also takes a line that
    /// `RawLine` refuses only for a field this struct skips (a duplicated `session_id`, bad UTF-8
    /// in a string orch does not read).
    pub(super) fn into_event(self) -> StreamEvent<'a> {
        match self.message.0 {
            Some(message) => assistant(message, self.parent_tool_use_id),
            None => StreamEvent::Other,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMessage<'a> {
    #[serde(borrow)]
    id: Scalar<'a>,
    #[serde(borrow)]
    model: Scalar<'a>,
    usage: Lenient<RawUsage>,
    #[serde(borrow)]
    content: LenientVec<RawBlock<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Scalar<'a>,
    #[serde(borrow)]
    id: Scalar<'a>,
    #[serde(borrow)]
    name: Scalar<'a>,
    #[serde(borrow)]
    text: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUsage {
    input_tokens: Num,
    output_tokens: Num,
    cache_read_input_tokens: Num,
    cache_creation_input_tokens: Num,
    cache_creation: Lenient<RawCacheCreation>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCacheCreation {
    ephemeral_5m_input_tokens: Num,
    ephemeral_1h_input_tokens: Num,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawModelUsage {
    input_tokens: Num,
    output_tokens: Num,
    cache_read_input_tokens: Num,
    cache_creation_input_tokens: Num,
    cache_creation_ephemeral5m_input_tokens: Num,
    cache_creation_ephemeral1h_input_tokens: Num,
    #[serde(rename = "costUSD")]
    cost_usd: Num,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRateLimit<'a> {
    #[serde(borrow)]
    status: Scalar<'a>,
    #[serde(rename = "resetsAt", alias = "resets_at", borrow)]
    resets_at: Scalar<'a>,
    #[serde(rename = "rateLimitType", alias = "rate_limit_type", borrow)]
    rate_limit_type: Scalar<'a>,
    #[serde(borrow)]
    utilization: Scalar<'a>,
}

impl<'a> RawLine<'a> {
    /// Maps the wire shape to an event; unknown types and subtypes become `Other`.
    pub(super) fn into_event(self) -> StreamEvent<'a> {
        match (self.kind.as_str(), self.subtype.as_str()) {
            (Some("system"), Some("init")) => StreamEvent::Init {
                session_id: self.session_id.to_string_opt().unwrap_or_default(),
                model: self.model.to_string_opt(),
            },
            (Some("system"), Some("api_retry")) => StreamEvent::ApiRetry {
                attempt: self.attempt.as_u64().map_or(0, saturate_u32),
                error_status: self
                    .error_status
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok()),
                error: self.error.to_string_opt(),
                retry_delay_ms: self.retry_delay_ms.as_u64(),
            },
            (Some("assistant"), _) => match self.message.0 {
                Some(message) => assistant(message, self.parent_tool_use_id),
                None => StreamEvent::Other,
            },
            (Some("user"), _) => StreamEvent::User,
            (Some("rate_limit_event"), _) => {
                let info = self.rate_limit_info.0.unwrap_or(RawRateLimit {
                    status: self.status,
                    resets_at: self.resets_at,
                    rate_limit_type: self.rate_limit_type,
                    utilization: self.utilization,
                });
                StreamEvent::RateLimit {
                    status: info.status.to_string_opt().unwrap_or_default(),
                    resets_at: epoch_seconds(&info.resets_at),
                    rate_limit_type: info.rate_limit_type.to_string_opt(),
                    // Display only, but a NaN or an infinity has nothing to show.
                    utilization: info.utilization.as_f64().filter(|u| u.is_finite()),
                }
            }
            (Some("result"), _) => {
                let subtype = self.subtype.to_string_opt().unwrap_or_default();
                let mut found = Anomalies::default();
                let usage = self
                    .usage
                    .0
                    .map(|u| u.counts("usage", &mut found))
                    .unwrap_or_default();
                let model_usage: BTreeMap<String, ModelUsage> = self
                    .model_usage
                    .0
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(model, usage)| {
                        let usage = usage.0?.model_usage(&model, &mut found);
                        Some((model, usage))
                    })
                    .collect();
                // A rejected total is the sum of the accepted per-model costs (which is what the
                // CLI's total is), so one bad field does not erase what the models did cost.
                let total_cost_usd = found
                    .cost("total_cost_usd", &self.total_cost_usd)
                    .unwrap_or_else(|| model_usage.values().map(|m| m.cost_usd).sum());
                StreamEvent::Result {
                    // A result without is_error is judged by its subtype, the older convention.
                    is_error: self.is_error.as_bool().unwrap_or(subtype != "success"),
                    subtype,
                    total_cost_usd,
                    usage,
                    model_usage,
                    num_turns: self.num_turns.as_u64().map(saturate_u32),
                    session_id: self.session_id.to_string_opt(),
                    result_text: self.result.to_string_opt(),
                    errors: self.errors.0,
                    api_error_status: self
                        .api_error_status
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok()),
                    structured_output: self.structured_output,
                    anomalies: found.0,
                }
            }
            _ => StreamEvent::Other,
        }
    }
}

fn assistant<'a>(message: RawMessage<'a>, parent: Scalar<'a>) -> StreamEvent<'a> {
    let mut tool_uses = Vec::new();
    let mut tool_use_ids = Vec::new();
    let mut text = None;
    for block in message.content.0 {
        match block.kind.as_str() {
            Some("tool_use") => {
                tool_uses.push(block.name.into_str().unwrap_or_default());
                tool_use_ids.push(block.id.into_str().unwrap_or_default());
            }
            Some("text") if text.is_none() => text = block.text.into_str().map(display_text),
            _ => {}
        }
    }
    let mut found = Anomalies::default();
    let usage = message
        .usage
        .0
        .map(|u| u.counts("message.usage", &mut found))
        .unwrap_or_default();
    StreamEvent::Assistant {
        message_id: message.id.into_str().unwrap_or_default(),
        model: message.model.into_str().unwrap_or_default(),
        usage,
        tool_uses,
        tool_use_ids,
        text,
        parent_tool_use_id: parent.into_str(),
        anomalies: found.0,
    }
}

/// Truncates to at most DISPLAY_TEXT_MAX bytes on a char boundary.
fn display_text(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(crate::report::width::cut_bytes(s, DISPLAY_TEXT_MAX)),
        Cow::Owned(mut s) => {
            let kept = crate::report::width::cut_bytes(&s, DISPLAY_TEXT_MAX).len();
            s.truncate(kept);
            Cow::Owned(s)
        }
    }
}

fn saturate_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `resetsAt` as epoch seconds: numbers (milliseconds are recognised by size), numeric strings
/// and RFC 3339 strings are accepted.
fn epoch_seconds(v: &Scalar<'_>) -> Option<i64> {
    // Epoch seconds pass 1e10 only in the year 2286; anything larger is milliseconds.
    const MILLIS_THRESHOLD: i64 = 10_000_000_000;
    if let Some(s) = v.as_str()
        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim())
    {
        return Some(t.timestamp());
    }
    let n = v.as_i64()?;
    // `unsigned_abs`: `abs` of i64::MIN overflows.
    Some(if n.unsigned_abs() >= MILLIS_THRESHOLD.unsigned_abs() {
        n / 1000
    } else {
        n
    })
}

impl RawUsage {
    /// The counts, each checked and capped; `at` names the object for anomalies.
    fn counts(self, at: &str, found: &mut Anomalies) -> TokenCounts {
        let split = self.cache_creation.0.unwrap_or_default();
        let mut get = |name: &str, n: &Num| found.tokens(format_args!("{at}.{name}"), &n.0);
        TokenCounts {
            input: get("input_tokens", &self.input_tokens),
            output: get("output_tokens", &self.output_tokens),
            cache_read: get("cache_read_input_tokens", &self.cache_read_input_tokens),
            cache_creation: get(
                "cache_creation_input_tokens",
                &self.cache_creation_input_tokens,
            ),
            cache_creation_5m: get(
                "cache_creation.ephemeral_5m_input_tokens",
                &split.ephemeral_5m_input_tokens,
            ),
            cache_creation_1h: get(
                "cache_creation.ephemeral_1h_input_tokens",
                &split.ephemeral_1h_input_tokens,
            ),
        }
    }
}

impl RawModelUsage {
    /// One model's figures, each checked and capped; a rejected cost counts as zero.
    fn model_usage(self, model: &str, found: &mut Anomalies) -> ModelUsage {
        let at = format!("modelUsage.{model}");
        let mut get = |name: &str, n: &Num| found.tokens(format_args!("{at}.{name}"), &n.0);
        let tokens = TokenCounts {
            input: get("inputTokens", &self.input_tokens),
            output: get("outputTokens", &self.output_tokens),
            cache_read: get("cacheReadInputTokens", &self.cache_read_input_tokens),
            cache_creation: get(
                "cacheCreationInputTokens",
                &self.cache_creation_input_tokens,
            ),
            cache_creation_5m: get(
                "cacheCreationEphemeral5mInputTokens",
                &self.cache_creation_ephemeral5m_input_tokens,
            ),
            cache_creation_1h: get(
                "cacheCreationEphemeral1hInputTokens",
                &self.cache_creation_ephemeral1h_input_tokens,
            ),
        };
        ModelUsage {
            tokens,
            cost_usd: found
                .cost(format_args!("{at}.costUSD"), &self.cost_usd.0)
                .unwrap_or(0.0),
        }
    }
}
