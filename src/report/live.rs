//! The live picture of a run that the human reporters draw: each step's status, elapsed time,
//! tokens, cost, tools and latest output, each job's roll-up, and every budget scope's spend.
//!
//! Owns folding [`Event`]s into that picture. It is pure: the time is always a parameter, it
//! never prints and never decides anything; the terminal and plain reporters render from it.
//! Every foreign string it keeps (job names, labels, models, output lines, scopes) is stored
//! [`sanitize`]d, so whatever draws from the board cannot pass a child's escape sequences on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::agent::stream::TokenCounts;
use crate::events::Event;
use crate::events::Status;
use crate::plan::{Plan, StepId};

use super::sanitize::sanitize;

/// What the reporters know of the plan before anything runs.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// Job names in manifest order.
    pub jobs: Vec<String>,
    /// Per step: its job, its label, and the model its argv asks for.
    pub steps: Vec<(usize, String, Option<String>)>,
    /// The budget scopes known before anything spends (run, commands, jobs), at zero: the
    /// live view shows their bars from the start. The window's spend comes from the ledger, so
    /// its bar shows with its first update.
    pub budgets: Vec<BudgetView>,
}

impl Shape {
    /// The shape of a plan: a line per job instance that has steps (a static fan-out's instances,
    /// not the fan-out itself).
    pub fn of(plan: &Plan) -> Shape {
        let mut line = vec![usize::MAX; plan.instances.len()];
        let mut jobs = Vec::new();
        for (i, inst) in plan.instances.iter().enumerate() {
            if !inst.steps.is_empty() {
                line[i] = jobs.len();
                jobs.push(inst.name.clone());
            }
        }
        let steps = plan
            .steps
            .iter()
            .map(|s| (line[s.instance], s.label(), s.model.clone()))
            .collect();
        Shape {
            jobs,
            steps,
            budgets: Vec::new(),
        }
    }

    /// The same shape with the manifest's budget scopes that have a limit, spent at zero.
    pub fn with_budgets(mut self, manifest: &crate::manifest::Manifest, plan: &Plan) -> Shape {
        use crate::ledger::budget::{Budgets, ScopeKind, Spend};
        let budgets = Budgets::new(manifest, plan, Spend::default());
        self.budgets = budgets
            .scopes
            .iter()
            .filter(|s| s.limit.is_set() && s.kind != ScopeKind::Window)
            .map(|s| BudgetView {
                scope: s.name.clone(),
                kind: s.kind,
                tokens_used: 0,
                usd_used: 0.0,
                tokens_limit: s.limit.tokens,
                usd_limit: s.limit.usd,
            })
            .collect();
        self
    }
}

/// One step as the display sees it.
#[derive(Clone, Debug)]
pub struct StepView {
    pub job: usize,
    pub label: String,
    pub status: Status,
    pub started: Option<Instant>,
    /// Set when the step ended.
    pub duration: Option<Duration>,
    pub tokens: TokenCounts,
    pub cost_usd: f64,
    pub is_estimate: bool,
    /// The estimate met a model without a price: the cost shows as "price unknown".
    pub price_unknown: bool,
    pub tools: u32,
    pub model: Option<String>,
    /// The last output lines, at most `max_console_lines`.
    pub tail: VecDeque<String>,
    pub last_line: Option<String>,
    /// The Slurm node the step runs on, for a step on Slurm.
    pub node: Option<String>,
}

impl StepView {
    fn pending(job: usize, label: &str, model: Option<String>) -> StepView {
        StepView {
            job,
            label: sanitize(label).into_owned(),
            status: Status::Pending,
            started: None,
            duration: None,
            tokens: TokenCounts::default(),
            cost_usd: 0.0,
            is_estimate: false,
            price_unknown: false,
            tools: 0,
            model,
            tail: VecDeque::new(),
            last_line: None,
            node: None,
        }
    }

    /// Time spent so far, or in all when it ended.
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.duration
            .or_else(|| self.started.map(|s| now.saturating_duration_since(s)))
            .unwrap_or_default()
    }
}

/// A job's roll-up of its steps, in the shape of zen's status table row.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub name: String,
    pub status: Status,
    pub elapsed: Duration,
    pub tokens: TokenCounts,
    pub cost_usd: f64,
    pub is_estimate: bool,
    /// The estimate met a model without a price: the cost shows as "price unknown".
    pub price_unknown: bool,
    pub tools: u32,
    pub model: Option<String>,
    /// The step shown on the job's line: the running one, else the last that ran.
    pub current: Option<StepId>,
}

/// One budget scope's latest spend and limits.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetView {
    pub scope: String,
    pub kind: crate::ledger::budget::ScopeKind,
    pub tokens_used: u64,
    pub usd_used: f64,
    pub tokens_limit: Option<u64>,
    pub usd_limit: Option<f64>,
}

impl BudgetView {
    /// Whether the display shows this scope: the run, commands and the window, not each job's
    /// own limit (a hundred jobs would bury the view; the summary lists them, and the live view
    /// shows it on the job's own line).
    /// A scope without a limit (the run's, when the manifest sets none) has no bar to fill.
    pub fn is_shown(&self) -> bool {
        self.kind != crate::ledger::budget::ScopeKind::Job
            && (self.tokens_limit.is_some() || self.usd_limit.is_some())
    }

    /// The fullest of the scope's limits, as a fraction (can exceed 1).
    pub fn fill(&self) -> f64 {
        let t = self
            .tokens_limit
            .filter(|l| *l > 0)
            .map(|l| self.tokens_used as f64 / l as f64);
        let u = self
            .usd_limit
            .filter(|l| *l > 0.0)
            .map(|l| self.usd_used / l);
        t.into_iter().chain(u).fold(0.0, f64::max)
    }
}

/// The whole picture.
#[derive(Clone, Debug, Default)]
pub struct Board {
    pub name: String,
    pub run_id: String,
    pub jobs: Vec<String>,
    pub steps: Vec<StepView>,
    /// Budget scopes in the order they first reported.
    pub budgets: Vec<BudgetView>,
    pub started: Option<Instant>,
    /// Steps that ran or will never run.
    pub done: usize,
    max_console_lines: usize,
    /// The scopes every run starts with (see [`Shape::budgets`]).
    seed_budgets: Vec<BudgetView>,
    /// How many jobs and steps the plan has before any dynamic fan-out expands.
    seed_jobs: usize,
    seed_steps: usize,
    /// Agent launches are paused by a rate limit until then.
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The agent concurrency that throttling set, and why.
    pub agent_limit: Option<(usize, String)>,
}

impl Board {
    pub fn new(shape: &Shape, max_console_lines: usize) -> Board {
        Board {
            jobs: shape
                .jobs
                .iter()
                .map(|name| sanitize(name).into_owned())
                .collect(),
            steps: shape
                .steps
                .iter()
                .map(|(job, label, model)| {
                    let model = model.as_deref().map(|m| sanitize(m).into_owned());
                    StepView::pending(*job, label, model)
                })
                .collect(),
            max_console_lines,
            seed_jobs: shape.jobs.len(),
            seed_steps: shape.steps.len(),
            budgets: shape.budgets.clone(),
            seed_budgets: shape.budgets.clone(),
            ..Board::default()
        }
    }

    /// Folds one event into the picture, `now` being when it arrived.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::RunStarted { name, run_id, .. } => {
                // A scheduled service runs the same plan again: start each run afresh, without
                // the instances a dynamic fan-out added last time.
                self.steps.truncate(self.seed_steps);
                self.jobs.truncate(self.seed_jobs);
                for s in &mut self.steps {
                    *s = StepView::pending(s.job, &s.label, s.model.clone());
                }
                self.budgets.clone_from(&self.seed_budgets);
                self.done = 0;
                self.name = sanitize(name).into_owned();
                self.run_id.clone_from(run_id);
                self.started = Some(now);
            }
            Event::StepStarted { step, .. } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    s.status = Status::Running;
                    s.started = Some(now);
                }
            }
            Event::StepPlaced { step, node, .. } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    s.node = Some(sanitize(node).into_owned());
                }
            }
            Event::StepOutput { step, line, .. } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    let line = sanitize(line).into_owned();
                    if self.max_console_lines > 0 {
                        if s.tail.len() == self.max_console_lines {
                            s.tail.pop_front();
                        }
                        s.tail.push_back(line.clone());
                    }
                    s.last_line = Some(line);
                }
            }
            Event::UsageRecorded { step, update, .. } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    s.tokens = update.tokens;
                    s.cost_usd = update.cost_usd;
                    s.is_estimate = update.is_estimate;
                    s.price_unknown = update.price_unknown;
                    s.tools = update.tool_calls_total;
                }
            }
            Event::BudgetUpdated {
                scope,
                kind,
                tokens_used,
                usd_used,
                tokens_limit,
                usd_limit,
            } => {
                let scope = sanitize(scope);
                let view = BudgetView {
                    scope: scope.clone().into_owned(),
                    kind: *kind,
                    tokens_used: *tokens_used,
                    usd_used: *usd_used,
                    tokens_limit: *tokens_limit,
                    usd_limit: *usd_limit,
                };
                match self.budgets.iter_mut().find(|b| b.scope == *scope) {
                    Some(b) => *b = view,
                    None => self.budgets.push(view),
                }
            }
            Event::StepFinished {
                step,
                status,
                duration,
                usage,
                ..
            } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    s.status = *status;
                    s.duration = Some(*duration);
                    if let Some(u) = usage {
                        s.tokens = u.tokens;
                        s.cost_usd = u.cost_usd;
                        s.is_estimate = u.is_estimate;
                        s.price_unknown = u.price_unknown;
                        s.tools = u.tool_calls_total;
                        if u.model.is_some() {
                            s.model.clone_from(&u.model);
                        }
                    }
                    self.done += 1;
                }
            }
            Event::StepSkipped { step, status, .. } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    s.status = *status;
                    self.done += 1;
                }
            }
            Event::JobExpanded { instances, .. } => self.grow(instances),
            Event::LaunchesPaused { until, .. } => self.paused_until = Some(*until),
            Event::LaunchesResumed => self.paused_until = None,
            Event::ConcurrencyChanged { limit, reason } => {
                self.agent_limit = limit.map(|l| (l, sanitize(reason).into_owned()));
            }
            Event::StepRetrying {
                step,
                attempt,
                kind,
                at,
                ..
            } => {
                if let Some(s) = self.steps.get_mut(*step) {
                    s.status = Status::Pending;
                    s.last_line = Some(format!(
                        "↻ attempt {attempt} at {} ({})",
                        at.with_timezone(&chrono::Local).format("%H:%M:%S"),
                        kind.as_str()
                    ));
                }
            }
            _ => {}
        }
    }

    /// The countdown of a rate-limit pause at `now`: "⏸ rate limited: agent steps start again
    /// in 1m 23s (at 07:00:00)"; `None` when launches are not paused.
    pub fn pause_line(&self, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
        let until = self.paused_until?;
        let left = (until - now).to_std().unwrap_or_default();
        // Whole seconds, rounded up: a countdown never shows 0 s while it still waits.
        let left = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        Some(format!(
            "⏸ rate limited: agent steps start again in {} (at {})",
            crate::duration::format(left),
            until.with_timezone(&chrono::Local).format("%H:%M:%S")
        ))
    }

    /// The agent limit throttling set, as a line; `None` when there is none.
    pub fn limit_line(&self) -> Option<String> {
        self.agent_limit.as_ref().map(|(limit, reason)| {
            format!(
                "⇅ at most {limit} agent step{} at once: {reason}",
                if *limit == 1 { "" } else { "s" }
            )
        })
    }

    /// A dynamic fan-out expanded: a line for each new instance, and its steps (numbered on
    /// from the last step known).
    fn grow(&mut self, instances: &[crate::events::ExpandedInstance]) {
        for inst in instances {
            let job = self.jobs.len();
            self.jobs.push(sanitize(&inst.name).into_owned());
            for step in &inst.steps {
                if step.id != self.steps.len() {
                    continue; // a step this board already has, or one out of order
                }
                let model = step.model.as_deref().map(|m| sanitize(m).into_owned());
                self.steps.push(StepView::pending(job, &step.label, model));
            }
        }
    }

    /// Steps running now, in the order they started.
    pub fn running(&self) -> Vec<StepId> {
        let mut ids: Vec<StepId> = (0..self.steps.len())
            .filter(|&i| self.steps[i].status == Status::Running)
            .collect();
        ids.sort_by_key(|&i| self.steps[i].started);
        ids
    }

    /// Jobs not started yet, in manifest order: the next ones to run come first.
    pub fn waiting(&self) -> Vec<&str> {
        let mut started = vec![false; self.jobs.len()];
        for s in &self.steps {
            if s.status != Status::Pending {
                if let Some(b) = started.get_mut(s.job) {
                    *b = true;
                }
            }
        }
        self.jobs
            .iter()
            .zip(started)
            .filter(|(_, started)| !started)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The budget of job `job`, if it has one.
    pub fn job_budget(&self, job: usize) -> Option<&BudgetView> {
        let name = self.jobs.get(job)?;
        self.budgets.iter().find(|b| {
            b.kind == crate::ledger::budget::ScopeKind::Job
                && b.scope.strip_prefix("job ") == Some(name.as_str())
        })
    }

    /// Each job's roll-up, in manifest order.
    pub fn job_views(&self, now: Instant) -> Vec<JobView> {
        let mut views: Vec<JobView> = self
            .jobs
            .iter()
            .map(|name| JobView {
                name: name.clone(),
                status: Status::Completed,
                elapsed: Duration::ZERO,
                tokens: TokenCounts::default(),
                cost_usd: 0.0,
                is_estimate: false,
                price_unknown: false,
                tools: 0,
                model: None,
                current: None,
            })
            .collect();
        let mut decided = vec![false; views.len()];
        for (id, s) in self.steps.iter().enumerate() {
            let Some(v) = views.get_mut(s.job) else {
                continue;
            };
            // A chain runs in order: its status is that of its first step not completed.
            if !decided[s.job] && s.status != Status::Completed {
                v.status = s.status;
                decided[s.job] = true;
            }
            v.elapsed += s.elapsed(now);
            v.tokens.add(&s.tokens);
            v.cost_usd += s.cost_usd;
            v.is_estimate |= s.is_estimate;
            v.price_unknown |= s.price_unknown;
            v.tools += s.tools;
            if v.model.is_none() || s.started.is_some() {
                v.model = s.model.clone().or(v.model.take());
            }
            if s.started.is_some() {
                v.current = Some(id);
            }
        }
        views
    }

    /// Counts of jobs by status: (running, completed, failed, pending, not run).
    pub fn job_counts(jobs: &[JobView]) -> (usize, usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0, 0);
        for j in jobs {
            match j.status {
                Status::Running => c.0 += 1,
                Status::Completed => c.1 += 1,
                Status::Failed | Status::TimedOut | Status::BudgetExceeded => c.2 += 1,
                Status::Pending => c.3 += 1,
                Status::Skipped | Status::Blocked | Status::Cancelled => c.4 += 1,
            }
        }
        c
    }
}
