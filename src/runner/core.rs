//! The dispatcher's pure core: the run state and one function, [`Core::handle`], that takes an
//! [`Input`] (an executor's event, a signal, the clock's beat) and returns the [`Effect`]s to apply
//! (launch, stop, kill, ledger write, report).
//!
//! It owns every decision of a run: what launches when (`max_parallel`, `startup_delay`, rate-limit
//! pauses, budgets that refuse), each step's final status, the skip of dependents, and the one
//! ordered [`CancelReason`]. It never does I/O, never spawns, never reads a clock (time comes in as
//! [`Now`]) and never waits: the shell in `super::dispatcher` applies the effects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::executor::{ExecutorEvent, Exited, Launch};
use super::retry::{self, ApiRetrySeen, AttemptRecord, Throttle};
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
use crate::manifest::{BudgetMode, FanOut, RetryOn, Task, When};
use crate::plan::{Action, Fan, Frontier, Plan, StepId};
use crate::template;
use serde_json::Value;

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
    /// A rate limit resets later than `max_pause`: nothing more starts, what runs ends.
    RateLimited,
    /// SIGINT, SIGTERM or SIGHUP reached orch: stop with the ladder.
    Interrupted,
    /// A second signal: kill every group at once.
    Killed,
}

/// Rate-limit continuations one step may have (each waits for a reset), so that a limit that
/// keeps rejecting cannot hold a run forever below `max_pause`.
const MAX_FREE_ATTEMPTS: u32 = 20;

/// What the core knows of a step's attempts.
#[derive(Debug, Default)]
struct Attempts {
    /// The attempt running or last ended, from 1.
    number: u32,
    /// Attempts that were rate-limit continuations (not counted against `retry.attempts`).
    free: u32,
    /// The running attempt's last `api_retry` line.
    api_retry: Option<ApiRetrySeen>,
    /// The reset of a rejected rate limit the running attempt met.
    rate_limited_until: Option<DateTime<Utc>>,
    /// The next attempt continues the session with `--resume`.
    resume_next: bool,
    /// What the ended attempts spent together.
    carried: Option<crate::agent::accounting::StepUsage>,
    /// The numbers of the attempts that were rate-limit continuations.
    continuations: Vec<u32>,
    /// The session's totals when the running attempt launched (agent steps), to tell whether
    /// the attempt itself had turns.
    prior: Option<SessionTotals>,
}

/// A retry the core decided on.
#[derive(Debug)]
struct Next {
    kind: RetryOn,
    delay: Duration,
    resume: bool,
    counted: bool,
}

impl CancelReason {
    /// The cause reporters and the results file know (a kill is an interrupt, signalled twice).
    pub fn cause(self) -> Option<StopCause> {
        match self {
            CancelReason::FailFast => Some(StopCause::FailFast),
            CancelReason::BudgetStop => None,
            CancelReason::RateLimited => Some(StopCause::RateLimited),
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
    /// An isolated instance's worktree was made (or could not be) for its first step.
    WorktreePrepared {
        step: StepId,
        result: Result<crate::worktree::Prepared, String>,
    },
    /// An isolated instance's worktree was committed and cleaned up (or could not be).
    WorktreeFinished {
        instance: usize,
        prepared: Box<crate::worktree::Prepared>,
        result: Result<crate::worktree::Finished, String>,
    },
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
    /// Append a job instance's outputs to the run folder's outputs file.
    SaveOutputs { job: String, outputs: Value },
    /// Hide these values in everything orch prints or writes from now on (secret variables
    /// whose values templates rendered).
    MaskSecrets(Vec<String>),
    /// Create an isolated instance's worktree, then answer with [`Input::WorktreePrepared`].
    PrepareWorktree {
        step: StepId,
        spec: Box<crate::worktree::Prepare>,
    },
    /// Commit and clean up an instance's worktree, then answer with [`Input::WorktreeFinished`].
    FinishWorktree {
        instance: usize,
        finish: Box<crate::worktree::Finish>,
    },
}

/// A step's argv, environment and working folder with their templates rendered.
#[derive(Debug)]
pub struct Rendered {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: std::path::PathBuf,
}

/// "an object", "a string", ... for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The run state and its rules.
pub struct Core<'a> {
    ctx: &'a RunContext,
    /// The plan, which a dynamic fan-out grows as the run goes.
    pub plan: Plan,
    /// Each job instance's outputs, once it ended.
    pub outputs: Vec<Option<Value>>,
    /// Manifest job index by name, for references.
    job_index: HashMap<String, usize>,
    /// Running steps of each manifest job (for a job's own `max_parallel`).
    running_of_job: Vec<usize>,
    /// When the run began, for `${{ run.started_at }}`.
    started_at: DateTime<Utc>,
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
    /// Each launched step's attempts.
    attempts: HashMap<StepId, Attempts>,
    /// Steps waiting to be tried again, and the instant before which they may not start.
    retry_at: BTreeMap<StepId, Instant>,
    /// The agent concurrency that API throttling lowers.
    throttle: Throttle,
    /// Isolated instances' worktrees: being made, in use, being finished.
    isolated: worktree::Worktrees,
}

impl<'a> Core<'a> {
    pub fn new(
        ctx: &'a RunContext,
        plan: Plan,
        budgets: Budgets,
        started_at: DateTime<Utc>,
    ) -> Self {
        let n = plan.steps.len();
        Core {
            ctx,
            outputs: vec![None; plan.instances.len()],
            job_index: ctx
                .manifest
                .jobs
                .iter()
                .enumerate()
                .map(|(i, j)| (j.name.clone(), i))
                .collect(),
            running_of_job: vec![0; ctx.manifest.jobs.len()],
            started_at,
            states: vec![Status::Pending; n],
            records: (0..n).map(|_| StepRecord::default()).collect(),
            frontier: Frontier::new(&plan),
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
            attempts: HashMap::new(),
            retry_at: BTreeMap::new(),
            throttle: Throttle::default(),
            isolated: Default::default(),
            plan,
        }
    }

    /// Takes over what the run carries from before it ([`super::Carried`]): the sessions the
    /// ledger knows, and a resumed run's completed steps (completed, with their records, never
    /// launched again) and the outputs of their job instances. The steps come in plan order, so
    /// each is ready when it is ended here.
    pub fn with_done(mut self) -> Self {
        let carried = &self.ctx.carried;
        self.sessions
            .extend(carried.sessions.iter().map(|(k, v)| (*k, v.clone())));
        for (instance, outputs) in &carried.outputs {
            if let Some(slot) = self.outputs.get_mut(*instance) {
                *slot = Some(outputs.clone());
            }
        }
        for (id, record) in &carried.done {
            if *id >= self.states.len() {
                continue;
            }
            self.states[*id] = Status::Completed;
            self.records[*id] = record.clone();
            self.frontier.ended(&self.plan, *id, true);
        }
        self
    }

    /// A resumed run's `for_each` job expanded into instances that completed in the run it
    /// resumes: their steps are not run again (in chain order, so that each is ready first).
    fn reuse_expanded(&mut self, expansion: &crate::plan::Expansion, fx: &mut Vec<Effect>) {
        if self.ctx.carried.dynamic.is_empty() {
            return;
        }
        for &instance in &expansion.instances {
            for id in self.plan.instances[instance].steps.clone() {
                let label = self.plan.steps[id].label();
                let Some((record, outputs)) = self.ctx.carried.dynamic.get(&label) else {
                    break;
                };
                self.states[id] = Status::Completed;
                self.records[id] = record.clone();
                if let Some(o) = outputs {
                    self.outputs[instance] = Some(o.clone());
                }
                fx.push(Effect::Report(Event::StepSkipped {
                    step: id,
                    label,
                    status: Status::Completed,
                    reason: record.reason.clone().unwrap_or_default(),
                }));
                self.frontier.ended(&self.plan, id, true);
            }
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
                let label = label(step);
                self.spend(now, step, &update, &mut fx);
                fx.push(Effect::Report(Event::UsageRecorded {
                    step,
                    label,
                    update,
                }));
            }
            Input::Executor(ExecutorEvent::RateLimited { step, record }) => {
                self.rate_limited(now, step, record, &mut fx)
            }
            Input::Executor(ExecutorEvent::Placed {
                step,
                node,
                job_step,
            }) => {
                self.records[step].node = Some(node.clone());
                fx.push(Effect::Report(Event::StepPlaced {
                    step,
                    label: label(step),
                    node,
                    job_step,
                }));
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
            Input::Executor(ExecutorEvent::ApiRetried { step, seen }) => {
                self.api_retried(now, step, seen, &mut fx)
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
            Input::WorktreePrepared { step, result } => {
                self.worktree_prepared(now, step, result, &mut fx)
            }
            Input::WorktreeFinished {
                instance,
                prepared,
                result,
            } => self.worktree_finished(now, instance, *prepared, result, &mut fx),
        }
        self.advance(now, &mut fx);
        fx
    }

    /// Whether the run is over once no executor is left: nothing runs and nothing more may start.
    pub fn is_over(&self) -> bool {
        self.running.is_empty()
            && self.isolated.is_idle()
            && (self.stop.is_some() || (self.frontier.is_empty() && self.retry_at.is_empty()))
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
        [launch, resume, self.retry_wake(now)]
            .into_iter()
            .flatten()
            .min()
    }

    /// The run is over: whatever never ran, because of a stop, is cancelled.
    pub fn finish_run(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.drop_waiting_retries();
        for id in 0..self.states.len() {
            if self.states[id] == Status::Pending {
                let reason = match self.stop {
                    Some(CancelReason::FailFast) => "cancelled: a step failed and fail_fast is on",
                    Some(CancelReason::RateLimited) => {
                        "cancelled: a rate limit resets later than max_pause"
                    }
                    _ => "cancelled: the run was interrupted",
                };
                self.skip(id, Status::Cancelled, reason.to_string(), &mut fx);
            }
        }
        fx
    }

    /// Skips the doomed, resumes a pause that is over, expands fan-outs whose source exists, and
    /// launches what may start now.
    fn advance(&mut self, now: Now, fx: &mut Vec<Effect>) {
        self.ease_throttle(now, fx);
        loop {
            self.skip_doomed(fx);
            if self.paused_until.is_some_and(|until| now.wall >= until) {
                self.paused_until = None;
                fx.push(Effect::Report(Event::LaunchesResumed));
            }
            if self.stop.is_some() {
                self.abandon_worktrees(fx);
                return;
            }
            // Expansions spawn nothing: they need no slot and wait for no launch delay.
            if let Some(id) = self.next_expansion() {
                self.frontier.remove(id);
                if self.gate(now, id, fx) {
                    self.expand(now, id, fx);
                }
                continue;
            }
            if !self.has_slot() {
                return;
            }
            if self.relaunch_due(now, fx) {
                continue;
            }
            let Some(id) = self.next_ready() else {
                return;
            };
            if self.next_launch.is_some_and(|t| now.mono < t) {
                return;
            }
            self.frontier.remove(id);
            if !self.gate(now, id, fx) {
                continue;
            }
            match self.budgets.refuse(id) {
                Some(why) => {
                    self.skip(id, Status::Blocked, format!("blocked: {why}"), fx);
                    self.end_in_frontier(id, Status::Blocked);
                    self.release_idle_worktree(id, Status::Blocked, fx);
                }
                None => match self.render(id) {
                    // An isolated instance's first step waits for its worktree.
                    Ok(rendered) if self.prepare_worktree(id, &rendered, fx) => {
                        self.next_launch = Some(now.mono + self.ctx.startup_delay);
                    }
                    Ok(rendered) => {
                        self.launch(now, id, rendered, fx);
                        // Cannot overflow: durations are capped at a century when they are read.
                        self.next_launch = Some(now.mono + self.ctx.startup_delay);
                    }
                    Err(why) => {
                        self.skip(
                            id,
                            Status::Failed,
                            format!("failed before it started: {why}"),
                            fx,
                        );
                        self.end_in_frontier(id, Status::Failed);
                        self.release_idle_worktree(id, Status::Failed, fx);
                    }
                },
            }
        }
    }

    /// Whether a ready step may go on: a job instance's first step runs only when what it
    /// needs ended the way each `needs` entry asks and its `if` holds. Otherwise it is skipped
    /// (or failed, when its condition cannot be evaluated) and `false` is returned.
    fn gate(&mut self, _now: Now, id: StepId, fx: &mut Vec<Effect>) -> bool {
        let step = &self.plan.steps[id];
        if step.index != 1 {
            return true;
        }
        let instance = step.instance;
        let job = &self.ctx.manifest.jobs[step.job];
        let inst = &self.plan.instances[instance];
        // A dynamic fan-out's instances passed its needs when it expanded.
        let own_needs = !matches!(
            (&inst.fan, &job.fan_out),
            (Fan::Member { .. }, Some(FanOut::ForEach { .. }))
        );
        if own_needs {
            for need in &job.needs {
                let Some(&k) = self.job_index.get(&need.job) else {
                    continue;
                };
                let of = self.plan.of_job[k];
                let status = self.plan.instance_status(&self.states, of);
                let tolerated =
                    self.ctx.manifest.jobs[k].continue_on_failure && status.is_failure();
                let ok = match need.when {
                    When::Success => status == Status::Completed || tolerated,
                    When::Failure => status.is_failure(),
                    When::Always => true,
                };
                if !ok {
                    let why = match need.when {
                        When::Failure => format!(
                            "skipped: `{}` {}, and this job runs only when it fails",
                            need.job,
                            status.as_str()
                        ),
                        _ => format!("skipped: `{}` {}", need.job, status.as_str()),
                    };
                    self.skip(id, Status::Skipped, why, fx);
                    self.end_in_frontier(id, Status::Skipped);
                    return false;
                }
            }
        }
        // A `for_each` job's condition is evaluated once, before it expands, unless it reads
        // `item`: then for each instance.
        let is_expansion = matches!(step.action, Action::Expand { .. });
        let condition = job.condition.as_ref().and_then(|text| {
            let parsed = crate::condition::parse(text);
            let per_item = parsed.as_ref().is_ok_and(|c| {
                c.references()
                    .iter()
                    .any(|(r, _)| matches!(r, template::Reference::Item { .. }))
            });
            let here = match (is_expansion, !own_needs) {
                (true, _) => !per_item,
                (false, true) => per_item,
                (false, false) => true,
            };
            here.then(|| (text.clone(), parsed))
        });
        if let Some((text, parsed)) = condition {
            let verdict = parsed
                .map_err(|e| {
                    e.first()
                        .map_or_else(|| "a bad condition".into(), |e| e.message.clone())
                })
                .and_then(|c| crate::condition::eval(&c, &self.scope(instance)));
            match verdict {
                Ok(true) => {}
                Ok(false) => {
                    self.skip(
                        id,
                        Status::Skipped,
                        format!("skipped: `if` is false: {text}"),
                        fx,
                    );
                    self.end_in_frontier(id, Status::Skipped);
                    return false;
                }
                Err(why) => {
                    self.skip(
                        id,
                        Status::Failed,
                        format!("failed: its `if` could not be evaluated: {why}"),
                        fx,
                    );
                    self.end_in_frontier(id, Status::Failed);
                    return false;
                }
            }
        }
        true
    }

    /// What templates of `instance` read.
    fn scope(&self, instance: usize) -> super::outputs::Scope<'_> {
        super::outputs::Scope {
            plan: &self.plan,
            manifest: &self.ctx.manifest,
            outputs: &self.outputs,
            states: &self.states,
            instance,
            job_index: &self.job_index,
            env: &self.ctx.env,
            run_id: &self.ctx.run_id,
            started_at: self.started_at,
            outer_env_only: false,
        }
    }

    /// A step's argv, env and working folder with their templates rendered: into argv elements
    /// and env values as they are, into a `shell` script each value as one quoted shell word.
    fn render(&self, id: StepId) -> Result<Rendered, String> {
        let step = &self.plan.steps[id];
        let job = &self.ctx.manifest.jobs[step.job];
        let scope = self.scope(step.instance);
        let mut argv = Vec::with_capacity(step.argv.len());
        for (i, arg) in step.argv.iter().enumerate() {
            let mode = match step.action {
                // `sh -c SCRIPT`: the script is the third element.
                Action::Shell if i == 2 => template::Mode::Shell,
                _ => template::Mode::Plain,
            };
            // An agent's argv holds orch's own flags (a schema's JSON among them): only the
            // prompt, its last element, is the user's text.
            let templated = match step.action {
                Action::Agent { .. } => i + 1 == step.argv.len(),
                _ => true,
            };
            argv.push(if templated {
                scope.render(arg, mode)?
            } else {
                arg.clone()
            });
        }
        let mut env = Vec::with_capacity(job.env.len());
        for (k, v) in &job.env {
            env.push((k.clone(), scope.render(v, template::Mode::Plain)?));
        }
        let cwd = match self.isolated.cwd(step.instance) {
            Some(cwd) => cwd.to_path_buf(),
            None => std::path::PathBuf::from(
                scope.render(&job.workspace.to_string_lossy(), template::Mode::Plain)?,
            ),
        };
        Ok(Rendered { argv, env, cwd })
    }

    /// Ends a step that did not run in the frontier: its dependents that need it to succeed are
    /// doomed unless its job's failure is tolerated.
    fn end_in_frontier(&mut self, id: StepId, status: Status) {
        let ok = self.counts_as_success(id, status);
        self.frontier.ended(&self.plan, id, ok);
    }

    /// Whether a step's end lets the steps that need its success go on: it completed, or it is
    /// the last step of a `continue_on_failure` job whose instance failed.
    fn counts_as_success(&self, id: StepId, status: Status) -> bool {
        if status == Status::Completed {
            return true;
        }
        let step = &self.plan.steps[id];
        step.is_main()
            && self.ctx.manifest.jobs[step.job].continue_on_failure
            && self
                .plan
                .instance_status(&self.states, step.instance)
                .is_failure()
    }

    /// A ready `for_each` expansion step, if any.
    fn next_expansion(&self) -> Option<StepId> {
        self.frontier.ready_expansion(&self.plan)
    }

    /// Turns a `for_each` job's source array into its instances (or fails the job).
    fn expand(&mut self, now: Now, id: StepId, fx: &mut Vec<Effect>) {
        let step = &self.plan.steps[id];
        let (group, job_index) = (step.instance, step.job);
        let job = &self.ctx.manifest.jobs[job_index];
        let Some(FanOut::ForEach { source, max_items }) = &job.fan_out else {
            return;
        };
        let max_items = *max_items;
        let items = template::parse(source)
            .ok()
            .and_then(|t| t.single().cloned())
            .ok_or_else(|| "for_each is not one reference".to_string())
            .and_then(|r| template::Values::get(&self.scope(group), &r))
            .and_then(|v| match v {
                Value::Array(items) => Ok(items),
                other => Err(format!(
                    "for_each needs a list, and `{source}` is {}",
                    json_kind(&other)
                )),
            })
            .and_then(|items| {
                if items.len() > max_items {
                    Err(format!(
                        "for_each has {} items, more than max_items ({max_items}); raise max_items or make the list shorter",
                        items.len()
                    ))
                } else {
                    Ok(items)
                }
            });
        let items = match items {
            Ok(items) => items,
            Err(why) => {
                self.skip(id, Status::Failed, format!("failed: {why}"), fx);
                self.end_in_frontier(id, Status::Failed);
                return;
            }
        };
        let keys = crate::plan::item_keys(&items);
        let count = items.len();
        let expansion = self.plan.expand(
            &self.ctx.manifest,
            group,
            keys.into_iter().zip(items).collect(),
        );
        self.frontier.grow(&self.plan, &expansion);
        let added = expansion.steps.len();
        self.states
            .extend(std::iter::repeat_n(Status::Pending, added));
        self.records
            .extend((0..added).map(|_| StepRecord::default()));
        self.spent
            .extend(std::iter::repeat_n((TokenCounts::default(), 0.0), added));
        self.stops.extend(std::iter::repeat_n(None, added));
        self.outputs
            .extend(std::iter::repeat_n(None, expansion.instances.len()));
        self.budgets
            .grow(&self.ctx.manifest, &self.plan, expansion.steps.clone());
        let instances = expansion
            .instances
            .iter()
            .map(|&i| {
                let inst = &self.plan.instances[i];
                crate::events::ExpandedInstance {
                    name: inst.name.clone(),
                    steps: inst
                        .steps
                        .iter()
                        .map(|&s| crate::events::ExpandedStep {
                            id: s,
                            label: self.plan.steps[s].label(),
                            model: self.plan.steps[s].model.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        fx.push(Effect::Report(Event::JobExpanded {
            job: self.plan.instances[group].name.clone(),
            instances,
        }));
        self.reuse_expanded(&expansion, fx);
        self.states[id] = Status::Completed;
        let record = &mut self.records[id];
        record.started = Some(now.wall);
        record.finished = Some(now.wall);
        let reason = format!(
            "expanded into {count} instance{}",
            if count == 1 { "" } else { "s" }
        );
        record.reason = Some(reason.clone());
        fx.push(Effect::Report(Event::StepFinished {
            step: id,
            label: self.plan.steps[id].label(),
            status: Status::Completed,
            exit_code: None,
            signal: None,
            duration: Duration::ZERO,
            usage: None,
            leaked: Vec::new(),
            reason: Some(reason),
            log: Default::default(),
            stderr_log: Default::default(),
        }));
        self.frontier.ended(&self.plan, id, true);
    }

    fn has_slot(&self) -> bool {
        self.ctx
            .max_parallel
            .is_none_or(|max| self.running.len() + self.isolated.preparing() < max)
    }

    /// The next step to launch: not over its job's own `max_parallel`, and while launches of
    /// agents are paused, only process steps.
    fn next_ready(&self) -> Option<StepId> {
        let paused = self.paused_until.is_some();
        self.frontier.ready(&self.plan).find(|&id| {
            let step = &self.plan.steps[id];
            let job = &self.ctx.manifest.jobs[step.job];
            !((paused || self.agents_full()) && step.is_agent())
                && job
                    .max_parallel
                    .is_none_or(|max| self.running_of_job[step.job] < max)
        })
    }

    fn launch(&mut self, now: Now, id: StepId, rendered: Rendered, fx: &mut Vec<Effect>) {
        self.note_launch(id);
        let step = &self.plan.steps[id];
        let job = &self.ctx.manifest.jobs[step.job];
        let (log, stderr_log) = self.attempt_logs(id);
        let agent = self.prior_of(id, &rendered.argv);
        self.states[id] = Status::Running;
        self.running.insert(id);
        self.running_of_job[step.job] += 1;
        let record = &mut self.records[id];
        record.log = log.clone();
        record.stderr_log = stderr_log.clone();
        record.started = Some(now.wall);
        record.model.clone_from(&step.model);
        record.argv.clone_from(&rendered.argv);
        let (command, session, resume) = match &step.action {
            Action::Agent {
                command, session, ..
            } => (
                command.clone(),
                Some(session.id().to_string()),
                matches!(session, Session::Resume(_)) || is_resume(&rendered.argv),
            ),
            _ => (None, None, false),
        };
        let attempt = self.attempt_no(id);
        fx.push(Effect::Ledger(Write::BeginStep {
            row: StepRow {
                step: id,
                job: step.job_name.clone(),
                label: step.label(),
                command,
                session_id: session,
                resume,
                is_agent: step.is_agent(),
                log: log.clone(),
                attempt,
            },
            at: now.wall,
        }));
        // A secret variable whose value a template gave is masked before the step can print it.
        let secret: Vec<String> = rendered
            .env
            .iter()
            .zip(&job.env)
            .filter(|((k, v), (_, written))| {
                v != written
                    && (crate::secrets::is_secret_name(k) || job.secrets.iter().any(|s| s == k))
            })
            .map(|((_, v), _)| v.clone())
            .collect();
        if !secret.is_empty() {
            fx.push(Effect::MaskSecrets(secret));
        }
        let capture = match step.action {
            Action::Exec | Action::Shell => Some(job.outputs.limit),
            _ => None,
        };
        fx.push(Effect::Launch(Box::new(Launch {
            step: id,
            argv: rendered.argv,
            cwd: rendered.cwd,
            env: rendered.env,
            capture,
            log,
            stderr_log,
            timeout: job.timeout,
            ladder: self.ctx.ladder,
            agent,
            job: step.job_name.clone(),
            slurm: job.slurm.clone().map(|settings| super::slurm::SlurmStep {
                settings,
                name: super::slurm::job_name(&self.ctx.run_id, &step.label(), attempt),
            }),
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
            self.rate_limit_hit(now, step, until, fx);
        }
    }

    fn finish(&mut self, now: Now, mut e: Exited, fx: &mut Vec<Effect>) {
        let id = e.step;
        if !self.running.remove(&id) {
            // An executor ends once; a second report of its end (a panic after it sent its exit)
            // changes nothing.
            return;
        }
        self.spawned.remove(&id);
        self.running_of_job[self.plan.steps[id].job] -= 1;
        if let Some(o) = &e.outcome {
            if o.usage.model.is_some() {
                self.records[id].model = o.usage.model.clone();
            }
            let update = UsageUpdate {
                tokens: o.usage.tokens,
                cost_usd: o.usage.cost_usd,
                is_estimate: o.usage.is_estimate,
                price_unknown: o.usage.price_unknown,
                tool_calls_total: o.usage.tool_calls_total,
            };
            self.spend(now, id, &update, fx);
        }
        let (mut status, mut reason) = self.verdict(&e);
        // The job's last step: its answer must be the outputs the job promises.
        let mut extra = None;
        if self.plan.steps[id].is_main() && e.exit.is_some() {
            match self.typed_output(&e, status) {
                Ok(value) => extra = value,
                Err(why) => {
                    status = Status::Failed;
                    reason = Some(why);
                }
            }
        }
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
        if let Some(next) = self.retry_decision(now, &e, status, fx) {
            fx.push(Effect::Ledger(Write::FinishStep {
                step: id,
                status: status.as_str(),
                is_agent: self.plan.steps[id].is_agent(),
                at: now.wall,
            }));
            self.schedule_retry(now, &e, status, reason, next, fx);
            return;
        }
        self.states[id] = status;
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
            record.tail = std::mem::take(&mut e.tail);
        }
        if e.spawn_error.is_some() {
            // Nothing ran, so there is no log worth pointing at.
            record.log = Default::default();
            record.stderr_log = Default::default();
        }
        self.close_attempts(now, &e, status);
        // An isolated instance's end waits for its worktree's commit (which may fail it).
        if self.ends_worktree(id, status) {
            return self.finish_worktree(now, e, status, reason, extra, fx);
        }
        self.conclude(now, e, status, reason, extra, fx);
    }

    /// The end of a step once its outcome is final: its ledger rows, its instance's outputs, its
    /// dependents and its report.
    fn conclude(
        &mut self,
        now: Now,
        e: Exited,
        status: Status,
        reason: Option<String>,
        extra: Option<Value>,
        fx: &mut Vec<Effect>,
    ) {
        let id = e.step;
        fx.push(Effect::Ledger(Write::FinishStep {
            step: id,
            status: status.as_str(),
            is_agent: self.plan.steps[id].is_agent(),
            at: now.wall,
        }));
        self.states[id] = status;
        self.records[id].reason.clone_from(&reason);
        if self.plan.steps[id].is_main() && e.exit.is_some() {
            self.record_outputs(id, &e, extra, fx);
        }
        let ok = self.counts_as_success(id, status);
        self.frontier.ended(&self.plan, id, ok);
        let record = &self.records[id];
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
        if self.ctx.fail_fast
            && matches!(status, Status::Failed | Status::TimedOut)
            && !self.counts_as_success(id, status)
        {
            self.raise(CancelReason::FailFast, fx);
        }
    }

    /// The typed output a completed last step must have: an agent's `structured` answer valid
    /// against its `output_schema`, a process's stdout parsed as JSON with `outputs = "json"`.
    /// `Ok(None)` when the job asks for neither (or the step did not complete).
    fn typed_output(&self, e: &Exited, status: Status) -> Result<Option<Value>, String> {
        if status != Status::Completed {
            return Ok(None);
        }
        let job = &self.ctx.manifest.jobs[self.plan.steps[e.step].job];
        match &job.task {
            Task::Agent(agent) => {
                let Some(schema) = &agent.output_schema else {
                    return Ok(None);
                };
                let answer = e
                    .outcome
                    .as_ref()
                    .and_then(|o| o.result.as_ref())
                    .and_then(super::outputs::structured_of);
                let Some(answer) = answer else {
                    return Err(
                        "Claude Code's result has no structured output, which `output_schema` asks for"
                            .into(),
                    );
                };
                crate::agent::structured::validate(schema, &answer).map_err(|why| {
                    format!("its structured output does not match `output_schema`: {why}")
                })?;
                Ok(Some(answer))
            }
            _ if job.outputs.json => {
                let stdout = e.stdout.clone().unwrap_or_default();
                super::outputs::parse_json(&stdout).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Sets an instance's outputs once its last step ended, and reports and saves them.
    fn record_outputs(
        &mut self,
        id: StepId,
        e: &Exited,
        typed: Option<Value>,
        fx: &mut Vec<Effect>,
    ) {
        let step = &self.plan.steps[id];
        let instance = step.instance;
        let (outputs, cut) = match &step.action {
            Action::Agent { session, .. } => {
                let records: Vec<&StepRecord> = self.plan.instances[instance]
                    .steps
                    .iter()
                    .map(|&s| &self.records[s])
                    .collect();
                (
                    super::outputs::of_agent(&records, Some(session.id().to_string()), typed),
                    0,
                )
            }
            _ => {
                let stdout = e.stdout.clone().unwrap_or_default();
                let code = e.exit.as_ref().and_then(|x| x.code);
                (super::outputs::of_process(&stdout, code, typed), stdout.cut)
            }
        };
        let outputs = self.isolated.add_outputs(instance, outputs);
        let name = self.plan.instances[instance].name.clone();
        fx.push(Effect::SaveOutputs {
            job: name.clone(),
            outputs: outputs.clone(),
        });
        fx.push(Effect::Report(Event::JobOutputs {
            job: name,
            outputs: outputs.clone(),
            stdout_cut_bytes: cut,
        }));
        self.outputs[instance] = Some(outputs);
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
                self.end_in_frontier(id, Status::Skipped);
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

#[path = "core_attempts.rs"]
mod attempts;
use attempts::is_resume;
#[path = "core_worktree.rs"]
mod worktree;

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
