//! The runner: runs a [`Plan`] and reports every event. A pure core ([`core`]) owns the run state
//! and decides; the dispatcher ([`dispatcher`]) applies its effects; one executor task per step
//! attempt drives its process; the ledger writer thread ([`writer`]) commits the spend.
//!
//! The runner never prints (reporters do), never sends a signal itself (the process module does),
//! and always ends with a record of every step, however the run ended.

pub mod core;
mod dispatcher;
mod executor;
pub mod outputs;
pub mod retry;
pub mod slurm;
mod slurm_step;
pub mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::agent::accounting::{ResultSummary, StepUsage};
use crate::errors::ExitCode;
use crate::events::Status;
use crate::events::{Event, StopCause};
use crate::ledger::budget::{Budgets, Scope};
use crate::ledger::{self, Ledger};
use crate::manifest::Manifest;
use crate::plan::{Plan, Step};
use crate::process::{Guardian, StopLadder};
use writer::{Landing, Write, Writer};

/// Everything a run needs besides the plan.
pub struct RunContext {
    pub run_id: String,
    pub manifest: Manifest,
    /// `state_dir/runs/<run_id>`: the results file and the step logs.
    pub run_dir: PathBuf,
    pub startup_delay: Duration,
    pub max_parallel: Option<usize>,
    pub fail_fast: bool,
    pub ladder: StopLadder,
    /// Caps how long the run's end waits for its ledger writes (`ORCH_LEDGER_WAIT`).
    pub ledger_wait: Option<Duration>,
    /// The executable to re-run as the guardian (orch itself).
    pub guardian_exe: PathBuf,
    /// orch's environment when the run began, for `${{ env.NAME }}`.
    pub env: std::collections::HashMap<String, String>,
    /// What the run takes over from the ledger and, when resumed, from the run it continues.
    pub carried: Carried,
}

/// What a run takes over from before it starts: the sessions Claude Code already has (so a
/// `--resume` is charged only its difference) and, for a resumed run, the original's completed
/// steps with their records and outputs, and what the original spent.
#[derive(Clone, Debug, Default)]
pub struct Carried {
    /// Each known session's cumulative totals, as the ledger saved them.
    pub sessions: std::collections::HashMap<uuid::Uuid, crate::agent::accounting::SessionTotals>,
    /// The run this one resumes.
    pub resumed_from: Option<String>,
    /// The first run of the chain this one resumes (following `resumed_from` back): its id names
    /// the default worktree branches that a resumed isolated job continues.
    pub origin: Option<String>,
    /// Steps that completed in the original run and are not run again, in plan order (each
    /// after its dependencies), with the record the results show for them.
    pub done: Vec<(crate::plan::StepId, StepRecord)>,
    /// The outputs of job instances whose steps are all reused, by instance index.
    pub outputs: Vec<(usize, serde_json::Value)>,
    /// What the original run (and the runs it resumed) spent: the run-scope budget starts there.
    pub spent: crate::ledger::budget::Spend,
    /// Completed steps of `for_each` instances, by label, with their record and (for an
    /// instance's main step) its outputs: reused when the job expands into them again.
    pub dynamic: std::collections::HashMap<String, (StepRecord, Option<serde_json::Value>)>,
}

impl RunContext {
    /// The stdout and stderr log files of a step: `logs/NNN-<job>[-i].log`.
    pub fn log_paths(&self, step: &Step) -> (PathBuf, PathBuf) {
        let mut name = format!("{:03}-{}", step.id + 1, slug(&step.job_name));
        if step.of > 1 {
            name.push_str(&format!("-{}", step.index));
        }
        let dir = self.run_dir.join("logs");
        (
            dir.join(format!("{name}.log")),
            dir.join(format!("{name}.stderr.log")),
        )
    }
}

impl RunContext {
    /// The file of the run's job outputs, a line per job instance as it ends: `outputs.ndjson`.
    pub fn outputs_file(&self) -> PathBuf {
        self.run_dir.join(OUTPUTS_FILE)
    }
}

/// The name of a run folder's outputs file (see [`RunContext::outputs_file`]).
pub(crate) const OUTPUTS_FILE: &str = "outputs.ndjson";

/// A line of the outputs file: `{"job": NAME, "outputs": {...}}` (written borrowed, read owned).
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct OutputsLine<J, O> {
    pub job: J,
    pub outputs: O,
}

/// A run folder's outputs file, read once: the last whole line of each job (a line cut short by
/// a kill does not parse and is passed over); `None` when the folder has no such file.
pub(crate) fn read_outputs(run_dir: &std::path::Path) -> Option<HashMap<String, Value>> {
    let text = std::fs::read_to_string(run_dir.join(OUTPUTS_FILE)).ok()?;
    let lines = text
        .lines()
        .filter_map(|line| serde_json::from_str::<OutputsLine<String, Value>>(line).ok());
    Some(lines.map(|line| (line.job, line.outputs)).collect())
}

/// A file-name-safe form of a job name.
pub(crate) fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-');
    let s: String = s.chars().take(60).collect();
    if s.is_empty() { "job".into() } else { s }
}

/// What the run knows about one step when it ends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepRecord {
    /// The argv spawned, its templates rendered (empty until the step launched).
    pub argv: Vec<String>,
    pub pid: Option<u32>,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    pub duration: Duration,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub leaked: Vec<u32>,
    pub usage: Option<StepUsage>,
    pub result: Option<ResultSummary>,
    pub reason: Option<String>,
    pub log: PathBuf,
    pub stderr_log: PathBuf,
    /// The last lines the step wrote.
    pub tail: Vec<String>,
    /// The step's main model, once known.
    pub model: Option<String>,
    /// The Slurm node the step ran on (`None` for a local step).
    pub node: Option<String>,
    /// Output that did not reach the log files (a full disk), with the final counts.
    pub log_faults: Vec<crate::process::LogFault>,
    /// Every attempt that ended, the last included, when the step was tried more than once
    /// (empty for a step of one attempt).
    pub attempts: Vec<retry::AttemptRecord>,
}

/// How a run ended: every step's status and record.
pub struct RunOutcome {
    /// The plan as it ended (a dynamic fan-out adds its instances while the run goes).
    pub plan: Plan,
    /// Each job instance's outputs, if it ended with some.
    pub outputs: Vec<Option<serde_json::Value>>,
    /// Per step, whether its failure is tolerated (`continue_on_failure`): it does not fail
    /// the run.
    pub tolerated: Vec<bool>,
    pub states: Vec<Status>,
    pub records: Vec<StepRecord>,
    pub stop: Option<StopCause>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Every budget scope with its limit and final spend.
    pub scopes: Vec<Scope>,
    /// How the run's ledger writes ended up (some may be left for the next orch to reconcile).
    pub ledger: Landing,
}

/// Runs the plan to its end. Steps that never ran are reported as skipped, blocked or cancelled;
/// an error is returned only when the run could not begin (no guardian, no run folder, no ledger,
/// no signal handler). The ledger is read and the run registered before anything starts; every
/// write after that goes through the writer thread.
pub async fn run(
    ctx: &RunContext,
    plan: Plan,
    report: &mut dyn FnMut(Event),
) -> std::io::Result<RunOutcome> {
    std::fs::create_dir_all(ctx.run_dir.join("logs"))?;
    crate::process::raise_fd_limit();
    crate::process::prepare_signals();
    let ledger_path = ledger::path(&ctx.manifest.settings.state_dir);
    let sql = |e: rusqlite::Error| {
        std::io::Error::other(format!("ledger {}: {e}", ledger_path.display()))
    };
    let ledger = Ledger::open(&ledger_path).map_err(sql)?;
    let dead = ledger::reconcile(&ledger, Utc::now()).map_err(sql)?;
    if !dead.is_empty() {
        report(Event::DeadRunsReconciled { runs: dead });
    }
    let window_spent = match &ctx.manifest.budget.window {
        Some(w) => {
            let since = crate::duration::before(Utc::now(), w.period);
            ledger.spent_since(since).map_err(sql)?
        }
        None => Default::default(),
    };
    let mut budgets = Budgets::new(&ctx.manifest, &plan, window_spent);
    // A resumed run's run-scope budget counts what the original spent (the window already
    // does: it reads the ledger).
    if let Some(run) = budgets.scopes.first_mut() {
        run.used = run.used.saturating_add(ctx.carried.spent);
    }
    let guardian = Arc::new(Guardian::start(&ctx.guardian_exe, &["__guardian"])?);
    let started = Utc::now();
    ledger
        .begin_run(&ledger::store::RunRow {
            id: ctx.run_id.clone(),
            name: ctx.manifest.name.clone(),
            manifest: ctx.manifest.path.clone(),
            run_dir: ctx.run_dir.clone(),
            started_at: started,
        })
        .map_err(sql)?;
    if let Some(from) = &ctx.carried.resumed_from {
        ledger.set_resumed_from(&ctx.run_id, from).map_err(sql)?;
    }
    ledger
        .save_definitions(&ctx.run_id, &definitions(ctx, &plan))
        .map_err(sql)?;
    let mut writer = Writer::start(ledger, ctx.run_id.clone())?;
    report(Event::RunStarted {
        run_id: ctx.run_id.clone(),
        name: ctx.manifest.name.clone(),
        manifest: ctx.manifest.path.clone(),
        run_dir: ctx.run_dir.clone(),
        jobs: ctx.manifest.jobs.len(),
        steps: plan.steps.len(),
        at: started,
        resumed_from: ctx.carried.resumed_from.clone(),
        graph: graph(ctx, &plan),
    });
    // Reused steps end before anything launches: reporters count them as done.
    for (id, record) in &ctx.carried.done {
        if let Some(step) = plan.steps.get(*id) {
            report(Event::StepSkipped {
                step: *id,
                label: step.label(),
                status: Status::Completed,
                reason: record.reason.clone().unwrap_or_default(),
            });
        }
    }
    let core = core::Core::new(ctx, plan, budgets, started).with_done();
    let cluster = match &ctx.manifest.slurm {
        Some(settings) => {
            let tasks = ctx.max_parallel.unwrap_or_else(|| {
                core.plan
                    .steps
                    .iter()
                    .filter(|s| ctx.manifest.jobs[s.job].slurm.is_some())
                    .count()
            });
            let cluster = slurm::Cluster::start(&ctx.run_id, settings, tasks, guardian.clone());
            Some(Arc::new(cluster.await?))
        }
        None => None,
    };
    let result = dispatcher::run(
        ctx,
        core,
        guardian.clone(),
        cluster.clone(),
        &mut writer,
        report,
    )
    .await;
    if let Some(cluster) = &cluster {
        cluster.release().await;
    }
    // Every group is gone by now; let the guardian go too.
    let _ = guardian.shutdown();
    // The dispatcher's signal handlers: a signal it did not take (one that came after the run's
    // last step) cuts the wait for a failing ledger below.
    let (core, mut signals) = result?;
    let tolerated = core
        .plan
        .steps
        .iter()
        .map(|s| ctx.manifest.jobs[s.job].continue_on_failure)
        .collect();
    let mut outcome = RunOutcome {
        tolerated,
        outputs: core.outputs,
        plan: core.plan,
        stop: core.stop.and_then(core::CancelReason::cause),
        states: core.states,
        records: core.records,
        started,
        finished: Utc::now(),
        scopes: core.budgets.scopes,
        ledger: Landing::default(),
    };
    let code = outcome.exit_code();
    let status = match code {
        ExitCode::Ok => "completed",
        ExitCode::StepsFailed => "failed",
        ExitCode::BudgetStop => "budget_stop",
        ExitCode::Interrupted => "interrupted",
        ExitCode::RateLimited => "rate_limited",
        ExitCode::Setup => "setup_error",
    };
    // Queued last: if anything before it cannot land, neither does it, and the run stays
    // `running` for the next orch to reconcile from the step logs.
    writer.send(Write::FinishRun {
        status,
        exit_code: code as u8,
        step_counts: crate::history::StepCounts::of(&outcome.states).to_json(),
        at: outcome.finished,
    });
    let (wait_busy, wait_other) = close_waits(ctx.ledger_wait);
    outcome.ledger = writer
        .close_unless(wait_busy, wait_other, signals.any())
        .await;
    if outcome.ledger.not_landed > 0 {
        let n = outcome.ledger.not_landed;
        report(Event::LedgerWritesNotLanded {
            writes: n,
            error: outcome.ledger.last_error.clone(),
            message: not_landed_message(n),
        });
    }
    Ok(outcome)
}

/// Each step's key (its label) and definition hash, stored when the run starts so that a resume
/// can tell which completed steps changed.
pub fn definitions(ctx: &RunContext, plan: &Plan) -> Vec<(String, String)> {
    plan.steps
        .iter()
        .map(|s| {
            let job = &ctx.manifest.jobs[s.job];
            (s.label(), ledger::resume::definition_hash(s, job))
        })
        .collect()
}

/// The plan's steps and their dependencies, for `run_started`.
fn graph(ctx: &RunContext, plan: &Plan) -> Vec<crate::events::GraphStep> {
    plan.steps
        .iter()
        .map(|s| {
            let mut needs: Vec<crate::plan::StepId> = plan.dependencies(s.id).collect();
            needs.sort_unstable();
            crate::events::GraphStep {
                step: s.id,
                label: s.label(),
                job: ctx.manifest.jobs[s.job].name.clone(),
                needs,
            }
        })
        .collect()
}

/// The words for writes left to reconciliation, the same in every reporter and the results file.
pub fn not_landed_message(n: usize) -> String {
    format!(
        "{n} ledger write{} did not land: the next orch start reconciles them from the step logs",
        if n == 1 { "" } else { "s" }
    )
}

/// How long the run's end waits for its writes: `cap` (`ORCH_LEDGER_WAIT`) caps both waits; by
/// default 30 s while another process holds the ledger, 5 s for other failures.
fn close_waits(cap: Option<Duration>) -> (Duration, Duration) {
    match cap {
        Some(cap) => (cap, cap.min(writer::CLOSE_WAIT_OTHER)),
        None => (writer::CLOSE_WAIT_BUSY, writer::CLOSE_WAIT_OTHER),
    }
}

impl RunOutcome {
    /// The run's exit code: interrupted, else a budget stop, else failed if a step failed,
    /// timed out or was cancelled (unless its job has `continue_on_failure`), else ok. Steps
    /// skipped alone (an `if` that was false, a `when = "failure"` job after a success) do not
    /// fail a run.
    pub fn exit_code(&self) -> ExitCode {
        let hard = |id: usize| !self.tolerated.get(id).copied().unwrap_or(false);
        let any = |s: &[Status]| {
            self.states
                .iter()
                .enumerate()
                .any(|(id, x)| s.contains(x) && hard(id))
        };
        // A budget stop is reported as one even in a tolerated job: the money is spent either way.
        let budget = self
            .states
            .iter()
            .any(|x| matches!(x, Status::BudgetExceeded | Status::Blocked));
        if self.stop == Some(StopCause::Interrupted) {
            ExitCode::Interrupted
        } else if self.stop == Some(StopCause::RateLimited) {
            ExitCode::RateLimited
        } else if budget {
            ExitCode::BudgetStop
        } else if any(&[
            Status::Failed,
            Status::TimedOut,
            Status::Cancelled,
            Status::Pending,
            Status::Running,
        ]) {
            ExitCode::StepsFailed
        } else {
            ExitCode::Ok
        }
    }
}
