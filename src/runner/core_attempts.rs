//! The core's rules for attempts: whether an ended attempt is tried again and when (the
//! step's `retry`, a rate limit's reset), the relaunch itself (its own log files, `--resume`
//! with the retry prompt when the session has turns), the agent concurrency that API
//! throttling lowers, and the end of a run whose rate limit resets after `max_pause`.
//!
//! A part of [`super::Core`], as pure as the rest: time comes in as [`Now`], waiting is
//! [`Core::wake_at`] and a tick.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::*;

/// Whether an agent argv continues a session.
pub(super) fn is_resume(argv: &[String]) -> bool {
    argv.iter().any(|a| a == "--resume")
}

/// The argv of a retry that continues the session: `--session-id X` becomes `--resume X`, and
/// the prompt after `--` becomes `prompt`.
pub(super) fn resume_argv(argv: &[String], prompt: &str) -> Vec<String> {
    let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let mut out: Vec<String> = argv[..end]
        .iter()
        .map(|a| {
            if a == "--session-id" {
                "--resume".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    out.push("--".into());
    out.push(prompt.into());
    out
}

/// `argv` with the value of `--max-budget-usd` (before the prompt) set to `usd`.
pub(super) fn with_max_budget(argv: &[String], usd: f64) -> Vec<String> {
    let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    let mut out = argv.to_vec();
    if let Some(i) = out[..end].iter().position(|a| a == "--max-budget-usd") {
        if i + 1 < end {
            // Whole micro-dollars, never rounded up past what is left.
            let micro = (usd * 1e6).floor() / 1e6;
            out[i + 1] = micro.to_string();
        }
    }
    out
}

/// A log path of attempt `k`: `NNN-job.log` → `NNN-job.aK.log` (and `.stderr.log` alike).
fn attempt_path(path: &std::path::Path, k: u32) -> PathBuf {
    if k <= 1 {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.strip_suffix(".stderr.log") {
        Some(stem) => (stem.to_string(), "stderr.log"),
        None => (
            name.strip_suffix(".log").unwrap_or(&name).to_string(),
            "log",
        ),
    };
    path.with_file_name(format!("{stem}.a{k}.{ext}"))
}

/// Whether a session's totals show that it has turns to continue from.
fn has_turns(t: &SessionTotals) -> bool {
    !t.models.is_empty() || t.cost_usd > 0.0
}

/// Adds one attempt's usage into the sum of a step's attempts.
fn add_usage(
    into: &mut crate::agent::accounting::StepUsage,
    from: &crate::agent::accounting::StepUsage,
) {
    into.tokens.add(&from.tokens);
    into.cost_usd += from.cost_usd;
    into.is_estimate |= from.is_estimate;
    into.tool_calls_total += from.tool_calls_total;
    for (tool, n) in &from.tool_calls {
        *into.tool_calls.entry(tool.clone()).or_default() += n;
    }
    for (model, u) in &from.models {
        let entry = into.models.entry(model.clone()).or_default();
        entry.tokens.add(&u.tokens);
        entry.cost_usd += u.cost_usd;
    }
    into.api_retries += from.api_retries;
    into.rate_limits.extend(from.rate_limits.iter().cloned());
}

impl Core<'_> {
    /// The number of the step's current (or next first) attempt, from 1.
    pub(super) fn attempt_no(&self, id: StepId) -> u32 {
        self.attempts.get(&id).map_or(1, |a| a.number.max(1))
    }

    /// The step's log files for its current attempt.
    pub(super) fn attempt_logs(&self, id: StepId) -> (PathBuf, PathBuf) {
        let (log, stderr) = self.ctx.log_paths(&self.plan.steps[id]);
        let k = self.attempt_no(id);
        (attempt_path(&log, k), attempt_path(&stderr, k))
    }

    /// For an agent step, the session's totals before this process (when it resumes one).
    pub(super) fn prior_of(&self, id: StepId, argv: &[String]) -> Option<Option<SessionTotals>> {
        match &self.plan.steps[id].action {
            Action::Agent { session, .. } => Some(if is_resume(argv) {
                self.sessions.get(&session.id()).cloned()
            } else {
                None
            }),
            _ => None,
        }
    }

    /// Agent steps running now.
    fn agents_running(&self) -> usize {
        self.running
            .iter()
            .filter(|&&id| self.plan.steps[id].is_agent())
            .count()
    }

    /// Whether throttling allows no more agent steps now.
    pub(super) fn agents_full(&self) -> bool {
        self.throttle
            .limit
            .is_some_and(|limit| self.agents_running() >= limit)
    }

    /// Whether a step waiting for its retry may start now (besides the run's slot and delay).
    fn may_restart(&self, id: StepId) -> bool {
        let step = &self.plan.steps[id];
        let agent = step.is_agent();
        let job = &self.ctx.manifest.jobs[step.job];
        !(agent && (self.paused_until.is_some() || self.agents_full()))
            && job
                .max_parallel
                .is_none_or(|max| self.running_of_job[step.job] < max)
    }

    /// When a waiting retry (or an easing of throttling) wants a tick.
    pub(super) fn retry_wake(&self, now: Now) -> Option<Instant> {
        if self.stop.is_some() {
            return None;
        }
        let mut wake = self
            .throttle
            .next_change(self.ctx.manifest.settings.throttle_quiet);
        for (&id, &at) in &self.retry_at {
            let when = if at > now.mono {
                Some(at)
            } else if self.has_slot() && self.may_restart(id) {
                self.next_launch
            } else {
                None
            };
            wake = match (wake, when) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        wake.filter(|&t| t > now.mono)
    }

    /// For an agent step whose job has `max_usd`: what its instance's own budget has left.
    fn max_usd_left(&self, id: StepId) -> Option<f64> {
        let step = &self.plan.steps[id];
        if !step.is_agent() {
            return None;
        }
        let max = self.ctx.manifest.jobs[step.job].limit.usd?;
        let used = self
            .budgets
            .scopes_of(id)
            .iter()
            .map(|&s| &self.budgets.scopes[s])
            .find(|s| s.kind == crate::ledger::budget::ScopeKind::Job)
            .map_or(0.0, |s| s.used.usd.dollars());
        Some(max - used)
    }

    /// Launches a step whose retry is due, if one may start now. Returns whether it did
    /// anything (a launch, or a retry that a budget refused).
    pub(super) fn relaunch_due(&mut self, now: Now, fx: &mut Vec<Effect>) -> bool {
        if self.next_launch.is_some_and(|t| now.mono < t) {
            return false;
        }
        let due = self
            .retry_at
            .iter()
            .find(|&(&id, &at)| now.mono >= at && self.may_restart(id))
            .map(|(&id, _)| id);
        let Some(id) = due else {
            return false;
        };
        self.retry_at.remove(&id);
        if let Some(why) = self.budgets.refuse(id) {
            self.skip(id, Status::Blocked, format!("retry refused: {why}"), fx);
            self.end_in_frontier(id, Status::Blocked);
            self.fold_usage(id);
            self.release_idle_worktree(id, Status::Blocked, fx);
            return true;
        }
        match self.render(id) {
            Ok(mut rendered) => {
                let a = self.attempts.entry(id).or_default();
                a.number = a.number.max(1) + 1;
                a.api_retry = None;
                a.rate_limited_until = None;
                if a.resume_next {
                    let job = &self.ctx.manifest.jobs[self.plan.steps[id].job];
                    rendered.argv = resume_argv(&rendered.argv, &job.retry.prompt);
                }
                // Claude Code's own `--max-budget-usd` gets what the job's `max_usd` has left after
                // the earlier attempts, so that all of them together stay within it.
                if let Some(left) = self.max_usd_left(id) {
                    if left <= 0.0 {
                        let max = self.ctx.manifest.jobs[self.plan.steps[id].job].limit.usd;
                        let why = format!(
                            "not retried: the earlier attempts spent its max_usd (${:.2})",
                            max.unwrap_or_default()
                        );
                        self.skip(id, Status::Failed, why, fx);
                        self.end_in_frontier(id, Status::Failed);
                        self.fold_usage(id);
                        self.release_idle_worktree(id, Status::Failed, fx);
                        return true;
                    }
                    rendered.argv = with_max_budget(&rendered.argv, left);
                }
                self.stops[id] = None;
                self.spent[id] = Default::default();
                self.launch(now, id, rendered, fx);
                self.next_launch = Some(now.mono + self.ctx.startup_delay);
            }
            Err(why) => {
                let why = format!("failed before its retry started: {why}");
                self.skip(id, Status::Failed, why, fx);
                self.end_in_frontier(id, Status::Failed);
                self.fold_usage(id);
                self.release_idle_worktree(id, Status::Failed, fx);
            }
        }
        true
    }

    /// Claude Code retried an API call: remembered for the attempt's classification, and when
    /// it is throttling (429/529), the agent concurrency is halved.
    pub(super) fn api_retried(
        &mut self,
        now: Now,
        step: StepId,
        seen: ApiRetrySeen,
        fx: &mut Vec<Effect>,
    ) {
        let throttling = retry::is_throttling(&seen);
        let what = match (seen.status, &seen.error) {
            (Some(status), Some(error)) => format!("HTTP {status} {error}"),
            (Some(status), None) => format!("HTTP {status}"),
            (None, Some(error)) => error.clone(),
            (None, None) => "an API error".into(),
        };
        self.attempts.entry(step).or_default().api_retry = Some(seen);
        if !throttling {
            return;
        }
        let label = self.plan.steps[step].label();
        let running = self.agents_running();
        let quiet = self.ctx.manifest.settings.throttle_quiet;
        let what = format!("{what} in `{label}`");
        if let Some(change) = self.throttle.throttled(now.mono, running, quiet, &what) {
            fx.push(Effect::Report(Event::ConcurrencyChanged {
                limit: change.limit,
                reason: change.reason,
            }));
        }
    }

    /// Raises the agent concurrency after a quiet period.
    pub(super) fn ease_throttle(&mut self, now: Now, fx: &mut Vec<Effect>) {
        let quiet = self.ctx.manifest.settings.throttle_quiet;
        if let Some(change) = self.throttle.tick(now.mono, quiet) {
            fx.push(Effect::Report(Event::ConcurrencyChanged {
                limit: change.limit,
                reason: change.reason,
            }));
        }
    }

    /// A step met a rejected rate limit resetting at `until`: its attempt is continued after
    /// the reset; a reset later than `max_pause` ends the run instead.
    pub(super) fn rate_limit_hit(
        &mut self,
        now: Now,
        step: StepId,
        until: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        self.attempts.entry(step).or_default().rate_limited_until = Some(until);
        let max_pause = self.ctx.manifest.settings.max_pause;
        let wait = (until - now.wall).to_std().unwrap_or_default();
        if wait <= max_pause || self.stop.is_some_and(|s| s >= CancelReason::RateLimited) {
            return;
        }
        self.stop = Some(CancelReason::RateLimited);
        let label = self.plan.steps[step].label();
        fx.push(Effect::Report(Event::PauseTooLong {
            until,
            max_pause,
            reason: format!(
                "the rate limit `{label}` met resets at {}, in {}, later than max_pause ({}): the run ends as rate_limited",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                crate::duration::format(wait),
                crate::duration::format(max_pause),
            ),
        }));
        fx.push(Effect::Report(Event::StopRequested {
            cause: StopCause::RateLimited,
            signals: self.signals,
        }));
    }

    /// Whether the attempt that ended is tried again, how and when.
    pub(super) fn retry_decision(
        &mut self,
        now: Now,
        e: &Exited,
        status: Status,
        fx: &mut Vec<Effect>,
    ) -> Option<Next> {
        if self.stop.is_some() {
            return None;
        }
        let id = e.step;
        let result = e.outcome.as_ref().and_then(|o| o.result.as_ref());
        let (kind, until, number, free) = {
            let a = self.attempts.entry(id).or_default();
            let facts = retry::Facts {
                status,
                result,
                api_retry: a.api_retry.as_ref(),
                rate_limited: a.rate_limited_until.is_some(),
                spawn_error: e.spawn_error.is_some(),
            };
            let kind = retry::classify(&facts)?;
            let until = a
                .rate_limited_until
                .or_else(|| result.and_then(retry::usage_limit_reset));
            (kind, until, a.number.max(1), a.free)
        };
        let resume = self.can_resume(id);
        // A rate limit with a known reset is waited out, and costs no attempt.
        if let (RetryOn::RateLimit, Some(until)) = (kind, until) {
            if free >= MAX_FREE_ATTEMPTS {
                return None;
            }
            if self.attempts[&id].rate_limited_until.is_none() {
                // A usage-limit result without a rate_limit_event: pause launches as for one.
                if until > now.wall && self.paused_until.is_none_or(|p| p < until) {
                    self.paused_until = Some(until);
                    let label = self.plan.steps[id].label();
                    fx_pause(fx, until, &label);
                }
                self.rate_limit_hit(now, id, until, fx);
                if self.stop.is_some() {
                    return None;
                }
            }
            let delay = (until - now.wall).to_std().unwrap_or_default();
            return Some(Next {
                kind,
                delay,
                resume,
                counted: false,
            });
        }
        let policy = &self.ctx.manifest.jobs[self.plan.steps[id].job].retry;
        let counted = number - free;
        if !policy.on.contains(&kind) || counted >= policy.attempts {
            return None;
        }
        let unit = retry::jitter_unit(&self.ctx.run_id, id, number + 1);
        Some(Next {
            kind,
            delay: retry::backoff(policy, counted + 1, unit),
            resume,
            counted: true,
        })
    }

    /// Remembers the session's totals as an attempt launches.
    pub(super) fn note_launch(&mut self, id: StepId) {
        let prior = match &self.plan.steps[id].action {
            Action::Agent { session, .. } => self.sessions.get(&session.id()).cloned(),
            _ => None,
        };
        self.attempts.entry(id).or_default().prior = prior;
    }

    /// Whether a retry of the step continues its agent session: the session has turns, and
    /// this step made some of them (in this attempt or an earlier one). A step of a chain that
    /// failed before its first turn runs its own command again instead of "continue".
    fn can_resume(&self, id: StepId) -> bool {
        let Action::Agent { session, .. } = &self.plan.steps[id].action else {
            return false;
        };
        let Some(now) = self.sessions.get(&session.id()).filter(|t| has_turns(t)) else {
            return false;
        };
        let a = self.attempts.get(&id);
        a.is_some_and(|a| a.resume_next) || a.and_then(|a| a.prior.as_ref()) != Some(now)
    }

    /// The record of the attempt that just ended.
    fn attempt_record(
        &self,
        now: Now,
        e: &Exited,
        status: Status,
        kind: Option<RetryOn>,
        reason: Option<String>,
    ) -> AttemptRecord {
        let id = e.step;
        let a = self.attempts.get(&id);
        let usage = e.outcome.as_ref().map(|o| &o.usage);
        let record = &self.records[id];
        AttemptRecord {
            number: self.attempt_no(id),
            status: Some(status),
            kind,
            reason,
            started: record.started,
            finished: Some(now.wall),
            duration_secs: (e.duration.as_secs_f64() * 1000.0).round() / 1000.0,
            exit_code: e.exit.as_ref().and_then(|x| x.code),
            tokens: usage.map_or(0, |u| u.tokens.total()),
            cost_usd: usage.map_or(0.0, |u| u.cost_usd),
            is_estimate: usage.is_some_and(|u| u.is_estimate),
            resumed: is_resume(&record.argv),
            counted: a.is_none_or(|a| !a.continuations.contains(&self.attempt_no(id))),
            log: record.log.clone(),
        }
    }

    /// Ends an attempt that will be tried again: its record, the reports, the wait.
    pub(super) fn schedule_retry(
        &mut self,
        now: Now,
        e: &Exited,
        status: Status,
        reason: Option<String>,
        next: Next,
        fx: &mut Vec<Effect>,
    ) {
        let id = e.step;
        let why = reason
            .clone()
            .unwrap_or_else(|| status.as_str().to_string());
        let record = self.attempt_record(now, e, status, Some(next.kind), reason);
        let number = record.number;
        let job = &self.ctx.manifest.jobs[self.plan.steps[id].job];
        let of = job.retry.attempts;
        self.records[id].attempts.push(record);
        let a = self.attempts.entry(id).or_default();
        if let Some(u) = e.outcome.as_ref().map(|o| &o.usage) {
            add_usage(a.carried.get_or_insert_with(Default::default), u);
        }
        a.resume_next = next.resume;
        if !next.counted {
            a.free += 1;
            a.continuations.push(number + 1);
        }
        self.states[id] = Status::Pending;
        self.records[id].pid = None;
        self.retry_at.insert(id, now.mono + next.delay);
        let at = now.wall
            + chrono::Duration::from_std(next.delay).unwrap_or_else(|_| chrono::Duration::zero());
        fx.push(Effect::Report(Event::StepRetrying {
            step: id,
            label: self.plan.steps[id].label(),
            ended: number,
            status,
            kind: next.kind,
            reason: why,
            attempt: number + 1,
            of,
            delay: next.delay,
            at,
            resume: next.resume,
            counted: next.counted,
        }));
    }

    /// The step ended for good: its last attempt joins the records of the others, and its
    /// usage becomes the sum over its attempts.
    pub(super) fn close_attempts(&mut self, now: Now, e: &Exited, status: Status) {
        let id = e.step;
        if self.records[id].attempts.is_empty() {
            return;
        }
        let reason = self.records[id].reason.clone();
        let record = self.attempt_record(now, e, status, None, reason);
        self.records[id].attempts.push(record);
        self.fold_usage(id);
    }

    /// The run ended while steps waited for their retry: they will be cancelled, with what
    /// their attempts spent.
    pub(super) fn drop_waiting_retries(&mut self) {
        for id in std::mem::take(&mut self.retry_at).into_keys() {
            self.fold_usage(id);
        }
    }

    /// Adds the usage of a step's earlier attempts into its record's usage.
    fn fold_usage(&mut self, id: StepId) {
        let Some(carried) = self.attempts.get_mut(&id).and_then(|a| a.carried.take()) else {
            return;
        };
        match &mut self.records[id].usage {
            Some(usage) => add_usage(usage, &carried),
            None => self.records[id].usage = Some(carried),
        }
    }
}

/// The report of a pause that a usage-limit result (not a `rate_limit_event`) started.
fn fx_pause(fx: &mut Vec<Effect>, until: DateTime<Utc>, label: &str) {
    fx.push(Effect::Report(Event::LaunchesPaused {
        until,
        reason: format!("Claude Code's usage limit was reached in `{label}`"),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_resumed_retry_swaps_the_session_flag_and_the_prompt() {
        let argv = strings(&["claude", "-p", "--session-id", "U", "--", "/do it"]);
        assert_eq!(
            resume_argv(&argv, "Continue."),
            strings(&["claude", "-p", "--resume", "U", "--", "Continue."])
        );
        let resumed = strings(&["claude", "--resume", "U", "--", "/next"]);
        assert_eq!(
            resume_argv(&resumed, "Go on."),
            strings(&["claude", "--resume", "U", "--", "Go on."])
        );
    }

    #[test]
    fn each_attempt_has_its_own_logs() {
        let log = std::path::Path::new("/r/logs/003-build-2.log");
        assert_eq!(attempt_path(log, 1), log);
        assert_eq!(
            attempt_path(log, 3),
            std::path::Path::new("/r/logs/003-build-2.a3.log")
        );
        let err = std::path::Path::new("/r/logs/003-build.stderr.log");
        assert_eq!(
            attempt_path(err, 2),
            std::path::Path::new("/r/logs/003-build.a2.stderr.log")
        );
    }
}
