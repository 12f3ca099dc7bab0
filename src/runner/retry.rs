//! Retries and throttling, as pure rules: what kind of failure a step attempt ended in
//! ([`classify`]), how long to wait before the next attempt ([`backoff`], with a jitter that is
//! random-looking yet reproducible), and the agent concurrency limit that API throttling lowers
//! and quiet periods restore ([`Throttle`]).
//!
//! It never reads a clock or the environment and never decides a step's status: the core asks
//! it, with the facts of an attempt and the time as plain values.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::agent::accounting::ResultSummary;
use crate::events::Status;
use crate::manifest::{Retry, RetryOn};

/// One ended attempt of a step, for the results file.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AttemptRecord {
    /// From 1.
    pub number: u32,
    pub status: Option<Status>,
    /// The kind of failure that earned the next attempt (`None` for the last attempt, or when
    /// it completed).
    pub kind: Option<RetryOn>,
    /// What went wrong, in a few words.
    pub reason: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    /// Seconds.
    pub duration_secs: f64,
    pub exit_code: Option<i32>,
    /// Tokens this attempt spent (all kinds together).
    pub tokens: u64,
    /// Dollars this attempt spent.
    pub cost_usd: f64,
    /// Whether the figures are a live estimate (no final `result`).
    pub is_estimate: bool,
    /// It continued the agent's session with `--resume` and the retry prompt.
    pub resumed: bool,
    /// It counted against `retry.attempts` (a rate-limit continuation does not).
    pub counted: bool,
    pub log: std::path::PathBuf,
}

/// The last `system/api_retry` line of an attempt: Claude Code's own retry of a failed API call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiRetrySeen {
    /// Claude Code's own attempt number, from 1.
    pub attempt: u32,
    /// The HTTP status of the failure, when known.
    pub status: Option<u16>,
    /// The error kind, such as `overloaded` or `rate_limit`.
    pub error: Option<String>,
}

/// What is known about an attempt when it ended, for [`classify`].
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The verdict the attempt would end the step with.
    pub status: Status,
    /// The result line, for agent steps that wrote one.
    pub result: Option<&'a ResultSummary>,
    /// The last `api_retry` line the attempt wrote.
    pub api_retry: Option<&'a ApiRetrySeen>,
    /// The attempt met a rejected `rate_limit_event`.
    pub rate_limited: bool,
    /// The process could not be started (never retried: the next attempt would fail alike).
    pub spawn_error: bool,
}

/// The kind of failure an attempt ended in; `None` for a success, and for ends that are never
/// retried (a budget stop, a cancel, a process that could not start).
pub fn classify(f: &Facts) -> Option<RetryOn> {
    match f.status {
        Status::Completed => return None,
        Status::TimedOut => return Some(RetryOn::Timeout),
        Status::Failed => {}
        _ => return None,
    }
    if f.spawn_error {
        return None;
    }
    if f.rate_limited {
        return Some(RetryOn::RateLimit);
    }
    if let Some(r) = f.result.filter(|r| r.is_error) {
        match r.subtype.as_str() {
            "error_max_turns" => return Some(RetryOn::MaxTurns),
            "error_max_budget_usd" => return Some(RetryOn::MaxBudget),
            _ => {}
        }
        let text = r.text.as_deref().unwrap_or_default();
        if let Some(kind) = r
            .api_error_status
            .or_else(|| api_status_in(text))
            .map(of_status)
        {
            return Some(kind);
        }
        let words = format!("{text} {}", r.errors.join(" ")).to_lowercase();
        if is_usage_limit(&words) {
            return Some(RetryOn::RateLimit);
        }
        if words.contains("overloaded") {
            return Some(RetryOn::Overloaded);
        }
        if words.contains("permission") && words.contains("denied") {
            return Some(RetryOn::PermissionDenied);
        }
    }
    // No result saying why: Claude Code's own retries, if it gave up during them.
    if let Some(a) = f.api_retry {
        if let Some(status) = a.status {
            return Some(of_status(status));
        }
        if a.error.as_deref() == Some("overloaded") {
            return Some(RetryOn::Overloaded);
        }
        return Some(RetryOn::ApiError);
    }
    Some(RetryOn::Exit)
}

/// The kind of an HTTP error status.
fn of_status(status: u16) -> RetryOn {
    match status {
        529 => RetryOn::Overloaded,
        429 => RetryOn::RateLimit,
        _ => RetryOn::ApiError,
    }
}

/// The status in Claude Code's "API Error: 529 …" text.
fn api_status_in(text: &str) -> Option<u16> {
    let rest = text.trim_start().strip_prefix("API Error: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Claude Code's words for a spent subscription limit ("Claude AI usage limit reached|1750000000",
/// "5-hour limit reached ∙ resets 3pm").
fn is_usage_limit(lower: &str) -> bool {
    lower.contains("usage limit") || lower.contains("limit reached") || lower.contains("rate limit")
}

/// The reset time a usage-limit result names as `…|EPOCH_SECONDS`, if any.
pub fn usage_limit_reset(r: &ResultSummary) -> Option<DateTime<Utc>> {
    let text = r.text.as_deref()?;
    let (words, epoch) = text.trim().rsplit_once('|')?;
    if !is_usage_limit(&words.to_lowercase()) {
        return None;
    }
    DateTime::from_timestamp(epoch.trim().parse().ok()?, 0)
}

/// The wait before attempt `next` (2 for the first retry): `backoff` doubled for each retry
/// before it, at most `max_backoff`; with jitter, `unit` (in 0..1) picks 50–100 % of that.
pub fn backoff(policy: &Retry, next: u32, unit: f64) -> Duration {
    let doublings = next.saturating_sub(2).min(30);
    let full = policy
        .backoff
        .saturating_mul(1u32 << doublings)
        .min(policy.max_backoff);
    if policy.jitter {
        full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    } else {
        full
    }
}

/// A number in 0..1 that looks random and is the same for the same run, step and attempt (the
/// core must be reproducible, so it draws no randomness of its own).
pub fn jitter_unit(run_id: &str, step: usize, attempt: u32) -> f64 {
    let key = format!("{run_id}/{step}/{attempt}");
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // The top 53 bits, as a fraction.
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an `api_retry` line means the API is throttling: HTTP 429 or 529, or those kinds.
pub fn is_throttling(a: &ApiRetrySeen) -> bool {
    matches!(a.status, Some(429 | 529))
        || matches!(a.error.as_deref(), Some("overloaded" | "rate_limit"))
}

/// The agent concurrency limit that throttling sets: halved (at least 1) when the API throttles,
/// at most once per quiet period; raised by one after each quiet period without throttling,
/// until it is lifted.
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    /// Agent steps allowed at once; `None`: no limit of its own.
    pub limit: Option<usize>,
    /// What the limit rose back to before it is lifted: the agent steps running at the first cut.
    ceiling: usize,
    /// The last throttling seen (or the last change), which starts the quiet period again.
    last: Option<Instant>,
}

/// A change of the throttle's limit, for the event that reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitChange {
    /// The new limit; `None`: lifted.
    pub limit: Option<usize>,
    pub reason: String,
}

impl Throttle {
    /// The API throttled (`api_retry` with 429/529) while `running` agent steps ran: halves the
    /// limit unless it was cut less than `quiet` ago.
    pub fn throttled(
        &mut self,
        now: Instant,
        running: usize,
        quiet: Duration,
        what: &str,
    ) -> Option<LimitChange> {
        let recent = self.last.is_some_and(|t| now.duration_since(t) < quiet);
        let cut_recently = recent && self.limit.is_some();
        self.last = Some(now);
        if cut_recently {
            return None;
        }
        let current = self.limit.unwrap_or_else(|| {
            self.ceiling = running.max(1);
            running.max(1)
        });
        let halved = (current / 2).max(1);
        if self.limit == Some(halved) {
            return None;
        }
        self.limit = Some(halved);
        Some(LimitChange {
            limit: self.limit,
            reason: format!(
                "the API is throttling ({what}): at most {halved} agent step{} at once",
                plural(halved)
            ),
        })
    }

    /// Time passed: after a quiet period the limit rises by one, and is lifted above its ceiling.
    pub fn tick(&mut self, now: Instant, quiet: Duration) -> Option<LimitChange> {
        let limit = self.limit?;
        let last = self.last?;
        if now.duration_since(last) < quiet {
            return None;
        }
        self.last = Some(now);
        let quiet_for = crate::duration::format(quiet);
        if limit + 1 >= self.ceiling.max(2) {
            self.limit = None;
            return Some(LimitChange {
                limit: None,
                reason: format!("no throttling for {quiet_for}: the agent limit is lifted"),
            });
        }
        self.limit = Some(limit + 1);
        Some(LimitChange {
            limit: self.limit,
            reason: format!(
                "no throttling for {quiet_for}: at most {} agent steps at once",
                limit + 1
            ),
        })
    }

    /// When [`Throttle::tick`] may next change something.
    pub fn next_change(&self, quiet: Duration) -> Option<Instant> {
        self.limit?;
        self.last.map(|t| t + quiet)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(subtype: &str, text: &str, status: Option<u16>) -> ResultSummary {
        ResultSummary {
            subtype: subtype.into(),
            is_error: true,
            text: Some(text.into()),
            errors: vec![],
            api_error_status: status,
            structured: None,
        }
    }

    fn failed<'a>(r: Option<&'a ResultSummary>, a: Option<&'a ApiRetrySeen>) -> Facts<'a> {
        Facts {
            status: Status::Failed,
            result: r,
            api_retry: a,
            rate_limited: false,
            spawn_error: false,
        }
    }

    #[test]
    fn classifies_each_reason() {
        let r529 = result(
            "success",
            "API Error: 529 overloaded. Try again.",
            Some(529),
        );
        assert_eq!(
            classify(&failed(Some(&r529), None)),
            Some(RetryOn::Overloaded)
        );
        let r500 = result("success", "API Error: 500 internal", None);
        assert_eq!(
            classify(&failed(Some(&r500), None)),
            Some(RetryOn::ApiError)
        );
        let r429 = result("success", "API Error: 429 rate limited", None);
        assert_eq!(
            classify(&failed(Some(&r429), None)),
            Some(RetryOn::RateLimit)
        );
        let usage = result("success", "Claude AI usage limit reached|1750000000", None);
        assert_eq!(
            classify(&failed(Some(&usage), None)),
            Some(RetryOn::RateLimit)
        );
        assert_eq!(
            usage_limit_reset(&usage).map(|t| t.timestamp()),
            Some(1_750_000_000)
        );
        let turns = result("error_max_turns", "", None);
        assert_eq!(
            classify(&failed(Some(&turns), None)),
            Some(RetryOn::MaxTurns)
        );
        let budget = result("error_max_budget_usd", "", None);
        assert_eq!(
            classify(&failed(Some(&budget), None)),
            Some(RetryOn::MaxBudget)
        );
        let plain = result("error_during_execution", "", None);
        assert_eq!(classify(&failed(Some(&plain), None)), Some(RetryOn::Exit));
        let retry = ApiRetrySeen {
            attempt: 10,
            status: Some(529),
            error: Some("overloaded".into()),
        };
        assert_eq!(
            classify(&failed(None, Some(&retry))),
            Some(RetryOn::Overloaded)
        );
        assert_eq!(classify(&failed(None, None)), Some(RetryOn::Exit));
        let mut limited = failed(Some(&plain), None);
        limited.rate_limited = true;
        assert_eq!(classify(&limited), Some(RetryOn::RateLimit));
    }

    #[test]
    fn never_retries_successes_stops_and_spawn_errors() {
        for status in [Status::Completed, Status::BudgetExceeded, Status::Cancelled] {
            let f = Facts {
                status,
                ..failed(None, None)
            };
            assert_eq!(classify(&f), None, "{status:?}");
        }
        let timed_out = Facts {
            status: Status::TimedOut,
            ..failed(None, None)
        };
        assert_eq!(classify(&timed_out), Some(RetryOn::Timeout));
        let spawn = Facts {
            spawn_error: true,
            ..failed(None, None)
        };
        assert_eq!(classify(&spawn), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_half() {
        let mut p = Retry {
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(35),
            jitter: false,
            ..Retry::default()
        };
        let waits: Vec<u64> = (2..6).map(|n| backoff(&p, n, 0.3).as_secs()).collect();
        assert_eq!(waits, [10, 20, 35, 35]);
        p.jitter = true;
        assert_eq!(backoff(&p, 2, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_secs(10));
        for attempt in 2..50 {
            let u = jitter_unit("run", 3, attempt);
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        assert_eq!(jitter_unit("run", 3, 2), jitter_unit("run", 3, 2));
        assert_ne!(jitter_unit("run", 3, 2), jitter_unit("run", 4, 2));
    }

    #[test]
    fn throttle_halves_once_per_quiet_period_and_restores_step_by_step() {
        let t0 = Instant::now();
        let quiet = Duration::from_secs(60);
        let mut t = Throttle::default();
        let cut = t.throttled(t0, 8, quiet, "529").expect("a cut");
        assert_eq!(cut.limit, Some(4));
        // A burst: the same period does not cut again.
        assert_eq!(
            t.throttled(t0 + Duration::from_secs(5), 4, quiet, "529"),
            None
        );
        assert_eq!(t.tick(t0 + Duration::from_secs(30), quiet), None);
        // Still throttling after the period: halved again.
        let cut = t.throttled(t0 + Duration::from_secs(70), 4, quiet, "429");
        assert_eq!(cut.map(|c| c.limit), Some(Some(2)));
        let quiet_at = t.next_change(quiet).expect("a restore is due");
        assert_eq!(quiet_at, t0 + Duration::from_secs(130));
        let mut limits = Vec::new();
        let mut now = quiet_at;
        while let Some(change) = t.tick(now, quiet) {
            limits.push(change.limit);
            now += quiet;
        }
        assert_eq!(limits, [Some(3), Some(4), Some(5), Some(6), Some(7), None]);
        assert_eq!(t.limit, None);
    }

    #[test]
    fn throttle_never_goes_below_one() {
        let t0 = Instant::now();
        let quiet = Duration::from_secs(1);
        let mut t = Throttle::default();
        assert_eq!(
            t.throttled(t0, 1, quiet, "529").map(|c| c.limit),
            Some(Some(1))
        );
        assert_eq!(t.limit, Some(1));
        assert_eq!(
            t.throttled(t0 + Duration::from_secs(2), 1, quiet, "529"),
            None
        );
        assert_eq!(t.limit, Some(1));
        assert_eq!(
            t.tick(t0 + Duration::from_secs(4), quiet).map(|c| c.limit),
            Some(None)
        );
    }
}
