//! Per-step accounting of one Claude Code run: tokens, cost, tool calls, retries and rate
//! limits, following DESIGN.md §5.
//!
//! Owns the rules that turn a stream of [`StreamEvent`]s into a [`StepUsage`]: count each
//! `message.id` once, skip `<synthetic>` messages, estimate live from the price table, let the
//! `result` line overrule the estimate, and with `--resume` charge only the difference from the
//! session's previous cumulative totals. It never does I/O, never reads the clock and never
//! decides budgets; it only reports what a step used.

use crate::agent::prices::{Price, price_for};
use crate::agent::stream::{Anomaly, ModelUsage, StreamEvent, TokenCounts};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// The model name Claude Code gives messages it made up itself (API errors); never billed.
const SYNTHETIC_MODEL: &str = "<synthetic>";

/// A session's cumulative totals after a step, as the CLI's `result` line reports them.
/// Passed to the next step of a `--resume` chain so it is charged only its own difference.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionTotals {
    /// Cumulative `total_cost_usd`.
    pub cost_usd: f64,
    /// Cumulative `modelUsage` per model.
    pub models: BTreeMap<String, ModelUsage>,
    /// How the last result's figures were read (kept in the ledger with the totals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<CostBasis>,
}

/// What a `result` line's `total_cost_usd` and `modelUsage` cover, decided per result: Claude
/// Code 2.1.331 reports the whole session's figures after `--resume`, earlier releases reported
/// this process's only. The one whose charge matches the usage this process streamed itself
/// wins (see [`CostBasis::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    /// No earlier total in this session: the figures are this step's.
    Fresh,
    /// The session's running total: this step is charged the difference from the prior.
    Cumulative,
    /// This process's own figures: charged as they are, and added to the session's total.
    PerProcess,
}

impl CostBasis {
    /// Decides how to read a result after a prior total, from input-side tokens (input, cache
    /// reads and writes: exact in the streamed messages, unlike their placeholder output
    /// counts): `reported` is the result's figure, `prior` the session's total before, and
    /// `streamed` what this process's own messages said. Cumulative when `reported - prior` is
    /// at least as close to `streamed` as `reported` is; a result below the prior is always
    /// this process's own (a fresh session, or an older CLI).
    pub fn decide(reported: u64, prior: u64, streamed: u64) -> CostBasis {
        if reported < prior {
            return CostBasis::PerProcess;
        }
        let as_cumulative = (reported - prior).abs_diff(streamed);
        let as_own = reported.abs_diff(streamed);
        if as_cumulative <= as_own {
            CostBasis::Cumulative
        } else {
            CostBasis::PerProcess
        }
    }
}

/// The tokens of a usage that the streamed messages report exactly.
fn input_side(t: &TokenCounts) -> u64 {
    t.input
        .saturating_add(t.cache_read)
        .saturating_add(t.cache_creation)
}

/// One `rate_limit_event` as recorded in a step's usage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RateLimitRecord {
    /// `allowed`, `allowed_warning`, `rejected`, ...
    pub status: String,
    /// When the limit window resets, epoch seconds.
    pub resets_at: Option<i64>,
    /// Which limit, such as `five_hour`.
    pub rate_limit_type: Option<String>,
    /// Share of the limit used, as reported.
    pub utilization: Option<f64>,
}

impl RateLimitRecord {
    /// The record of a `rate_limit_event`; `None` for any other event.
    pub fn of(ev: &StreamEvent) -> Option<RateLimitRecord> {
        match ev {
            StreamEvent::RateLimit {
                status,
                resets_at,
                rate_limit_type,
                utilization,
            } => Some(RateLimitRecord {
                status: status.clone(),
                resets_at: *resets_at,
                rate_limit_type: rate_limit_type.clone(),
                utilization: *utilization,
            }),
            _ => None,
        }
    }
}

/// What one step used. Goes into results.json and the ledger.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepUsage {
    /// Tokens charged to this step, all models together.
    pub tokens: TokenCounts,
    /// Cost charged to this step in US dollars.
    pub cost_usd: f64,
    /// True until an authoritative `result` line arrives (live estimate from the price table).
    pub is_estimate: bool,
    /// The estimate met a model the price table does not know: its cost is missing from
    /// `cost_usd` (shown as "price unknown", not $0.0000). False once the result arrives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub price_unknown: bool,
    /// Tool calls by tool name.
    pub tool_calls: BTreeMap<String, u32>,
    /// All tool calls together.
    pub tool_calls_total: u32,
    /// Tokens and cost per model (subagents' models included once the result arrives).
    pub models: BTreeMap<String, ModelUsage>,
    /// The main model of the step.
    pub model: Option<String>,
    /// `system/api_retry` lines seen.
    pub api_retries: u32,
    /// `rate_limit_event` lines seen, in order.
    pub rate_limits: Vec<RateLimitRecord>,
    /// Turns, from the result line.
    pub num_turns: Option<u32>,
    /// The Claude session id, from the init or result line.
    pub session_id: Option<String>,
    /// How the result's figures were read: `fresh`, `cumulative` (charged the difference from
    /// the session's prior total) or `per_process`; absent until a result arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_basis: Option<CostBasis>,
}

impl StepUsage {
    /// input + output + cache reads + cache writes.
    pub fn total_tokens(&self) -> u64 {
        self.tokens.total()
    }
}

/// A change of the step's running usage, for live reporting and budget checks.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UsageUpdate {
    /// Tokens so far.
    pub tokens: TokenCounts,
    /// Cost so far in US dollars.
    pub cost_usd: f64,
    /// Whether the figures are still an estimate.
    pub is_estimate: bool,
    /// The estimate met a model without a price (see [`StepUsage::price_unknown`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub price_unknown: bool,
    /// Tool calls so far.
    pub tool_calls_total: u32,
}

/// The `result` line's verdict, kept for the outcome.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResultSummary {
    /// `success`, `error_max_turns`, ... (not the success criterion).
    pub subtype: String,
    /// The success criterion: false means the run succeeded.
    pub is_error: bool,
    /// The final text.
    pub text: Option<String>,
    /// Error messages.
    pub errors: Vec<String>,
    /// HTTP status of a final API error.
    pub api_error_status: Option<u16>,
    /// The result line's `structured_output` (the answer to `--json-schema`), as the CLI wrote
    /// it; not yet checked against the job's schema (see [`crate::agent::structured`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured: Option<serde_json::Value>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// A result line with `is_error == false` arrived and the process exited with 0.
    pub success: bool,
    /// The process's exit code; `None` when it died by a signal.
    pub exit_code: Option<i32>,
    /// The result line's verdict; `None` when the step wrote none (killed, crashed).
    pub result: Option<ResultSummary>,
    /// What the step used (an estimate when `result` is `None`).
    pub usage: StepUsage,
}

/// Accumulates one step's usage from its stream events.
#[derive(Debug, Clone, Default)]
pub struct Accounting {
    prior: Option<SessionTotals>,
    usage: StepUsage,
    /// Ids seen, looked up once per message and tool call: a fast hasher (foldhash, seeded per
    /// process), not SipHash, which was a fifth of the accounting.
    seen_messages: HashSet<String, foldhash::fast::RandomState>,
    seen_tool_uses: HashSet<String, foldhash::fast::RandomState>,
    /// The last model priced and its price (a step's messages name one model, or few).
    priced: Option<(String, Option<&'static Price>)>,
    /// The tokens of the messages this process streamed (the estimate's), kept past the result.
    streamed: TokenCounts,
    result: Option<(ResultSummary, SessionTotals)>,
    /// Anomalies of the lines counted so far, not yet taken by [`Accounting::take_anomalies`].
    anomalies: Vec<Anomaly>,
}

impl Accounting {
    /// Starts a step. `prior` is the session's cumulative totals after the previous step of the
    /// same Claude session (for `--resume` chains); `None` for a fresh session.
    pub fn new(prior: Option<SessionTotals>) -> Self {
        Accounting {
            prior,
            usage: StepUsage {
                is_estimate: true,
                ..StepUsage::default()
            },
            ..Accounting::default()
        }
    }

    /// Feeds one event; returns the new running usage when tokens, cost or tool calls changed.
    pub fn observe(&mut self, ev: &StreamEvent) -> Option<UsageUpdate> {
        match ev {
            StreamEvent::Init { session_id, model } => {
                self.usage.session_id = Some(session_id.clone());
                if model.is_some() {
                    self.usage.model.clone_from(model);
                }
                None
            }
            StreamEvent::Assistant {
                message_id,
                model,
                usage,
                tool_uses,
                tool_use_ids,
                parent_tool_use_id,
                anomalies,
                ..
            } => {
                if model == SYNTHETIC_MODEL {
                    return None;
                }
                if self.usage.model.is_none() && parent_tool_use_id.is_none() && !model.is_empty() {
                    self.usage.model = Some(model.to_string());
                }
                let tools = self.count_tools(message_id, tool_uses, tool_use_ids);
                let tokens = self.count_message(message_id, model, usage);
                // A message's lines repeat its usage: its anomalies count once, with it.
                if tokens {
                    self.anomalies.extend_from_slice(anomalies);
                }
                (tools || tokens).then(|| self.update())
            }
            StreamEvent::ApiRetry { .. } => {
                self.usage.api_retries = self.usage.api_retries.saturating_add(1);
                None
            }
            StreamEvent::RateLimit { .. } => {
                self.usage.rate_limits.extend(RateLimitRecord::of(ev));
                None
            }
            StreamEvent::Result { anomalies, .. } => {
                self.anomalies.extend_from_slice(anomalies);
                self.apply_result(ev);
                Some(self.update())
            }
            StreamEvent::User | StreamEvent::Other => None,
        }
    }

    /// The usage figures capped or rejected since the last call, each once, to be reported as
    /// warnings.
    pub fn take_anomalies(&mut self) -> Vec<Anomaly> {
        std::mem::take(&mut self.anomalies)
    }

    /// The step's usage so far.
    pub fn usage(&self) -> &StepUsage {
        &self.usage
    }

    /// The session's cumulative totals after this step, for the next step of a `--resume`
    /// chain. Without a result line the last authoritative totals (the prior) are all we know.
    pub fn session_totals(&self) -> Option<SessionTotals> {
        match &self.result {
            Some((_, cumulative)) => Some(cumulative.clone()),
            None => self.prior.clone(),
        }
    }

    /// Ends the step: success is a result line with `is_error == false` and exit code 0.
    pub fn finish(&mut self, exit_code: Option<i32>) -> Outcome {
        let result = self.result.as_ref().map(|(summary, _)| summary.clone());
        Outcome {
            success: exit_code == Some(0) && result.as_ref().is_some_and(|r| !r.is_error),
            exit_code,
            result,
            usage: self.usage.clone(),
        }
    }

    fn update(&self) -> UsageUpdate {
        UsageUpdate {
            tokens: self.usage.tokens,
            cost_usd: self.usage.cost_usd,
            is_estimate: self.usage.is_estimate,
            price_unknown: self.usage.price_unknown,
            tool_calls_total: self.usage.tool_calls_total,
        }
    }

    /// Counts each tool_use block once, by block id (the same line may be seen twice).
    fn count_tools(&mut self, message_id: &str, names: &[Cow<str>], ids: &[Cow<str>]) -> bool {
        let mut changed = false;
        for (i, name) in names.iter().enumerate() {
            let new = match ids.get(i).filter(|id| !id.is_empty()) {
                // Looked up before it is copied: a line seen twice allocates nothing.
                Some(id) => {
                    !self.seen_tool_uses.contains(id.as_ref())
                        && self.seen_tool_uses.insert(id.to_string())
                }
                None => self
                    .seen_tool_uses
                    .insert(format!("{message_id}#{i}#{name}")),
            };
            if new {
                match self.usage.tool_calls.get_mut(name.as_ref()) {
                    Some(n) => *n += 1,
                    None => {
                        self.usage.tool_calls.insert(name.to_string(), 1);
                    }
                }
                self.usage.tool_calls_total = self.usage.tool_calls_total.saturating_add(1);
                changed = true;
            }
        }
        changed
    }

    /// Adds a message's start-of-response usage to the live estimate, once per message id.
    fn count_message(&mut self, message_id: &str, model: &str, usage: &TokenCounts) -> bool {
        // After the authoritative result, late assistant lines must not move the figures.
        // Looked up before it is copied: a message's second line allocates nothing.
        if self.result.is_some()
            || self.seen_messages.contains(message_id)
            || !self.seen_messages.insert(message_id.to_owned())
        {
            return false;
        }
        let price = match &self.priced {
            Some((priced, price)) if priced == model => *price,
            _ => {
                let price = price_for(model);
                self.priced = Some((model.to_owned(), price));
                price
            }
        };
        self.usage.price_unknown |= price.is_none();
        let cost = price.map_or(0.0, |p| p.cost(usage));
        // Until the result, the step's models are the estimate itself.
        match self.usage.models.get_mut(model) {
            Some(entry) => {
                entry.tokens.add(usage);
                entry.cost_usd += cost;
            }
            None => {
                let entry = ModelUsage {
                    tokens: *usage,
                    cost_usd: cost,
                };
                self.usage.models.insert(model.to_owned(), entry);
            }
        }
        self.usage.tokens.add(usage);
        self.usage.cost_usd += cost;
        self.streamed.add(usage);
        true
    }

    /// Replaces the estimate with the result line's figures, minus the prior with `--resume`.
    fn apply_result(&mut self, ev: &StreamEvent) {
        let StreamEvent::Result {
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
            ..
        } = ev
        else {
            return;
        };
        // Cumulative or this process's own? Compared with what this process streamed.
        let reported: TokenCounts =
            model_usage
                .values()
                .fold(TokenCounts::default(), |mut t, m| {
                    t.add(&m.tokens);
                    t
                });
        let basis = match &self.prior {
            None => CostBasis::Fresh,
            // A total below the prior: a fresh session (or an older CLI's own figures).
            Some(p) if *total_cost_usd + 1e-12 < p.cost_usd => CostBasis::PerProcess,
            Some(_) if model_usage.is_empty() => CostBasis::Cumulative,
            Some(p) => {
                let prior: TokenCounts =
                    p.models.values().fold(TokenCounts::default(), |mut t, m| {
                        t.add(&m.tokens);
                        t
                    });
                CostBasis::decide(
                    input_side(&reported),
                    input_side(&prior),
                    input_side(&self.streamed),
                )
            }
        };
        let base = match basis {
            CostBasis::Cumulative => self.prior.as_ref(),
            _ => None,
        };
        let mut models = BTreeMap::new();
        let mut tokens = TokenCounts::default();
        for (model, cumulative) in model_usage {
            let before = base
                .and_then(|b| b.models.get(model))
                .copied()
                .unwrap_or_default();
            // Never a negative difference: a figure below the prior is charged nothing.
            let step = ModelUsage {
                tokens: cumulative.tokens.saturating_sub(&before.tokens),
                cost_usd: (cumulative.cost_usd - before.cost_usd).max(0.0),
            };
            if step.tokens.total() > 0 || step.cost_usd > 0.0 {
                tokens.add(&step.tokens);
                models.insert(model.clone(), step);
            }
        }
        if model_usage.is_empty() && base.is_none() {
            tokens = *usage;
        }
        // An error result (a usage-limit stop, max turns) still spent what it reports.
        self.usage.tokens = tokens;
        self.usage.cost_usd = (total_cost_usd - base.map_or(0.0, |b| b.cost_usd)).max(0.0);
        self.usage.models = models;
        self.usage.cost_basis = Some(basis);
        self.usage.is_estimate = false;
        self.usage.price_unknown = false;
        self.usage.num_turns = *num_turns;
        if session_id.is_some() {
            self.usage.session_id.clone_from(session_id);
        }
        if self.usage.model.is_none() {
            self.usage.model = main_model(model_usage);
        }
        let summary = ResultSummary {
            subtype: subtype.clone(),
            is_error: *is_error,
            text: result_text.clone(),
            errors: errors.clone(),
            api_error_status: *api_error_status,
            structured: structured_output.clone(),
        };
        // The session's running total after this step: the result itself, or for a
        // per-process figure, the prior plus it.
        let cumulative = match (basis, &self.prior) {
            (CostBasis::PerProcess, Some(p)) if *total_cost_usd + 1e-12 >= p.cost_usd => {
                let mut models = p.models.clone();
                for (model, own) in model_usage {
                    let entry = models.entry(model.clone()).or_default();
                    entry.tokens.add(&own.tokens);
                    entry.cost_usd += own.cost_usd;
                }
                SessionTotals {
                    cost_usd: p.cost_usd + *total_cost_usd,
                    models,
                    basis: Some(basis),
                }
            }
            _ => SessionTotals {
                cost_usd: *total_cost_usd,
                models: model_usage.clone(),
                basis: Some(basis),
            },
        };
        self.result = Some((summary, cumulative));
    }
}

/// The costliest model of a result, when no init or assistant line named one.
fn main_model(models: &BTreeMap<String, ModelUsage>) -> Option<String> {
    models
        .iter()
        .max_by(|a, b| a.1.cost_usd.total_cmp(&b.1.cost_usd))
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
mod tests;
