//! The command line: clap types only. zen's flags keep their names and meanings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Run Claude Code agents and other jobs from a TOML manifest: in parallel, on schedules, under budgets",
    propagate_version = true,
    // argparse let zen's users shorten long flags (`--dry` for `--dry-run`); an exact name
    // always wins, and an ambiguous prefix is an error naming the candidates.
    infer_long_args = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Diagnostics on stderr: -v for debug, -vv for trace (`RUST_LOG` works too).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a run would do: steps in order with their exact argv, offsets, budgets, warnings.
    Plan(PlanArgs),
    /// Run the manifest's jobs (now, at --start-at, or on the manifest's cron schedule).
    Run(RunArgs),
    /// Run again only the steps of a run that did not complete, reusing the others' outputs.
    Resume(ResumeArgs),
    /// What was spent: by run, job, command, model or day, from the ledger.
    Ledger(LedgerArgs),
    /// A local web dashboard over the state folder(s): runs, a run's graph and logs live, spend
    /// and schedule. Read-only.
    Serve(ServeArgs),
    /// The runs of a state folder, newest first: one line each (status counts, tokens, dollars).
    Runs(RunsArgs),
    /// One run's summary: its steps as at its end, or as they stand while it runs.
    Show(ShowArgs),
    /// A step's log, rendered (or its bytes with --raw); -f follows a running step to its end.
    Logs(LogsArgs),
    /// Print the TOML manifest equivalent to a zen JSON config.
    Convert {
        /// The JSON config to convert.
        config: PathBuf,
    },
    /// Print the JSON Schema of manifests (or, with --events, of the NDJSON event stream).
    Schema {
        /// The schema of `orch run --events` lines instead.
        #[arg(long)]
        events: bool,
    },
    /// List the slash commands Claude Code would find where jobs run (zen's --list-commands).
    Commands(CommandsArgs),
    /// Print a shell completion script: `orch completions bash > /etc/bash_completion.d/orch`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page of orch, or of one subcommand (`orch man plan`), in roff.
    Man {
        /// The subcommand whose page to print.
        subcommand: Option<String>,
    },
    /// The simulated agent (stands in for `claude`; takes Claude Code's arguments).
    #[command(name = "agent-sim", hide = true)]
    AgentSim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Kills the process groups of a dead orch (internal).
    #[command(name = "__guardian", hide = true)]
    Guardian,
    /// Runs one step on a Slurm node and reports how it ended (internal).
    #[command(name = "__slurm_step", hide = true)]
    SlurmStep {
        /// The step's working directory on the node.
        #[arg(long)]
        cwd: PathBuf,
        /// The step's program and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
}

/// Which manifest to load and the settings that override it.
#[derive(Debug, Args, Clone, Default)]
pub struct ManifestArgs {
    /// The manifest (TOML, or a zen JSON config); default: ./orch.toml.
    pub manifest: Option<PathBuf>,
    /// zen's name for the manifest argument.
    #[arg(long = "config", value_name = "FILE", conflicts_with = "manifest")]
    pub config: Option<PathBuf>,
    /// Working folder of jobs (overrides settings.workspace).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Least time between launches: seconds ("2.5") or a duration ("500ms"); zen's default 5 s.
    #[arg(long, value_name = "DURATION")]
    pub startup_delay: Option<String>,
    /// Most steps running at once.
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
    /// Time limit of one step: seconds or a duration; zen's default 10000 s.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Stop the whole run when a step fails.
    #[arg(long)]
    pub fail_fast: bool,
    /// Use orch's simulated agent instead of Claude Code (no cost, same stream format).
    #[arg(long)]
    pub simulate: bool,
    /// The Claude Code executable.
    #[arg(long, value_name = "PATH")]
    pub claude_path: Option<PathBuf>,
    /// Token limit of the whole run.
    #[arg(long, value_name = "TOKENS")]
    pub overall_token_budget: Option<u64>,
    /// Dollar limit of the whole run.
    #[arg(long, value_name = "USD")]
    pub overall_cost_budget: Option<f64>,
    /// Token limit per base slash command, "/cmd=N" (repeatable; "cmd=N" means "/cmd=N").
    #[arg(long, value_name = "/CMD=TOKENS")]
    pub command_budget: Vec<String>,
    /// Dollar limit per base slash command, "/cmd=USD" (repeatable; "cmd=USD" means "/cmd=USD").
    #[arg(long, value_name = "/CMD=USD")]
    pub command_cost_budget: Vec<String>,
    /// What a budget does when reached: warn, or block.
    #[arg(long, value_enum, value_name = "MODE")]
    pub budget_enforcement_mode: Option<BudgetModeArg>,
    // --- direct mode (zen's `tool "/cmd args"`): one job from the command line, no file ---
    /// Run this one slash command ("/cmd args") as the only job, without a manifest (zen's
    /// direct mode; `orch run "/cmd args"` means the same when no such file exists).
    #[arg(long, value_name = "\"/CMD ARGS\"", conflicts_with_all = ["manifest", "config", "prompt"])]
    pub command: Option<String>,
    /// Run this one prompt as the only job, without a manifest.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["manifest", "config"])]
    pub prompt: Option<String>,
    /// The direct job's name (zen's --instance-name; default: the command's name).
    #[arg(long, value_name = "NAME")]
    pub instance_name: Option<String>,
    /// The direct job's description (zen's --instance-description).
    #[arg(long, value_name = "TEXT")]
    pub instance_description: Option<String>,
    /// The direct job's Claude Code session (zen's --session-id).
    #[arg(long, value_name = "ID")]
    pub session_id: Option<String>,
    /// Run /clear before the direct job's command (zen's --clear-history).
    #[arg(long)]
    pub clear_history: bool,
    /// Run /compact before the direct job's command (zen's --compact-history).
    #[arg(long)]
    pub compact_history: bool,
    /// zen's output format flag. orch always reads Claude Code's stream-json: "stream-json" is
    /// accepted as is, "json" is accepted with a warning that it changes nothing.
    #[arg(long, value_name = "FORMAT", value_parser = ["stream-json", "json"])]
    pub output_format: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BudgetModeArg {
    Warn,
    Block,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    Dot,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// The manifest whose state folder holds the ledger (default: ./orch.toml, else ./.orch).
    pub manifest: Option<PathBuf>,
    /// zen's name for the manifest argument: a JSON config's runs are kept in ./.orch.
    #[arg(long = "config", value_name = "FILE", conflicts_with = "manifest")]
    pub config: Option<PathBuf>,
    /// The state folder holding ledger.sqlite (overrides the manifest's).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only spend newer than this: "24h", "7d", "30m".
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub since: String,
    /// How to group the spend.
    #[arg(long, value_enum, default_value = "run")]
    pub by: crate::ledger::GroupBy,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: LedgerFormat,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address and port to listen on; anything but a loopback address needs a token.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8765")]
    pub bind: String,
    /// A state folder to show (repeatable; default: ./.orch).
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dirs: Vec<PathBuf>,
    /// The token every request must carry (`Authorization: Bearer TOKEN`, or `?token=TOKEN`
    /// once, which sets a cookie).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ORCH_SERVE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A file holding the token (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

/// Which state folder's history to read.
#[derive(Debug, Args, Clone, Default)]
pub struct HistoryPlace {
    /// The state folder holding the runs (overrides the manifest's).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The manifest whose state folder to read (default: ./orch.toml, else ./.orch).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub place: HistoryPlace,
    /// Only runs started in this period: "24h", "7d", "30m".
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only runs with this status: completed, failed, budget_stop, interrupted, rate_limited,
    /// running, dead, ...
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Most runs shown (0 for all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Runs skipped before the first shown (paging).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: LedgerFormat,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub place: HistoryPlace,
    /// The run: its id, the unique start of it (or of its part after the `-`), or `latest`.
    #[arg(default_value = "latest")]
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: LedgerFormat,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub place: HistoryPlace,
    /// The run: its id, the unique start of it, or `latest`.
    pub run: String,
    /// The step: its label (`job`, `job [2/3]`, `job[key]`) or job name; default: the run's only
    /// step, else its last started.
    pub job: Option<String>,
    /// Follow a running step until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The log's bytes as written, not rendered (terminal escapes are still neutralised).
    #[arg(long)]
    pub raw: bool,
    /// The step's stderr log instead.
    #[arg(long)]
    pub stderr: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum LedgerFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: PlanFormat,
    /// Make an unknown slash command an error (exit code 2) instead of a warning.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub when: WhenArgs,
}

/// When a run would start: `orch plan` shows what `orch run` with the same flags would wait for.
#[derive(Debug, Args, Clone, Default)]
pub struct WhenArgs {
    /// Show the run as if started with `orch run --start-at TIME`: the resolved start time and
    /// the wait (overrides schedule.start_at).
    #[arg(long, value_name = "TIME", value_parser = start_at_arg)]
    pub start_at: Option<StartAtArg>,
    /// Show the run as if started with `orch run --schedule CRON`: its next fire times
    /// (overrides schedule.cron).
    #[arg(long, value_name = "CRON", value_parser = cron_arg)]
    pub schedule: Option<CronArg>,
    /// With a cron schedule, show only the one fire time `orch run --once` would run at.
    #[arg(long)]
    pub once: bool,
}

// ---- `orch commands` (slash commands) ----

#[derive(Debug, Args)]
pub struct CommandsArgs {
    #[command(subcommand)]
    pub action: Option<CommandsAction>,
    #[command(flatten)]
    pub place: CommandsPlace,
}

#[derive(Debug, Subcommand)]
pub enum CommandsAction {
    /// Show one command: its file, frontmatter, argument hint, placeholders and the start of its
    /// body (zen's --inspect-command).
    Inspect {
        /// The command, such as /createtestsv2 or /frontend:component.
        name: String,
    },
}

/// Where to look for slash commands, and how to show them.
#[derive(Debug, Args, Clone, Default)]
pub struct CommandsPlace {
    /// Look where this manifest's jobs run (its settings.workspace).
    #[arg(long, global = true, value_name = "FILE", visible_alias = "config")]
    pub manifest: Option<PathBuf>,
    /// Look in this folder (default: the current folder).
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t)]
    pub format: CommandsFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum CommandsFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Show the plan and exit without running anything (zen's flag; same as `orch plan`).
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the results file here (zen's flag). Without it, a JSON --config run also writes
    /// zen's claude_instances_results_<YYYYMMDD_HHMMSS>_<names>.json in the current folder.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Where runs, logs and the ledger are kept (default: .orch beside the manifest; for a JSON
    /// --config or direct mode, .orch in the current folder).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print only errors and the final summary.
    #[arg(long)]
    pub quiet: bool,
    /// Most output lines shown per job (zen's flag).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_console_lines: usize,
    /// Longest output line shown, in characters (zen's flag); the live view shows at least 20.
    #[arg(long, value_name = "N", default_value_t = 800)]
    pub max_line_length: usize,
    /// Seconds between status reports (zen's flag).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub status_report_interval: u64,
    /// Hide the budget bars.
    #[arg(long)]
    pub disable_budget_visuals: bool,
    // --- display (report/select.rs) ---
    /// Plain timestamped lines and status tables even on a terminal (no live view).
    #[arg(long)]
    pub no_progress: bool,
    /// Write every event as one JSON object per line to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// zen's --list-commands: the same as `orch commands`.
    #[arg(long, hide = true)]
    pub list_commands: bool,
    /// zen's --inspect-command NAME: the same as `orch commands inspect NAME`.
    #[arg(long, hide = true, value_name = "NAME")]
    pub inspect_command: Option<String>,
    // Scheduling (see the book's "Scheduling" chapter).
    /// Wait, then start: "2h", "30m", "1h30m", "14:30", "2am", "10:30pm", "tomorrow 9am", or an
    /// ISO 8601 date-time (overrides schedule.start_at).
    #[arg(long, value_name = "TIME", value_parser = start_at_arg)]
    pub start_at: Option<StartAtArg>,
    /// Run as a service at every fire time of this cron expression (overrides schedule.cron).
    #[arg(long, value_name = "CRON", value_parser = cron_arg)]
    pub schedule: Option<CronArg>,
    /// With a cron schedule, run at the next fire time only, then exit.
    #[arg(long)]
    pub once: bool,
}

/// `orch resume`: the run to continue, and the flags of `orch run` that apply to the new run
/// (budgets, `--simulate`, display, `--state-dir`); the manifest defaults to the one the original
/// run used.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to resume: its id (as `orch ledger` and the run folders show it), or "latest".
    #[arg(value_name = "RUN_ID|latest")]
    pub run_id: Option<String>,
    /// Re-run completed steps whose definition changed since the original run (and what
    /// depends on them) instead of refusing.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `--start-at` as written and as parsed, once, by clap: nothing downstream parses the text again.
#[derive(Clone, Debug, PartialEq)]
pub struct StartAtArg {
    /// The text as written, for messages and the plan ("start at \"2h\"").
    pub text: String,
    /// The parsed start time, not yet tied to a day (that needs the zone and `now`).
    pub spec: crate::schedule::StartAt,
}

/// `--schedule` as written and as parsed, once, by clap.
#[derive(Clone, Debug)]
pub struct CronArg {
    /// The expression as written.
    pub text: String,
    /// The parsed schedule.
    pub schedule: cron::Schedule,
}

fn start_at_arg(text: &str) -> Result<StartAtArg, String> {
    crate::schedule::parse_start_at(text)
        .map(|spec| StartAtArg {
            text: text.to_string(),
            spec,
        })
        .map_err(|e| format!("{e}; write {}", crate::schedule::START_AT_FORMS))
}

fn cron_arg(text: &str) -> Result<CronArg, String> {
    crate::schedule::parse_cron(text)
        .map(|schedule| CronArg {
            text: text.to_string(),
            schedule,
        })
        .map_err(|e| {
            format!("{e}; write 5 fields (\"0 2 * * *\"), 6 with seconds first, or @hourly, @daily, @weekly")
        })
}
