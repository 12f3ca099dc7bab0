//! The validated manifest: what every module after loading works with.
//!
//! Nothing here knows TOML or JSON. Every value has been checked and every default applied, so
//! the planner and the runner never meet a missing or malformed setting.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

/// zen's default stagger between launches.
pub const DEFAULT_STARTUP_DELAY: Duration = Duration::from_secs(5);
/// zen's default time limit per instance.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10_000);
/// zen's default permission mode.
pub const DEFAULT_PERMISSION_MODE: &str = "bypassPermissions";
/// The permission modes Claude Code accepts.
pub const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// A loaded, validated manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    pub name: String,
    pub description: Option<String>,
    /// The file it was loaded from.
    pub path: PathBuf,
    pub settings: Settings,
    pub schedule: Schedule,
    pub budget: Budget,
    /// Jobs in the order they were written (launch order among ready steps).
    pub jobs: Vec<Job>,
    /// Things that load fine but probably are not what the author meant.
    pub warnings: Vec<String>,
    /// The top `[slurm]` table resolved, when any job runs on Slurm (the run's allocation).
    pub slurm: Option<super::slurm::Slurm>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    /// Absolute working folder of jobs without their own.
    pub workspace: PathBuf,
    pub startup_delay: Duration,
    /// `None` means unlimited.
    pub max_parallel: Option<usize>,
    pub timeout: Duration,
    pub fail_fast: bool,
    /// Absolute state folder (runs, logs, ledger).
    pub state_dir: PathBuf,
    pub claude_path: Option<PathBuf>,
    pub disable_budget_visuals: bool,
    /// The longest a rate-limit pause may last: a reset further away ends the run as
    /// `rate_limited` instead of waiting for it.
    #[serde(
        rename = "max_pause_ms",
        serialize_with = "crate::duration::serialize_ms"
    )]
    pub max_pause: Duration,
    /// How long the API must stay free of throttling before the agent concurrency rises again.
    #[serde(
        rename = "throttle_quiet_ms",
        serialize_with = "crate::duration::serialize_ms"
    )]
    pub throttle_quiet: Duration,
}

/// When `orch run` starts the graph; every value was checked when the manifest loaded.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Schedule {
    pub cron: Option<String>,
    pub start_at: Option<String>,
    /// An IANA zone name; `None` is the machine's local time.
    pub timezone: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetMode {
    /// Report thresholds and go on (zen's default).
    #[default]
    Warn,
    /// Refuse to start, and stop, what would overspend.
    Block,
}

/// A limit in tokens and/or dollars; either may be absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Limit {
    pub tokens: Option<u64>,
    pub usd: Option<f64>,
}

impl Limit {
    pub fn is_set(&self) -> bool {
        self.tokens.is_some() || self.usd.is_some()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Budget {
    pub mode: BudgetMode,
    /// The whole run.
    pub run: Limit,
    /// Per base slash command, e.g. "/createtestsv2".
    pub commands: Vec<(String, Limit)>,
    pub window: Option<Window>,
}

/// A rolling limit across runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    #[serde(rename = "period_ms", serialize_with = "crate::duration::serialize_ms")]
    pub period: Duration,
    pub limit: Limit,
}

/// One job of the manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub name: String,
    pub description: Option<String>,
    pub task: Task,
    /// The jobs that must end first, each once (resolve drops repeats), and when to run after
    /// each.
    pub needs: Vec<Need>,
    /// The `if` condition, as written (checked when the manifest loaded).
    pub condition: Option<String>,
    /// Dependents that need this job's success run after it fails too.
    pub continue_on_failure: bool,
    /// One instance per matrix combination or per item of an upstream array.
    pub fan_out: Option<FanOut>,
    /// The most instances of this job running at once.
    pub max_parallel: Option<usize>,
    /// What a `run`/`shell` job keeps of its stdout as outputs.
    pub outputs: ProcessOutputs,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub workspace: PathBuf,
    /// This job's own budget (zen's max_tokens_per_command, plus dollars).
    pub limit: Limit,
    /// Names of the variables whose values are masked (`secrets`, the defaults' and the
    /// job's); the always-masked names are [`crate::secrets::is_secret_name`].
    pub secrets: Vec<String>,
    /// How a failed step attempt of this job is tried again.
    pub retry: Retry,
    /// `isolation = "worktree"`: the job runs in its own git worktree on its own branch.
    pub isolation: Option<Isolation>,
    /// The job's Slurm settings when its steps run on Slurm; `None` runs them locally.
    pub slurm: Option<super::slurm::Slurm>,
}

/// The default of `max_pause`: the longest rate-limit pause a run waits out.
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(6 * 3600);
/// The default of `throttle_quiet`: the quiet period after which throttling eases by one step.
pub const DEFAULT_THROTTLE_QUIET: Duration = Duration::from_secs(60);
/// The default of `retry.backoff`: the wait before the second attempt.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);
/// The default of `retry.max_backoff`: the longest wait between two attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(600);
/// The default of `retry.prompt`: what a retry that continues the session says.
pub const DEFAULT_RETRY_PROMPT: &str = "Continue where you left off.";

/// `retry`: how many attempts a step gets and which failures earn another one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Retry {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for each one after.
    #[serde(
        rename = "backoff_ms",
        serialize_with = "crate::duration::serialize_ms"
    )]
    pub backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(
        rename = "max_backoff_ms",
        serialize_with = "crate::duration::serialize_ms"
    )]
    pub max_backoff: Duration,
    /// Wait a random 50–100 % of the backoff, so that steps failing together do not retry
    /// together.
    pub jitter: bool,
    /// The kinds of failure retried.
    pub on: Vec<RetryOn>,
    /// The prompt of a retry that continues the agent's session with `--resume`.
    pub prompt: String,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 1,
            backoff: DEFAULT_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            jitter: true,
            on: RetryOn::DEFAULT.to_vec(),
            prompt: DEFAULT_RETRY_PROMPT.to_string(),
        }
    }
}

/// A kind of failed attempt, as `retry.on` names it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The API was overloaded (HTTP 529, `overloaded_error`).
    Overloaded,
    /// A rate limit: HTTP 429, a rejected `rate_limit_event`, a usage-limit result.
    RateLimit,
    /// Another API error (HTTP 5xx, a connection failure).
    ApiError,
    /// The attempt ran out of its `timeout`.
    Timeout,
    /// The process exited non-zero (or died by a signal) for another reason.
    Exit,
    /// Claude Code stopped at `--max-turns` (`error_max_turns`).
    MaxTurns,
    /// Claude Code stopped at `--max-budget-usd` (`error_max_budget_usd`).
    MaxBudget,
    /// A tool use was denied by the permission mode.
    PermissionDenied,
}

impl RetryOn {
    /// What `retry.on` is when it is not written.
    pub const DEFAULT: &'static [RetryOn] = &[
        RetryOn::Overloaded,
        RetryOn::RateLimit,
        RetryOn::ApiError,
        RetryOn::Timeout,
        RetryOn::Exit,
    ];
    /// Every kind, in the order the book lists them.
    pub const ALL: &'static [RetryOn] = &[
        RetryOn::Overloaded,
        RetryOn::RateLimit,
        RetryOn::ApiError,
        RetryOn::Timeout,
        RetryOn::Exit,
        RetryOn::MaxTurns,
        RetryOn::MaxBudget,
        RetryOn::PermissionDenied,
    ];

    /// The name `retry.on` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::Overloaded => "overloaded",
            RetryOn::RateLimit => "rate_limit",
            RetryOn::ApiError => "api_error",
            RetryOn::Timeout => "timeout",
            RetryOn::Exit => "exit",
            RetryOn::MaxTurns => "max_turns",
            RetryOn::MaxBudget => "max_budget",
            RetryOn::PermissionDenied => "permission_denied",
        }
    }
}

/// A job's own git worktree: where its branch starts, what runs first, what happens at its end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Isolation {
    /// The new branch, as written (it may hold templates); `None` is
    /// `orch/<run-short-id>/<job>`, made a valid branch name.
    pub branch: Option<String>,
    /// The commit or ref the branch starts from, as written (it may hold templates); `None`
    /// is the workspace's `HEAD`.
    pub base: Option<String>,
    /// Commands run with `sh -c` in the new worktree before the job's first step.
    pub setup: Vec<String>,
    /// Commit what the job left uncommitted to its branch when it ends.
    pub commit: bool,
    /// When the worktree is removed after the job (its branch stays either way).
    pub keep: Keep,
    /// Refuse to start when the workspace has uncommitted changes to tracked files.
    pub require_clean: bool,
}

/// When a job's worktree is kept after the job ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Kept when the job did not complete, removed when it did.
    #[default]
    OnFailure,
    /// Always kept.
    Always,
    /// Always removed.
    Never,
}

impl Keep {
    /// The manifest's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::OnFailure => "on_failure",
            Keep::Always => "always",
            Keep::Never => "never",
        }
    }
}

/// The default of `max_items`: the most instances one fan-out may make.
pub const DEFAULT_MAX_ITEMS: usize = 256;
/// The default of `output_limit`: how much of a process job's stdout its `stdout` output keeps.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

/// A job waited for, and when the waiting job runs after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Need {
    pub job: String,
    pub when: When,
}

/// When a job runs after one it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// It completed (or failed with `continue_on_failure`).
    #[default]
    Success,
    /// It failed, timed out, went over budget or was blocked.
    Failure,
    /// It ended, however.
    Always,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Success => "success",
            When::Failure => "failure",
            When::Always => "always",
        }
    }
}

/// How a job fans out into instances.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FanOut {
    /// Static: one instance per combination.
    Matrix { combinations: Vec<Combination> },
    /// Dynamic: one instance per item of the array the template yields, once it exists.
    ForEach { source: String, max_items: usize },
}

/// One combination of a matrix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Combination {
    /// The instance's key: its values of the matrix's own keys, joined by "," (those of an
    /// `include` entry that names none of them: all its values).
    pub key: String,
    /// Each key with its value, the matrix's keys first, in the order written.
    pub values: Vec<(String, serde_json::Value)>,
}

/// What a process job keeps of its stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessOutputs {
    /// Parse stdout as JSON into the `json` output.
    pub json: bool,
    /// Bytes of stdout kept, from the end.
    pub limit: usize,
}

impl Default for ProcessOutputs {
    fn default() -> Self {
        ProcessOutputs {
            json: false,
            limit: DEFAULT_OUTPUT_LIMIT,
        }
    }
}

/// What a job runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Task {
    /// A Claude Code agent.
    Agent(Agent),
    /// A program with arguments, no shell.
    Exec { argv: Vec<String> },
    /// A script for `sh -c`.
    Shell { script: String },
}

/// A Claude Code job: its prompt, the commands run before it in the same session, and its options.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agent {
    /// The main prompt (a slash command or free text).
    pub prompt: String,
    /// Steps run first in the same session: /clear, /compact, then `pre_commands`.
    pub pre_commands: Vec<String>,
    pub allowed_tools: Vec<String>,
    pub permission_mode: String,
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    /// The session's UUID when the manifest names one; otherwise each run gets a fresh one.
    pub session_id: Option<Uuid>,
    /// The JSON Schema the job's final answer must match (`output_schema`), passed to Claude
    /// Code as `--json-schema`; the answer becomes the job's `structured` output.
    pub output_schema: Option<serde_json::Value>,
    /// The rest of Claude Code's headless configuration (`append_system_prompt`, `mcp_config`,
    /// ...), passed on every step of the job's chain.
    pub config: Box<ClaudeConfig>,
    /// `session = "fork"`: each run continues a copy of the named session (`--fork-session`)
    /// once it exists, instead of the session itself.
    pub fork_session: bool,
}

/// Claude Code options of one agent job, checked and with paths made absolute. Each becomes
/// one flag (or one flag per item) in [`crate::agent::claude_args`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClaudeConfig {
    /// `--append-system-prompt`.
    pub append_system_prompt: Option<String>,
    /// `--system-prompt`.
    pub system_prompt: Option<String>,
    /// `--disallowedTools`, joined by commas.
    pub disallowed_tools: Vec<String>,
    /// One `--mcp-config` each: an absolute file path, or inline JSON text.
    pub mcp_config: Vec<String>,
    /// `--strict-mcp-config`.
    pub strict_mcp_config: bool,
    /// One `--add-dir` each, absolute.
    pub add_dirs: Vec<PathBuf>,
    /// `--fallback-model`.
    pub fallback_model: Option<String>,
    /// `--settings`: an absolute file path, or inline JSON text.
    pub settings: Option<String>,
    /// `--agents`: the subagent definitions as JSON text.
    pub agents: Option<String>,
    /// `--permission-prompt-tool`.
    pub permission_prompt_tool: Option<String>,
    /// Passed as written, before the session flags.
    pub extra_args: Vec<String>,
}

impl Job {
    /// The names of the jobs it needs.
    pub fn need_names(&self) -> impl Iterator<Item = &str> {
        self.needs.iter().map(|n| n.job.as_str())
    }

    /// The output keys a completed job of this kind has (an isolated job's worktree keys
    /// included).
    pub fn output_keys(&self) -> &'static [&'static str] {
        if self.isolation.is_some() {
            return match &self.task {
                Task::Agent(a) if a.output_schema.is_some() => ISOLATED_AGENT_OUTPUTS,
                Task::Agent(_) => &ISOLATED_AGENT_OUTPUTS[..10],
                _ if self.outputs.json => ISOLATED_PROCESS_OUTPUTS,
                _ => &ISOLATED_PROCESS_OUTPUTS[..8],
            };
        }
        match &self.task {
            Task::Agent(a) if a.output_schema.is_some() => AGENT_OUTPUTS,
            Task::Agent(_) => &AGENT_OUTPUTS[..4],
            _ if self.outputs.json => PROCESS_OUTPUTS,
            _ => &PROCESS_OUTPUTS[..2],
        }
    }
}

/// An agent job's outputs (`structured` only with an `output_schema`).
pub const AGENT_OUTPUTS: &[&str] = &["result", "session_id", "cost_usd", "tokens", "structured"];
/// A process job's outputs (`json` only with `outputs = "json"`).
pub const PROCESS_OUTPUTS: &[&str] = &["stdout", "exit_code", "json"];
/// An isolated agent job's outputs: an agent's, then its worktree's (`branch` to `deletions`),
/// `structured` last (only with an `output_schema`).
const ISOLATED_AGENT_OUTPUTS: &[&str] = &[
    "result",
    "session_id",
    "cost_usd",
    "tokens",
    "branch",
    "commit",
    "base",
    "files_changed",
    "insertions",
    "deletions",
    "structured",
];
/// An isolated process job's outputs (`json` last, only with `outputs = "json"`).
const ISOLATED_PROCESS_OUTPUTS: &[&str] = &[
    "stdout",
    "exit_code",
    "branch",
    "commit",
    "base",
    "files_changed",
    "insertions",
    "deletions",
    "json",
];

impl Agent {
    /// The base slash command of a prompt ("/createtestsv2" for "/createtestsv2 frontend"), if any.
    pub fn base_command(prompt: &str) -> Option<&str> {
        let first = prompt.split_whitespace().next()?;
        (first.starts_with('/') && first.len() > 1).then_some(first)
    }
}
