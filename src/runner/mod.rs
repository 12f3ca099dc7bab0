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
use crate::events::{Event, StopCause};
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
}

/// How a run ended: every step's status and record.
pub struct RunOutcome {
    pub states: Vec<Status>,
    pub records: Vec<StepRecord>,
    pub stop: Option<StopCause>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
}

/// Runs the plan to its end. Steps that never ran are reported as skipped or cancelled; an error
/// is returned only when the run could not begin (no guardian, no run folder, no signal handler).
pub async fn run(
    ctx: &RunContext,
    plan: &Plan,
    report: &mut dyn FnMut(&Event),
) -> std::io::Result<RunOutcome> {
    std::fs::create_dir_all(ctx.run_dir.join("logs"))?;
    let guardian = Arc::new(Guardian::start(&ctx.guardian_exe, &["__guardian"])?);
    let started = Utc::now();
    report(&Event::RunStarted {
        run_id: ctx.run_id.clone(),
        name: ctx.manifest.name.clone(),
        manifest: ctx.manifest.path.clone(),
        run_dir: ctx.run_dir.clone(),
        jobs: ctx.manifest.jobs.len(),
        steps: plan.steps.len(),
        at: started,
    });
    let mut dispatcher = dispatcher::Dispatcher::new(ctx, plan, guardian.clone());
    let result = dispatcher.run(report).await;
    // Every group is gone by now; let the guardian go too.
    let _ = guardian.shutdown();
    result?;
    Ok(RunOutcome {
        states: dispatcher.states,
        records: dispatcher.records,
        stop: dispatcher.stop,
        started,
        finished: Utc::now(),
    })
}
