//! The dispatcher's pure core: the run state and one function, [`Core::handle`], that takes an
//! [`Input`] (an executor's event, a signal, the clock's beat) and returns the [`Effect`]s to apply
//! (launch, stop, kill, ledger write, report).
//!
//! It owns every decision of a run: what launches when (`max_parallel`, `startup_delay`, rate-limit
//! pauses, budgets that refuse), each step's final status, the skip of dependents, and the one
//! ordered [`CancelReason`]. It never does I/O, never spawns, never reads a clock (time comes in as
//! [`Now`]) and never waits: the shell in `super::dispatcher` applies the effects.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::executor::{ExecutorEvent, Exited, Launch};
use super::writer::Write;
use super::{RunContext, StepRecord};
use crate::agent::Session;
use crate::agent::accounting::{RateLimitRecord, SessionTotals, UsageUpdate};
use crate::agent::stream::TokenCounts;
use crate::events::Status;
use crate::events::{Event, StopCause};
use crate::ledger::budget::{self, Budgets};
use crate::ledger::store::StepRow;
use crate::ledger::{Delta, Kind};
use crate::manifest::BudgetMode;
use crate::plan::{Action, Frontier, Plan, StepId};

/// The clock, as the shell read it when an input arrived.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    /// The real clock (only the shell calls this).
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }
}

/// Why steps are being stopped, weakest first. A stronger reason replaces a weaker one, never the
/// reverse: an interrupt overrides a fail-fast stop, a second signal overrides the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CancelReason {
    /// A step failed and `fail_fast` is on.
    FailFast,
    /// A budget the step belongs to is spent (block mode); only that budget's steps stop.
    BudgetStop,
    /// SIGINT, SIGTERM or SIGHUP reached orch: stop with the ladder.
    Interrupted,
    /// A second signal: kill every group at once.
    Killed,
}

impl CancelReason {
    /// The cause reporters and the results file know (a kill is an interrupt, signalled twice).
    pub fn cause(self) -> Option<StopCause> {
        match self {
            CancelReason::FailFast => Some(StopCause::FailFast),
            CancelReason::BudgetStop => None,
            CancelReason::Interrupted | CancelReason::Killed => Some(StopCause::Interrupted),
        }
    }
}

/// Why one step was stopped, as far as the core knows: its own timeout came first (and stays),
/// or the strongest cancel reason that reached it, with the words for its record.
#[derive(Clone, Debug, PartialEq)]
enum StepStop {
    TimedOut,
    Cancel(CancelReason, String),
}

/// What the core hears: executor events, signals and the clock.
pub enum Input {
    /// What an executor said while its step runs (the shell keeps the step's stopper).
    Executor(ExecutorEvent),
    /// The executor ended normally.
    Exited(Box<Exited>),
    /// The executor's task panicked: the step failed, whatever its process did.
    Panicked { step: StepId, message: String },
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// Time passed (a launch delay or a rate-limit pause may be over).
    Tick,
}

/// What the shell must do, in order.
#[derive(Debug)]
pub enum Effect {
    /// Start an executor for this step.
    Launch(Box<Launch>),
    /// Stop the step's group with the ladder (SIGINT first).
    Stop(StepId),
    /// SIGKILL the step's group.
    Kill(StepId),
    /// Queue a ledger write (the writer thread commits it).
    Ledger(Write),
    /// Hand an event to the reporters.
    Report(Event),
    /// A third signal: leave at once (the guardian kills every group).
    Exit,
}

/// The run state and its rules.
pub struct Core<'a> {
    ctx: &'a RunContext,
    plan: &'a Plan,
    pub states: Vec<Status>,
    pub records: Vec<StepRecord>,
    /// What may start next, kept up to date as steps end.
    frontier: Frontier,
    sessions: HashMap<Uuid, SessionTotals>,
    /// Launched and not yet ended (an executor exists for each).
    running: BTreeSet<StepId>,
    /// Running steps whose process was spawned (the shell has their stoppers).
    spawned: BTreeSet<StepId>,
    /// No launch before this (`startup_delay` after the previous one).
    next_launch: Option<Instant>,
    /// The run-wide stop, if any: no launches, every running step stopped.
    pub stop: Option<CancelReason>,
    signals: u32,
    pub budgets: Budgets,
    /// Each step's last known spend, to turn updates into deltas.
    spent: Vec<(TokenCounts, f64)>,
    stops: Vec<Option<StepStop>>,
    /// Claude Code reported a rejected rate limit: no agent step starts before this.
    paused_until: Option<DateTime<Utc>>,
}

impl<'a> Core<'a> {
    pub fn new(ctx: &'a RunContext, plan: &'a Plan, budgets: Budgets) -> Self {
        let n = plan.steps.len();
        Core {
            ctx,
            plan,
            states: vec![Status::Pending; n],
            records: (0..n).map(|_| StepRecord::default()).collect(),
            frontier: Frontier::new(plan),
            sessions: HashMap::new(),
            running: BTreeSet::new(),
            spawned: BTreeSet::new(),
            next_launch: None,
            stop: None,
            signals: 0,
            budgets,
            spent: vec![(TokenCounts::default(), 0.0); n],
            stops: vec![None; n],
            paused_until: None,
        }
    }

    /// Takes one input at `now`; returns what to do about it (launches that became possible
    /// included).
    pub fn handle(&mut self, now: Now, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        let label = |id: StepId| self.plan.steps[id].label();
        match input {
            Input::Executor(ExecutorEvent::Started { step, pid }) => {
                self.spawned.insert(step);
                self.records[step].pid = Some(pid);
                fx.push(Effect::Report(Event::StepStarted {
                    step,
                    label: label(step),
                    pid,
                    log: self.records[step].log.clone(),
                    at: self.records[step].started.unwrap_or(now.wall),
                }));
                // A stop asked for while the process was starting reaches it now.
                if let Some(StepStop::Cancel(reason, _)) = &self.stops[step] {
                    fx.push(Effect::Stop(step));
                    if *reason >= CancelReason::Killed {
                        fx.push(Effect::Kill(step));
                    }
                }
            }
            Input::Executor(ExecutorEvent::Output { step, line }) => {
                fx.push(Effect::Report(Event::StepOutput {
                    step,
                    label: label(step),
                    line,
                }))
            }
            Input::Executor(ExecutorEvent::Usage { step, update }) => {
                self.spend(now, step, &update, &mut fx);
                fx.push(Effect::Report(Event::UsageRecorded {
                    step,
                    label: label(step),
                    update,
                }));
            }
            Input::Executor(ExecutorEvent::RateLimited { step, record }) => {
                self.rate_limited(now, step, record, &mut fx)
            }
            Input::Executor(ExecutorEvent::Model { step, model }) => {
                self.records[step].model = Some(model)
            }
            Input::Executor(ExecutorEvent::UsageAnomaly { step, anomaly }) => {
                fx.push(Effect::Report(Event::UsageAnomaly {
                    step,
                    label: label(step),
                    field: anomaly.field.clone(),
                    what: anomaly.to_string(),
                }))
            }
            Input::Executor(ExecutorEvent::LogWriteFailed { step, fault }) => {
                fx.push(Effect::Report(Event::LogWriteFailed {
                    step,
                    label: label(step),
                    stream: format!("{:?}", fault.stream).to_lowercase(),
                    path: fault.path,
                    error: fault.error,
                    bytes_lost: fault.bytes_lost,
                }))
            }
            Input::Executor(ExecutorEvent::TimedOut { step }) => {
                if self.stops[step].is_none() {
                    self.stops[step] = Some(StepStop::TimedOut);
                }
            }
            Input::Exited(exited) => self.finish(now, *exited, &mut fx),
            Input::Panicked { step, message } => {
                let mut exited = Exited::panicked(step, message);
                if let Some(started) = self.records[step].started {
                    exited.duration = (now.wall - started).to_std().unwrap_or_default();
                }
                self.finish(now, exited, &mut fx);
            }
            Input::Signal => self.interrupt(&mut fx),
            Input::Tick => {}
        }
        self.advance(now, &mut fx);
        fx
    }

    /// Whether the run is over once no executor is left: nothing runs and nothing more may start.
    pub fn is_over(&self) -> bool {
        self.running.is_empty() && (self.stop.is_some() || self.frontier.is_empty())
    }

    /// When the core wants a [`Input::Tick`]: the next launch slot, or the end of a pause.
    pub fn wake_at(&self, now: Now) -> Option<Instant> {
        let launch = if self.stop.is_none() && self.has_slot() && self.next_ready().is_some() {
            self.next_launch
        } else {
            None
        };
        let resume = self.paused_until.map(|until| {
            now.mono + (until - now.wall).to_std().unwrap_or_default() + Duration::from_millis(1)
        });
        match (launch, resume) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The run is over: whatever never ran, because of a stop, is cancelled.
    pub fn finish_run(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for id in 0..self.states.len() {
            if self.states[id] == Status::Pending {
                let reason = match self.stop {
                    Some(CancelReason::FailFast) => "cancelled: a step failed and fail_fast is on",
                    _ => "cancelled: the run was interrupted",
                };
                self.skip(id, Status::Cancelled, reason.to_string(), &mut fx);
            }
        }
        fx
    }

    /// Skips the doomed, resumes a pause that is over, and launches what may start now.
    fn advance(&mut self, now: Now, fx: &mut Vec<Effect>) {
        loop {
            self.skip_doomed(fx);
            if self.paused_until.is_some_and(|until| now.wall >= until) {
                self.paused_until = None;
                fx.push(Effect::Report(Event::LaunchesResumed));
            }
            if self.stop.is_some() || !self.has_slot() {
                return;
            }
            let Some(id) = self.next_ready() else {
                return;
            };
            if self.next_launch.is_some_and(|t| now.mono < t) {
                return;
            }
            self.frontier.remove(id);
            match self.budgets.refuse(id) {
                Some(why) => {
                    self.skip(id, Status::Blocked, format!("blocked: {why}"), fx);
                    self.frontier.ended(self.plan, id, false);
                }
                None => {
                    self.launch(now, id, fx);
                    // Cannot overflow: durations are capped at a century when they are read.
                    self.next_launch = Some(now.mono + self.ctx.startup_delay);
                }
            }
        }
    }

    fn has_slot(&self) -> bool {
        self.ctx
            .max_parallel
            .is_none_or(|max| self.running.len() < max)
    }

    /// The next step to launch; while launches of agents are paused, only process steps.
    fn next_ready(&self) -> Option<StepId> {
        let paused = self.paused_until.is_some();
        self.frontier
            .ready(self.plan)
            .find(|&id| !(paused && matches!(self.plan.steps[id].action, Action::Agent { .. })))
    }

    fn launch(&mut self, now: Now, id: StepId, fx: &mut Vec<Effect>) {
        let step = &self.plan.steps[id];
        let job = &self.ctx.manifest.jobs[step.job];
        let (log, stderr_log) = self.ctx.log_paths(step);
        let agent = match &step.action {
            Action::Agent { session, .. } => Some(match session {
                Session::New(_) => None,
                Session::Resume(id) => self.sessions.get(id).cloned(),
            }),
            _ => None,
        };
        self.states[id] = Status::Running;
        self.running.insert(id);
        let record = &mut self.records[id];
        record.log = log.clone();
        record.stderr_log = stderr_log.clone();
        record.started = Some(now.wall);
        record.model.clone_from(&step.model);
        let (command, session, resume) = match &step.action {
            Action::Agent {
                command, session, ..
            } => (
                command.clone(),
                Some(session.id().to_string()),
                matches!(session, Session::Resume(_)),
            ),
            _ => (None, None, false),
        };
        fx.push(Effect::Ledger(Write::BeginStep {
            row: StepRow {
                step: id,
                job: step.job_name.clone(),
                label: step.label(),
                command,
                session_id: session,
                resume,
                is_agent: matches!(step.action, Action::Agent { .. }),
                log: log.clone(),
            },
            at: now.wall,
        }));
        fx.push(Effect::Launch(Box::new(Launch {
            step: id,
            argv: step.argv.clone(),
            cwd: job.workspace.clone(),
            env: job.env.clone(),
            log,
            stderr_log,
            timeout: job.timeout,
            ladder: self.ctx.ladder,
            agent,
            job: step.job_name.clone(),
        })));
    }

    fn rate_limited(
        &mut self,
        now: Now,
        step: StepId,
        record: RateLimitRecord,
        fx: &mut Vec<Effect>,
    ) {
        let rejected = record.status == "rejected";
        let until = record
            .resets_at
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0));
        let label = self.plan.steps[step].label();
        fx.push(Effect::Report(Event::RateLimited {
            step,
            label: label.clone(),
            record,
        }));
        if let (true, Some(until)) = (rejected, until) {
            if until > now.wall && self.paused_until.is_none_or(|p| p < until) {
                self.paused_until = Some(until);
                fx.push(Effect::Report(Event::LaunchesPaused {
                    until,
                    reason: format!("Claude Code's rate limit was reached in `{label}`"),
                }));
            }
        }
    }

    fn finish(&mut self, now: Now, e: Exited, fx: &mut Vec<Effect>) {
        let id = e.step;
        if !self.running.remove(&id) {
            // An executor ends once; a second report of its end (a panic after it sent its exit)
            // changes nothing.
            return;
        }
        self.spawned.remove(&id);
        if let Some(o) = &e.outcome {
            if o.usage.model.is_some() {
                self.records[id].model = o.usage.model.clone();
            }
            let update = UsageUpdate {
                tokens: o.usage.tokens,
                cost_usd: o.usage.cost_usd,
                is_estimate: o.usage.is_estimate,
                tool_calls_total: o.usage.tool_calls_total,
            };
            self.spend(now, id, &update, fx);
        }
        let (status, reason) = self.verdict(&e);
        fx.push(Effect::Ledger(Write::FinishStep {
            step: id,
            status: status.as_str(),
            at: now.wall,
        }));
        if let (Some(totals), Action::Agent { session, .. }) =
            (&e.session_totals, &self.plan.steps[id].action)
        {
            self.sessions.insert(session.id(), totals.clone());
            fx.push(Effect::Ledger(Write::SaveSession {
                id: session.id().to_string(),
                job: self.plan.steps[id].job_name.clone(),
                totals: serde_json::to_string(totals).unwrap_or_default(),
                at: now.wall,
            }));
        }
        self.states[id] = status;
        self.frontier
            .ended(self.plan, id, status == Status::Completed);
        let record = &mut self.records[id];
        record.finished = Some(now.wall);
        record.duration = e.duration;
        record.exit_code = e.exit.as_ref().and_then(|x| x.code);
        record.signal = e.exit.as_ref().and_then(|x| x.signal);
        record.leaked = e
            .exit
            .as_ref()
            .map(|x| x.leaked.clone())
            .unwrap_or_default();
        record.log_faults = e
            .exit
            .as_ref()
            .map(|x| x.log_faults.clone())
            .unwrap_or_default();
        record.usage = e.outcome.as_ref().map(|o| o.usage.clone());
        record.result = e.outcome.as_ref().and_then(|o| o.result.clone());
        record.reason = reason.clone();
        if !e.tail.is_empty() {
            record.tail = e.tail;
        }
        if e.spawn_error.is_some() {
            // Nothing ran, so there is no log worth pointing at.
            record.log = Default::default();
            record.stderr_log = Default::default();
        }
        fx.push(Effect::Report(Event::StepFinished {
            step: id,
            label: self.plan.steps[id].label(),
            status,
            exit_code: record.exit_code,
            signal: record.signal,
            duration: e.duration,
            usage: record.usage.clone().map(Box::new),
            leaked: record.leaked.clone(),
            reason,
            log: record.log.clone(),
            stderr_log: record.stderr_log.clone(),
        }));
        if self.ctx.fail_fast && matches!(status, Status::Failed | Status::TimedOut) {
            self.raise(CancelReason::FailFast, fx);
        }
    }

    /// The final status of a step attempt and, unless it completed, why.
    fn verdict(&self, e: &Exited) -> (Status, Option<String>) {
        if let Some(error) = &e.spawn_error {
            return (Status::Failed, Some(error.clone()));
        }
        let Some(exit) = e.exit.as_ref() else {
            return (Status::Failed, Some("no exit status".into()));
        };
        let how = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_string(),
        };
        let timed_out = || {
            let timeout = self.ctx.manifest.jobs[self.plan.steps[e.step].job].timeout;
            let after = crate::duration::format(timeout);
            (
                Status::TimedOut,
                Some(format!("timed out after {after} ({how})")),
            )
        };
        match &self.stops[e.step] {
            Some(StepStop::TimedOut) => return timed_out(),
            Some(StepStop::Cancel(CancelReason::BudgetStop, why)) => {
                return (
                    Status::BudgetExceeded,
                    Some(format!("stopped: {why} ({how})")),
                );
            }
            // A step that ended on its own before the stop reached it keeps its own status.
            Some(StepStop::Cancel(_, why)) if exit.stopped_by.is_some() => {
                return (Status::Cancelled, Some(format!("stopped: {why} ({how})")));
            }
            _ => {}
        }
        if e.timed_out {
            return timed_out();
        }
        match &e.outcome {
            Some(o) if o.success => (Status::Completed, None),
            Some(o) => {
                let why = match &o.result {
                    Some(r) if r.is_error => {
                        let what = crate::agent::failure::claude_error(r);
                        format!("Claude Code reported an error: {what} ({how})")
                    }
                    Some(_) => how,
                    None => format!("no result line from Claude Code ({how})"),
                };
                (Status::Failed, Some(why))
            }
            None if exit.success() => (Status::Completed, None),
            None => (Status::Failed, Some(how)),
        }
    }

    /// Books a step's new running spend: a ledger write, the budget scopes (threshold warnings),
    /// and in block mode the stop of every step of a spent scope.
    fn spend(&mut self, now: Now, id: StepId, update: &UsageUpdate, fx: &mut Vec<Effect>) {
        let (old_tokens, old_usd) = &self.spent[id];
        let delta = Delta::between(old_tokens, *old_usd, &update.tokens, update.cost_usd);
        if delta.is_zero() {
            return;
        }
        self.spent[id] = (update.tokens, update.cost_usd);
        let kind = if update.is_estimate {
            Kind::Estimate
        } else {
            Kind::Final
        };
        let crossings = self.budgets.apply(id, delta.tokens(), delta.usd);
        fx.push(Effect::Ledger(Write::Usage {
            step: id,
            model: self.records[id].model.clone(),
            kind,
            delta,
            at: now.wall,
        }));
        for crossing in crossings {
            let scope = &self.budgets.scopes[crossing.scope];
            let what = if crossing.percent >= 100 {
                "reached its limit"
            } else {
                "is at 80 %"
            };
            fx.push(Effect::Report(Event::BudgetWarning {
                scope: scope.name.clone(),
                percent: crossing.percent,
                message: format!(
                    "the {} budget {what}: {}",
                    scope.name,
                    budget::describe(scope)
                ),
            }));
        }
        for &s in self.budgets.scopes_of(id) {
            let scope = &self.budgets.scopes[s];
            fx.push(Effect::Report(Event::BudgetUpdated {
                scope: scope.name.clone(),
                kind: scope.kind,
                tokens_used: scope.used.tokens,
                usd_used: scope.used.usd.dollars(),
                tokens_limit: scope.limit.tokens,
                usd_limit: scope.limit.usd,
            }));
        }
        if self.budgets.mode == BudgetMode::Block {
            self.stop_spent_scopes(fx);
        }
    }

    /// Stops (SIGINT first, so Claude Code reports its final cost) every running step that
    /// belongs to a spent scope.
    fn stop_spent_scopes(&mut self, fx: &mut Vec<Effect>) {
        let running: Vec<StepId> = self.running.iter().copied().collect();
        for id in running {
            if let Some(scope) = self.budgets.spent_scope(id) {
                let why = format!(
                    "the {} budget is spent ({})",
                    scope.name,
                    budget::describe(scope)
                );
                self.stop_step(id, CancelReason::BudgetStop, why, fx);
            }
        }
    }

    /// Gives a running step a stop reason, unless a stronger one (or its timeout) came first,
    /// and stops (or kills) its process if it has one.
    fn stop_step(&mut self, id: StepId, reason: CancelReason, why: String, fx: &mut Vec<Effect>) {
        let stronger = match &self.stops[id] {
            None => true,
            Some(StepStop::TimedOut) => false,
            Some(StepStop::Cancel(old, _)) => reason > *old,
        };
        if stronger {
            self.stops[id] = Some(StepStop::Cancel(reason, why));
        }
        if !self.spawned.contains(&id) {
            return;
        }
        // A kill reaches every group, a timed-out one included; its status stays `timed_out`.
        if reason >= CancelReason::Killed {
            fx.push(Effect::Kill(id));
        } else if stronger {
            fx.push(Effect::Stop(id));
        }
    }

    fn skip_doomed(&mut self, fx: &mut Vec<Effect>) {
        // Once the run is stopping, what has not run is cancelled (at the end), not skipped.
        if self.stop.is_some() {
            return;
        }
        loop {
            let doomed = self.frontier.take_doomed();
            if doomed.is_empty() {
                return;
            }
            for (id, because) in doomed {
                let dep = &self.plan.steps[because];
                let reason = format!(
                    "skipped: `{}` {}",
                    dep.label(),
                    self.states[because].as_str()
                );
                self.skip(id, Status::Skipped, reason, fx);
                self.frontier.ended(self.plan, id, false);
            }
        }
    }

    fn skip(&mut self, id: StepId, status: Status, reason: String, fx: &mut Vec<Effect>) {
        self.states[id] = status;
        self.records[id].reason = Some(reason.clone());
        fx.push(Effect::Report(Event::StepSkipped {
            step: id,
            label: self.plan.steps[id].label(),
            status,
            reason,
        }));
    }

    fn interrupt(&mut self, fx: &mut Vec<Effect>) {
        self.signals += 1;
        match self.signals {
            1 => self.raise(CancelReason::Interrupted, fx),
            2 => self.raise(CancelReason::Killed, fx),
            // The guardian kills every group once orch is gone.
            _ => fx.push(Effect::Exit),
        }
    }

    /// Raises the run-wide stop to `reason` if it is stronger than the current one, and applies
    /// it to every running step.
    fn raise(&mut self, reason: CancelReason, fx: &mut Vec<Effect>) {
        if self.stop.is_some_and(|old| old >= reason) {
            return;
        }
        self.stop = Some(reason);
        let cause = reason.cause().unwrap_or(StopCause::Interrupted);
        fx.push(Effect::Report(Event::StopRequested {
            cause,
            signals: self.signals,
        }));
        let why = match reason {
            CancelReason::FailFast => "a step failed and fail_fast is on",
            CancelReason::Killed => "the run was interrupted twice, killed",
            _ => "the run was interrupted",
        };
        let running: Vec<StepId> = self.running.iter().copied().collect();
        for id in running {
            self.stop_step(id, reason, why.to_string(), fx);
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
