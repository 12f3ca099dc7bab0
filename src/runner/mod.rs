//! The runner: runs a [`Plan`] and reports every event. A dispatcher owns the run state and
//! launches steps; one executor task per step attempt drives its process.
//!
//! The runner never prints (reporters do), never sends a signal itself (the process module does),
//! and always ends with a record of every step, however the run ended.

mod dispatcher;
mod executor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::agent::accounting::{ResultSummary, StepUsage};
use crate::errors::ExitCode;
use crate::events::{Event, StopCause};
use crate::ledger::budget::{Budgets, Scope};
use crate::ledger::{self, Ledger};
use crate::manifest::Manifest;
use crate::plan::{Plan, Status, Step};
use crate::process::{Guardian, StopLadder};

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
    /// The executable to re-run as the guardian (orch itself).
    pub guardian_exe: PathBuf,
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

/// A file-name-safe form of a job name.
fn slug(name: &str) -> String {
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
    /// Output that did not reach the log files (a full disk), with the final counts.
    pub log_faults: Vec<crate::process::LogFault>,
}

/// How a run ended: every step's status and record.
pub struct RunOutcome {
    pub states: Vec<Status>,
    pub records: Vec<StepRecord>,
    pub stop: Option<StopCause>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Every budget scope with its limit and final spend.
    pub scopes: Vec<Scope>,
}

/// Runs the plan to its end. Steps that never ran are reported as skipped, blocked or cancelled;
/// an error is returned only when the run could not begin (no guardian, no run folder, no ledger,
/// no signal handler).
pub async fn run(
    ctx: &RunContext,
    plan: &Plan,
    report: &mut dyn FnMut(&Event),
) -> std::io::Result<RunOutcome> {
    std::fs::create_dir_all(ctx.run_dir.join("logs"))?;
    crate::process::raise_fd_limit();
    crate::process::survive_file_size_limit();
    let ledger_path = ledger::path(&ctx.manifest.settings.state_dir);
    let sql = |e: rusqlite::Error| {
        std::io::Error::other(format!("ledger {}: {e}", ledger_path.display()))
    };
    let ledger = Ledger::open(&ledger_path).map_err(sql)?;
    let dead = ledger::reconcile(&ledger, Utc::now()).map_err(sql)?;
    if !dead.is_empty() {
        report(&Event::DeadRunsReconciled { runs: dead });
    }
    let window_spent = match &ctx.manifest.budget.window {
        Some(w) => {
            let since =
                Utc::now() - chrono::Duration::from_std(w.period).unwrap_or(chrono::Duration::MAX);
            ledger.spent_since(since).map_err(sql)?
        }
        None => Default::default(),
    };
    let budgets = Budgets::new(&ctx.manifest, plan, window_spent);
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
    report(&Event::RunStarted {
        run_id: ctx.run_id.clone(),
        name: ctx.manifest.name.clone(),
        manifest: ctx.manifest.path.clone(),
        run_dir: ctx.run_dir.clone(),
        jobs: ctx.manifest.jobs.len(),
        steps: plan.steps.len(),
        at: started,
    });
    let mut dispatcher = dispatcher::Dispatcher::new(ctx, plan, guardian.clone(), budgets, ledger);
    let result = dispatcher.run(report).await;
    // Every group is gone by now; let the guardian go too.
    let _ = guardian.shutdown();
    result?;
    let outcome = RunOutcome {
        states: dispatcher.states.clone(),
        records: dispatcher.records.clone(),
        stop: dispatcher.stop,
        started,
        finished: Utc::now(),
        scopes: dispatcher.budgets.scopes.clone(),
    };
    let ledger = dispatcher.into_ledger();
    let code = outcome.exit_code();
    let status = match code {
        ExitCode::Ok => "completed",
        ExitCode::StepsFailed => "failed",
        ExitCode::BudgetStop => "budget_stop",
        ExitCode::Interrupted => "interrupted",
        ExitCode::Setup => "setup_error",
    };
    if let Err(e) = ledger.finish_run(&ctx.run_id, status, code as u8, outcome.finished) {
        report(&Event::LedgerFailed {
            error: e.to_string(),
        });
    }
    Ok(outcome)
}

impl RunOutcome {
    /// The run's exit code: interrupted, else a budget stop, else failed if any step did not
    /// complete, else ok.
    pub fn exit_code(&self) -> ExitCode {
        let any = |s: &[Status]| self.states.iter().any(|x| s.contains(x));
        if self.stop == Some(StopCause::Interrupted) {
            ExitCode::Interrupted
        } else if any(&[Status::BudgetExceeded, Status::Blocked]) {
            ExitCode::BudgetStop
        } else if self.states.iter().all(|s| *s == Status::Completed) {
            ExitCode::Ok
        } else {
            ExitCode::StepsFailed
        }
    }
}
