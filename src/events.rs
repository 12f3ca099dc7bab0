//! The event vocabulary: everything the runner tells reporters, in one place.
//!
//! The runner never prints; it hands each [`Event`] to a reporter. Events are past tense and plain
//! data (serializable, for the NDJSON reporter); they never carry handles or borrow run state.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::agent::accounting::{RateLimitRecord, StepUsage, UsageUpdate};
use crate::plan::StepId;

// Run-time state lives here, with the events that carry it, not in the static plan.
/// What a step or job ended as, or is doing. zen's `completed` and `failed` keep their meaning.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Blocked,
    BudgetExceeded,
    TimedOut,
    Cancelled,
}

impl Status {
    /// Whether the job ran (or was to run) and did not succeed: failed, timed out, went over
    /// budget, or was blocked by one. What `when = "failure"` waits for.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::TimedOut | Status::BudgetExceeded | Status::Blocked
        )
    }

    /// Whether the step has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Blocked => "blocked",
            Status::BudgetExceeded => "budget_exceeded",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Why the runner stopped launching and stopped what was running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// SIGINT, SIGTERM or SIGHUP reached orch.
    Interrupted,
    /// A step failed and `fail_fast` is on.
    FailFast,
    /// A rate limit resets later than `max_pause`: nothing more starts.
    RateLimited,
}

/// One step of a run's plan, as `run_started` lists them.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct GraphStep {
    pub step: StepId,
    pub label: String,
    /// The manifest job it belongs to (a fan-out's instances and a chain's steps share it).
    pub job: String,
    /// The steps it waits for.
    pub needs: Vec<StepId>,
}

/// One thing that happened in a run. Serialized with the tag `event` (`"step_started"`); the
/// NDJSON stream adds `"v"`, see `report::ndjson` and `schemas/orch-events.schema.json`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began; nothing has been launched yet.
    RunStarted {
        run_id: String,
        name: String,
        manifest: PathBuf,
        run_dir: PathBuf,
        jobs: usize,
        steps: usize,
        at: DateTime<Utc>,
        /// The run this one resumes (`orch resume`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_from: Option<String>,
        /// The plan's steps and what each needs, as at the start (a fan-out's instances come
        /// as it expands: steps with numbers past these, labelled `job[key]`).
        graph: Vec<GraphStep>,
    },
    /// A step's process was spawned.
    StepStarted {
        step: StepId,
        label: String,
        pid: u32,
        log: PathBuf,
        at: DateTime<Utc>,
    },
    /// Slurm placed a step on a node (it runs there; `StepStarted` was about the local `srun`).
    StepPlaced {
        step: StepId,
        label: String,
        node: String,
        /// Slurm's `JOB.STEP` of the step.
        job_step: String,
    },
    /// The latest line a step wrote (throttled; the log file has every line).
    StepOutput {
        step: StepId,
        label: String,
        line: String,
    },
    /// A step's running usage changed (a live estimate until its `result` arrives).
    UsageRecorded {
        step: StepId,
        label: String,
        update: UsageUpdate,
    },
    /// Claude Code reported a rate limit.
    RateLimited {
        step: StepId,
        label: String,
        record: RateLimitRecord,
    },
    /// A budget scope's spend changed. Scopes: "run", a base slash command ("/review"),
    /// "job <name>", "window <period>".
    BudgetUpdated {
        scope: String,
        /// What the scope covers (the name is for people; match on this).
        kind: crate::ledger::budget::ScopeKind,
        tokens_used: u64,
        usd_used: f64,
        tokens_limit: Option<u64>,
        usd_limit: Option<f64>,
    },
    /// A budget scope crossed a threshold (80 % or 100 %), reported once per scope and threshold.
    BudgetWarning {
        scope: String,
        /// 80 or 100.
        percent: u8,
        message: String,
    },
    /// Claude Code reported a rejected rate limit: no agent step starts before `until`.
    LaunchesPaused {
        until: DateTime<Utc>,
        reason: String,
    },
    /// The rate limit has reset; agent steps start again.
    LaunchesResumed,
    /// Runs that a killed orch left unfinished were reconciled from their logs and marked dead.
    DeadRunsReconciled { runs: Vec<String> },
    /// Writing to the ledger failed; the run goes on, the step logs keep the usage.
    LedgerFailed { error: String },
    /// The runner stopped launching and is stopping what runs.
    StopRequested {
        cause: StopCause,
        /// How many times a signal arrived (a second one kills every group at once).
        signals: u32,
    },
    /// A step ended (it ran).
    StepFinished {
        step: StepId,
        label: String,
        status: Status,
        exit_code: Option<i32>,
        signal: Option<i32>,
        /// Seconds, with millisecond precision.
        #[serde(with = "duration_secs")]
        #[schemars(with = "f64")]
        duration: Duration,
        usage: Option<Box<StepUsage>>,
        /// Pids of processes left in the step's group after it exited (all were killed).
        leaked: Vec<u32>,
        /// What went wrong, in a few words, when it did.
        reason: Option<String>,
        log: PathBuf,
        stderr_log: PathBuf,
    },
    /// A step never ran.
    StepSkipped {
        step: StepId,
        label: String,
        status: Status,
        reason: String,
    },
    /// orch is waiting to start a run at `at` (a start time or a cron fire time, in the
    /// schedule's zone).
    RunScheduled {
        at: DateTime<FixedOffset>,
        #[serde(with = "duration_secs")]
        #[schemars(with = "f64")]
        left: Duration,
        /// The cron expression, when this is a fire time of one.
        cron: Option<String>,
    },
    /// Still waiting: sent as the time left passes a milestone (1 h, 30 min, 10 min, ...).
    WaitUpdated {
        at: DateTime<FixedOffset>,
        #[serde(with = "duration_secs")]
        #[schemars(with = "f64")]
        left: Duration,
    },
    /// A fire time passed without a run: the previous run was still going, or the clock jumped
    /// (suspend, NTP) past it.
    FireSkipped {
        at: DateTime<FixedOffset>,
        reason: String,
    },
    /// A signal stopped the schedule between runs: nothing was running, nothing was stopped.
    ScheduleStopped { signal: String, runs: usize },
    /// The run ended; results are written.
    RunFinished {
        run_id: String,
        results: PathBuf,
        completed: usize,
        failed: usize,
        skipped: usize,
        total_tokens: u64,
        total_cost_usd: f64,
        /// Seconds, with millisecond precision.
        #[serde(with = "duration_secs")]
        #[schemars(with = "f64")]
        duration: Duration,
        exit_code: u8,
    },
    /// A usage figure in a step's output was capped or rejected: a token count above 10^12
    /// (counted at the cap), a negative, fractional or non-numeric count, or a cost that is
    /// negative, not finite or not a number (counted as $0). A warning; the step goes on.
    UsageAnomaly {
        step: StepId,
        label: String,
        /// The field, such as `message.usage.input_tokens` or `total_cost_usd`.
        field: String,
        /// What was wrong and what was counted instead.
        what: String,
    },
    /// A step's output could not be written to its log (a full disk, a file-size limit). The
    /// pipe is drained regardless and the step goes on; writing is tried again with each chunk.
    /// Sent when a streak of failures begins; the results and the summary give the final count.
    LogWriteFailed {
        step: StepId,
        label: String,
        /// "stdout" or "stderr".
        stream: String,
        path: PathBuf,
        error: String,
        /// Bytes not written so far.
        bytes_lost: u64,
    },
    /// The results file could not be written at `path` (after retries); `written_to` is where it
    /// was written instead, if anywhere.
    ResultsWriteFailed {
        path: PathBuf,
        error: String,
        written_to: Option<PathBuf>,
    },
    /// At the run's end some ledger writes could not land in time (the ledger stayed locked or
    /// failing); the run stays `running` and the next orch reconciles them from the step logs.
    LedgerWritesNotLanded {
        writes: usize,
        /// The last error the writer saw.
        error: Option<String>,
        message: String,
    },
    /// A job instance ended and has outputs (see the book's "Passing results between jobs"):
    /// an agent's `result`, `session_id`, `cost_usd`, `tokens` (and `structured`), a process
    /// job's `stdout`, `exit_code` (and `json`). Also appended to the run folder's `outputs.ndjson`
    /// (unmasked: the line `orch resume` renders later jobs' templates from).
    JobOutputs {
        /// The instance's name (`job` or `job[key]`).
        job: String,
        #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
        outputs: serde_json::Value,
        /// Bytes cut from the front of stdout to keep `output_limit` (0 when nothing was cut).
        stdout_cut_bytes: u64,
    },
    /// A `for_each` job's source output exists: the job became these instances (none when the
    /// array was empty). Their steps are numbered on from the last step of the plan.
    JobExpanded {
        job: String,
        instances: Vec<ExpandedInstance>,
    },
    /// A step attempt failed in a way its `retry` covers (or hit a rate limit, which is waited
    /// out without spending an attempt): attempt `attempt` starts at `at`, not before.
    StepRetrying {
        step: StepId,
        label: String,
        /// The attempt that ended, from 1.
        ended: u32,
        /// How it ended: `failed` or `timed_out`.
        status: Status,
        /// The kind of failure, as `retry.on` names it.
        kind: crate::manifest::RetryOn,
        /// What went wrong, in a few words.
        reason: String,
        /// The next attempt's number.
        attempt: u32,
        /// The most attempts `retry.attempts` allows (rate-limit continuations come on top).
        of: u32,
        /// Seconds until the next attempt, with millisecond precision.
        #[serde(with = "duration_secs")]
        #[schemars(with = "f64")]
        delay: Duration,
        /// When the next attempt may start.
        at: DateTime<Utc>,
        /// The next attempt continues the agent's session (`--resume`) instead of starting afresh.
        resume: bool,
        /// Whether this retry spends one of `retry.attempts` (a rate-limit continuation does not).
        counted: bool,
    },
    /// The number of agent steps that may run at once changed: the API throttled (`api_retry`
    /// with HTTP 429 or 529), or a quiet period passed.
    ConcurrencyChanged {
        /// Agent steps allowed at once; `None`: no limit besides `max_parallel`.
        limit: Option<usize>,
        reason: String,
    },
    /// A rate limit resets later than `max_pause` allows: nothing more starts and the run ends
    /// with status `rate_limited` (exit code 4) once what runs has ended.
    PauseTooLong {
        until: DateTime<Utc>,
        /// The `max_pause` setting, in seconds.
        #[serde(with = "duration_secs")]
        #[schemars(with = "f64")]
        max_pause: Duration,
        reason: String,
    },
}

/// An instance a dynamic fan-out made.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ExpandedInstance {
    /// `job[key]`.
    pub name: String,
    pub steps: Vec<ExpandedStep>,
}

/// One step of an instance a dynamic fan-out made.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ExpandedStep {
    pub id: StepId,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }
}
