//! The dispatcher: the single owner of run state. It launches ready steps (bounded by
//! `max_parallel`, staggered by `startup_delay`), turns executor reports into events, decides each
//! step's final status, skips the dependents of failures, and handles stop requests (signals,
//! `fail_fast`). Only the dispatcher decides to stop a step.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::executor::{self, Exited, Launch, Report};
use super::{RunContext, StepRecord};
use crate::agent::Session;
use crate::agent::accounting::{SessionTotals, UsageUpdate};
use crate::agent::stream::TokenCounts;
use crate::events::{Event, StopCause};
use crate::ledger::budget::{self, Budgets};
use crate::ledger::store::StepRow;
use crate::ledger::{Delta, Kind, Ledger};
use crate::manifest::BudgetMode;
use crate::plan::{Action, Frontier, Plan, Status, StepId};
use crate::process::{Guardian, Stopper};

pub struct Dispatcher<'a> {
    ctx: &'a RunContext,
    plan: &'a Plan,
    guardian: Arc<Guardian>,
    pub states: Vec<Status>,
    pub records: Vec<StepRecord>,
    /// What may start next, kept up to date as steps end.
    frontier: Frontier,
    stoppers: HashMap<StepId, Stopper>,
    sessions: HashMap<Uuid, SessionTotals>,
    running: usize,
    next_launch: Instant,
    pub stop: Option<StopCause>,
    signals: u32,
    pub budgets: Budgets,
    ledger: Ledger,
    /// Each step's last known spend, to turn updates into deltas.
    spent: Vec<(TokenCounts, f64)>,
    /// Steps stopped because a budget they belong to was spent, and why.
    budget_stops: HashMap<StepId, String>,
    /// Claude Code reported a rejected rate limit: no agent step starts before this.
    paused_until: Option<chrono::DateTime<Utc>>,
}

impl<'a> Dispatcher<'a> {
    pub fn new(
        ctx: &'a RunContext,
        plan: &'a Plan,
        guardian: Arc<Guardian>,
        budgets: Budgets,
        ledger: Ledger,
    ) -> Self {
        Dispatcher {
            ctx,
            plan,
            guardian,
            states: vec![Status::Pending; plan.steps.len()],
            frontier: Frontier::new(plan),
            records: (0..plan.steps.len())
                .map(|_| StepRecord::default())
                .collect(),
            stoppers: HashMap::new(),
            sessions: HashMap::new(),
            running: 0,
            next_launch: Instant::now(),
            stop: None,
            signals: 0,
            budgets,
            ledger,
            spent: vec![(TokenCounts::default(), 0.0); plan.steps.len()],
            budget_stops: HashMap::new(),
            paused_until: None,
        }
    }

    /// The ledger, once the run is over (to record how it ended).
    pub fn into_ledger(self) -> Ledger {
        self.ledger
    }

    /// Runs the plan to its end, handing every event to `report`.
    pub async fn run(&mut self, report: &mut dyn FnMut(&Event)) -> std::io::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Report>(1024);
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        loop {
            self.skip_doomed(report);
            self.resume_if_due(report);
            // With ready agent steps waiting out a rate-limit pause, the frontier is not empty.
            if self.running == 0 && (self.stop.is_some() || self.frontier.is_empty()) {
                break;
            }
            let ready = self.next_ready();
            let can_launch = ready.is_some() && self.stop.is_none() && self.has_slot();
            if can_launch && Instant::now() >= self.next_launch {
                let id = ready.expect("checked above");
                self.frontier.remove(id);
                match self.budgets.refuse(id) {
                    Some(why) => {
                        self.skip(id, Status::Blocked, format!("blocked: {why}"), report);
                        self.frontier.ended(self.plan, id, false);
                    }
                    None => self.launch(id, &tx, report),
                }
                continue;
            }
            let paused = self.pause_left();
            tokio::select! {
                Some(msg) = rx.recv() => self.handle(msg, report),
                () = tokio::time::sleep_until(self.next_launch), if can_launch => {}
                () = tokio::time::sleep(paused.unwrap_or_default()), if paused.is_some() && self.stop.is_none() => {}
                _ = sigint.recv() => self.interrupt(report),
                _ = sigterm.recv() => self.interrupt(report),
            }
        }
        // Whatever never ran, because of a stop, is cancelled.
        for id in 0..self.states.len() {
            if self.states[id] == Status::Pending {
                let reason = match self.stop {
                    Some(StopCause::FailFast) => "cancelled: a step failed and fail_fast is on",
                    _ => "cancelled: the run was interrupted",
                };
                self.skip(id, Status::Cancelled, reason.to_string(), report);
            }
        }
        Ok(())
    }

    fn has_slot(&self) -> bool {
        self.ctx.max_parallel.is_none_or(|max| self.running < max)
    }

    /// The next step to launch; while launches of agents are paused, only process steps.
    fn next_ready(&self) -> Option<StepId> {
        let paused = self.paused_until.is_some();
        self.frontier
            .ready(self.plan)
            .find(|&id| !(paused && matches!(self.plan.steps[id].action, Action::Agent { .. })))
    }

    fn pause_left(&self) -> Option<std::time::Duration> {
        self.paused_until
            .map(|until| (until - Utc::now()).to_std().unwrap_or_default())
    }

    fn resume_if_due(&mut self, report: &mut dyn FnMut(&Event)) {
        if self.paused_until.is_some_and(|until| Utc::now() >= until) {
            self.paused_until = None;
            report(&Event::LaunchesResumed);
        }
    }

    fn launch(&mut self, id: StepId, tx: &mpsc::Sender<Report>, report: &mut dyn FnMut(&Event)) {
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
        let launch = Launch {
            step: id,
            argv: step.argv.clone(),
            cwd: job.workspace.clone(),
            env: job.env.clone(),
            log: log.clone(),
            stderr_log: stderr_log.clone(),
            timeout: job.timeout,
            ladder: self.ctx.ladder,
            agent,
        };
        self.states[id] = Status::Running;
        self.records[id].log = log;
        self.records[id].stderr_log = stderr_log;
        self.records[id].started = Some(Utc::now());
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
        let row = StepRow {
            step: id,
            job: step.job_name.clone(),
            label: step.label(),
            command,
            session_id: session,
            resume,
            is_agent: matches!(step.action, Action::Agent { .. }),
            log: self.records[id].log.clone(),
        };
        if let Err(e) = self.ledger.begin_step(&self.ctx.run_id, &row, Utc::now()) {
            report(&Event::LedgerFailed {
                error: e.to_string(),
            });
        }
        self.running += 1;
        self.next_launch = Instant::now() + self.ctx.startup_delay;
        tokio::spawn(executor::execute(launch, self.guardian.clone(), tx.clone()));
    }

    fn handle(&mut self, msg: Report, report: &mut dyn FnMut(&Event)) {
        let label = |id: StepId| self.plan.steps[id].label();
        match msg {
            Report::Started { step, pid, stopper } => {
                // A stop asked for while the process was starting reaches it now.
                if self.stop.is_some() {
                    stopper.stop(self.ctx.ladder);
                    if self.signals >= 2 {
                        stopper.kill();
                    }
                }
                self.stoppers.insert(step, stopper);
                self.records[step].pid = Some(pid);
                report(&Event::StepStarted {
                    step,
                    label: label(step),
                    pid,
                    log: self.records[step].log.clone(),
                    at: self.records[step].started.unwrap_or_else(Utc::now),
                });
            }
            Report::Output { step, line } => report(&Event::StepOutput {
                step,
                label: label(step),
                line,
            }),
            Report::Usage { step, update } => {
                self.spend(step, &update, report);
                report(&Event::UsageRecorded {
                    step,
                    label: self.plan.steps[step].label(),
                    update,
                });
            }
            Report::RateLimited { step, record } => {
                let rejected = record.status == "rejected";
                let until = record
                    .resets_at
                    .and_then(|t| chrono::DateTime::<Utc>::from_timestamp(t, 0));
                let label = self.plan.steps[step].label();
                report(&Event::RateLimited {
                    step,
                    label: label.clone(),
                    record,
                });
                if let (true, Some(until)) = (rejected, until) {
                    if until > Utc::now() && self.paused_until.is_none_or(|p| p < until) {
                        self.paused_until = Some(until);
                        report(&Event::LaunchesPaused {
                            until,
                            reason: format!("Claude Code's rate limit was reached in `{label}`"),
                        });
                    }
                }
            }
            Report::Model { step, model } => self.records[step].model = Some(model),
            Report::UsageAnomaly { step, anomaly } => report(&Event::UsageAnomaly {
                step,
                label: self.plan.steps[step].label(),
                field: anomaly.field.clone(),
                what: anomaly.to_string(),
            }),
            Report::Exited(exited) => self.finish(*exited, report),
            Report::LogWriteFailed { step, fault } => report(&Event::LogWriteFailed {
                step,
                label: label(step),
                stream: format!("{:?}", fault.stream).to_lowercase(),
                path: fault.path,
                error: fault.error,
                bytes_lost: fault.bytes_lost,
            }),
        }
    }

    fn finish(&mut self, e: Exited, report: &mut dyn FnMut(&Event)) {
        let id = e.step;
        self.running -= 1;
        self.stoppers.remove(&id);
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
            self.spend(id, &update, report);
        }
        let (status, reason) = self.verdict(&e);
        if let Err(err) = self
            .ledger
            .finish_step(&self.ctx.run_id, id, status.as_str(), Utc::now())
        {
            report(&Event::LedgerFailed {
                error: err.to_string(),
            });
        }
        if let (Some(totals), Action::Agent { session, .. }) =
            (&e.session_totals, &self.plan.steps[id].action)
        {
            self.sessions.insert(session.id(), totals.clone());
            let json = serde_json::to_string(totals).unwrap_or_default();
            let _ = self.ledger.save_session(
                &session.id().to_string(),
                &self.plan.steps[id].job_name,
                &json,
                Utc::now(),
            );
        }
        self.states[id] = status;
        self.frontier
            .ended(self.plan, id, status == Status::Completed);
        let record = &mut self.records[id];
        record.finished = Some(Utc::now());
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
        record.tail = e.tail;
        if e.spawn_error.is_some() {
            // Nothing ran, so there is no log worth pointing at.
            record.log = Default::default();
            record.stderr_log = Default::default();
        }
        report(&Event::StepFinished {
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
        });
        if self.ctx.fail_fast
            && matches!(status, Status::Failed | Status::TimedOut)
            && self.stop.is_none()
        {
            self.request_stop(StopCause::FailFast, report);
        }
    }

    /// The final status of a step attempt and, unless it completed, why.
    fn verdict(&self, e: &Exited) -> (Status, Option<String>) {
        if let Some(error) = &e.spawn_error {
            return (Status::Failed, Some(error.clone()));
        }
        let exit = e.exit.as_ref().expect("a spawned step has an exit");
        let how = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_string(),
        };
        if let Some(why) = self.budget_stops.get(&e.step) {
            return (
                Status::BudgetExceeded,
                Some(format!("stopped: {why} ({how})")),
            );
        }
        if let Some(cause) = self.stop {
            if exit.stopped_by.is_some() {
                let why = match cause {
                    StopCause::Interrupted => "stopped: the run was interrupted",
                    StopCause::FailFast => "stopped: a step failed and fail_fast is on",
                };
                return (Status::Cancelled, Some(format!("{why} ({how})")));
            }
        }
        if e.timed_out {
            let timeout = self.ctx.manifest.jobs[self.plan.steps[e.step].job].timeout;
            return (
                Status::TimedOut,
                Some(format!(
                    "timed out after {} ({how})",
                    crate::duration::format(timeout)
                )),
            );
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

    /// Books a step's new running spend: the ledger (one committed row per change), the budget
    /// scopes (threshold warnings), and in block mode the stop of every step of a spent scope.
    fn spend(&mut self, id: StepId, update: &UsageUpdate, report: &mut dyn FnMut(&Event)) {
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
        let model = self.records[id].model.clone();
        if let Err(e) = self.ledger.record(
            &self.ctx.run_id,
            id,
            model.as_deref(),
            kind,
            &delta,
            Utc::now(),
        ) {
            report(&Event::LedgerFailed {
                error: e.to_string(),
            });
        }
        for crossing in self.budgets.apply(id, delta.tokens(), delta.usd) {
            let scope = &self.budgets.scopes[crossing.scope];
            let what = if crossing.percent >= 100 {
                "reached its limit"
            } else {
                "is at 80 %"
            };
            report(&Event::BudgetWarning {
                scope: scope.name.clone(),
                percent: crossing.percent,
                message: format!(
                    "the {} budget {what}: {}",
                    scope.name,
                    budget::describe(scope)
                ),
            });
        }
        for &s in self.budgets.scopes_of(id) {
            let scope = &self.budgets.scopes[s];
            report(&Event::BudgetUpdated {
                scope: scope.name.clone(),
                kind: scope.kind,
                tokens_used: scope.used.tokens,
                usd_used: scope.used.usd.dollars(),
                tokens_limit: scope.limit.tokens,
                usd_limit: scope.limit.usd,
            });
        }
        if self.budgets.mode == BudgetMode::Block {
            self.stop_spent_scopes();
        }
    }

    /// Stops (SIGINT first, so Claude Code reports its final cost) every running step that
    /// belongs to a spent scope.
    fn stop_spent_scopes(&mut self) {
        let running: Vec<StepId> = self.stoppers.keys().copied().collect();
        for id in running {
            if self.budget_stops.contains_key(&id) {
                continue;
            }
            if let Some(scope) = self.budgets.spent_scope(id) {
                let why = format!(
                    "the {} budget is spent ({})",
                    scope.name,
                    budget::describe(scope)
                );
                self.budget_stops.insert(id, why);
                if let Some(stopper) = self.stoppers.get(&id) {
                    stopper.stop(self.ctx.ladder);
                }
            }
        }
    }

    fn skip_doomed(&mut self, report: &mut dyn FnMut(&Event)) {
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
                self.skip(id, Status::Skipped, reason, report);
                self.frontier.ended(self.plan, id, false);
            }
        }
    }

    fn skip(&mut self, id: StepId, status: Status, reason: String, report: &mut dyn FnMut(&Event)) {
        self.states[id] = status;
        self.records[id].reason = Some(reason.clone());
        report(&Event::StepSkipped {
            step: id,
            label: self.plan.steps[id].label(),
            status,
            reason,
        });
    }

    fn interrupt(&mut self, report: &mut dyn FnMut(&Event)) {
        self.signals += 1;
        match self.signals {
            1 => {
                self.stop = None; // an interrupt overrides a fail-fast stop in progress
                self.request_stop(StopCause::Interrupted, report)
            }
            2 => {
                report(&Event::StopRequested {
                    cause: StopCause::Interrupted,
                    signals: 2,
                });
                for stopper in self.stoppers.values() {
                    stopper.kill();
                }
            }
            // The guardian kills every group once orch is gone.
            _ => std::process::exit(crate::errors::ExitCode::Interrupted as i32),
        }
    }

    fn request_stop(&mut self, cause: StopCause, report: &mut dyn FnMut(&Event)) {
        self.stop = Some(cause);
        report(&Event::StopRequested {
            cause,
            signals: self.signals,
        });
        for stopper in self.stoppers.values() {
            stopper.stop(self.ctx.ladder);
        }
    }
}
