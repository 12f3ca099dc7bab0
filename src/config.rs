//! The configuration of one invocation: the clap arguments of [`crate::cli`] turned, once and up
//! front, into typed and validated values (just's `config.rs`).
//!
//! Owns every flag's validation and its error (`orch::cli::bad_flag`, worded as the CLI tests
//! expect): durations become `Duration`s, `--start-at` and `--schedule` arrive parsed from clap and
//! are never parsed again, budgets become [`Limit`]s, the state folder is made absolute, zen's
//! flags (direct mode, a JSON `--config`, `--output-format`) are mapped to what they mean. It
//! also owns the precedence flag > manifest > default ([`ManifestConfig::apply`]). It never
//! prints, never spawns and never loads a manifest: the subcommands in [`crate::commands`] do
//! that with the Config in hand. It sits beside `cli.rs` rather than in `commands/` because every
//! subcommand takes it, and `commands/` holds one file per subcommand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cli::{self, BudgetModeArg, Command, CronArg, StartAtArg};
use crate::commands::direct::{self, Direct};
use crate::errors::Error;
use crate::manifest::{self, BudgetMode, Limit, Manifest};
use crate::process::StopLadder;
use crate::schedule::{self, StartAt, Zone};

#[cfg(test)]
mod tests;

/// What to do, with every flag checked.
pub enum Config {
    Plan(PlanConfig),
    Run(RunConfig),
    Resume(ResumeConfig),
    Ledger(LedgerConfig),
    Serve(crate::serve::ServeConfig),
    Runs(RunsConfig),
    Show(cli::ShowArgs),
    Logs(cli::LogsArgs),
    Convert { config: PathBuf },
    Schema { events: bool },
    Commands(cli::CommandsArgs),
    Completions { shell: clap_complete::Shell },
    Man { subcommand: Option<String> },
}

impl Config {
    /// Builds the Config of a subcommand. The simulated agent and the guardian are other
    /// programs sharing the executable and have none.
    pub fn from_command(command: Command) -> Result<Config, Error> {
        Ok(match command {
            Command::Plan(a) => Config::Plan(PlanConfig {
                manifest: ManifestConfig::from_args(&a.manifest)?,
                format: a.format,
                strict: a.strict,
                when: When::from_args(a.when),
            }),
            Command::Run(a) => Config::Run(RunConfig::from_args(a)?),
            Command::Resume(a) => Config::Resume(ResumeConfig {
                run_id: a.run_id,
                force: a.force,
                run: RunConfig::from_args(a.run)?,
            }),
            Command::Ledger(a) => Config::Ledger(LedgerConfig::from_args(a)?),
            Command::Serve(a) => Config::Serve(crate::serve::ServeConfig::from_args(a)?),
            Command::Runs(a) => Config::Runs(RunsConfig::from_args(a)?),
            Command::Show(a) => Config::Show(a),
            Command::Logs(a) => Config::Logs(a),
            Command::Convert { config } => Config::Convert { config },
            Command::Schema { events } => Config::Schema { events },
            Command::Commands(a) => Config::Commands(a),
            Command::Completions { shell } => Config::Completions { shell },
            Command::Man { subcommand } => Config::Man { subcommand },
            Command::AgentSim { .. } | Command::Guardian | Command::SlurmStep { .. } => {
                unreachable!("the simulated agent and the guardian are handled before")
            }
        })
    }
}

/// `orch plan`.
pub struct PlanConfig {
    pub manifest: ManifestConfig,
    pub format: cli::PlanFormat,
    pub strict: bool,
    pub when: When,
}

/// `orch run`.
pub struct RunConfig {
    pub manifest: ManifestConfig,
    pub dry_run: bool,
    /// zen's `--output`: the extra results file.
    pub output: Option<PathBuf>,
    /// `--state-dir`, absolute (the ledger stores paths under it; a reconciler may run elsewhere).
    pub state_dir: Option<PathBuf>,
    pub display: crate::report::Options,
    pub selection: crate::report::Selection,
    /// zen's `--list-commands`.
    pub list_commands: bool,
    /// zen's `--inspect-command NAME`.
    pub inspect_command: Option<String>,
    pub when: When,
    /// The stop ladder's grace periods (`ORCH_GRACE_INT`, `ORCH_GRACE_TERM`).
    pub ladder: StopLadder,
    /// `ORCH_LEDGER_WAIT`: caps how long a run's end waits for its ledger writes.
    pub ledger_wait: Option<Duration>,
}

/// `orch resume`.
pub struct ResumeConfig {
    /// The run's id or "latest" (`None` means "latest").
    pub run_id: Option<String>,
    /// Re-run changed completed steps instead of refusing.
    pub force: bool,
    /// The flags of `orch run` (its `dry_run` shows what would run).
    pub run: RunConfig,
}

impl RunConfig {
    fn from_args(a: cli::RunArgs) -> Result<RunConfig, Error> {
        Ok(RunConfig {
            manifest: ManifestConfig::from_args(&a.manifest)?,
            dry_run: a.dry_run,
            output: a.output,
            state_dir: a.state_dir.as_deref().map(absolute_state_dir).transpose()?,
            display: crate::report::Options {
                quiet: a.quiet,
                max_console_lines: a.max_console_lines,
                max_line_length: a.max_line_length,
                status_report_interval: Duration::from_secs(a.status_report_interval),
                disable_budget_visuals: a.disable_budget_visuals,
                color: false,
            },
            selection: crate::report::Selection {
                no_progress: a.no_progress,
                events: a.events,
            },
            list_commands: a.list_commands,
            inspect_command: a.inspect_command,
            when: When {
                start_at: a.start_at,
                schedule: a.schedule,
                once: a.once,
            },
            ladder: ladder_from_env(),
            ledger_wait: env_duration("ORCH_LEDGER_WAIT"),
        })
    }
}

/// A duration from the environment: `ORCH_GRACE_INT`, `ORCH_GRACE_TERM` and `ORCH_LEDGER_WAIT`
/// override built-in waits. An unreadable value keeps the default (these are for tests and
/// operators, not documented flags).
fn env_duration(key: &str) -> Option<Duration> {
    std::env::var(key)
        .ok()
        .and_then(|v| crate::duration::parse(&v).ok())
}

/// The stop ladder's grace periods: 10 s and 5 s unless `ORCH_GRACE_INT` and `ORCH_GRACE_TERM`
/// say otherwise.
fn ladder_from_env() -> StopLadder {
    let mut ladder = StopLadder::default();
    if let Some(d) = env_duration("ORCH_GRACE_INT") {
        ladder.grace_int = d;
    }
    if let Some(d) = env_duration("ORCH_GRACE_TERM") {
        ladder.grace_term = d;
    }
    ladder
}

/// `orch runs`.
pub struct RunsConfig {
    pub place: cli::HistoryPlace,
    /// `--since`, as a period before now.
    pub since: Option<Duration>,
    pub status: Option<String>,
    pub limit: usize,
    pub offset: usize,
    pub format: cli::LedgerFormat,
}

impl RunsConfig {
    fn from_args(a: cli::RunsArgs) -> Result<RunsConfig, Error> {
        let since = a.since.as_deref().map(since_flag).transpose()?;
        Ok(RunsConfig {
            place: a.place,
            since,
            status: a.status,
            limit: a.limit,
            offset: a.offset,
            format: a.format,
        })
    }
}

/// A `--since` period: "24h", "7d".
fn since_flag(text: &str) -> Result<Duration, Error> {
    crate::duration::parse(text).map_err(|reason| Error::BadFlag {
        flag: "--since",
        value: text.to_string(),
        reason: reason.to_string(),
        help: format!(
            "for example --since 24h or --since 7d; at most {}",
            crate::duration::MAX_TEXT
        ),
    })
}

/// `orch ledger`.
pub struct LedgerConfig {
    /// `--state-dir`, absolute, over the manifest's.
    pub state_dir: Option<PathBuf>,
    /// The positional manifest.
    pub manifest: Option<PathBuf>,
    /// zen's `--config` (a JSON config's runs are kept in ./.orch).
    pub config: Option<PathBuf>,
    /// `--since`, and as written (the table's title says it).
    pub since: Duration,
    pub since_text: String,
    pub by: crate::ledger::GroupBy,
    pub format: cli::LedgerFormat,
}

impl LedgerConfig {
    fn from_args(a: cli::LedgerArgs) -> Result<LedgerConfig, Error> {
        let since = since_flag(&a.since)?;
        Ok(LedgerConfig {
            state_dir: a.state_dir.as_deref().map(absolute_state_dir).transpose()?,
            manifest: a.manifest,
            config: a.config,
            since,
            since_text: a.since,
            by: a.by,
            format: a.format,
        })
    }
}

/// Where the jobs come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A manifest file (TOML, or a zen JSON config).
    File {
        path: PathBuf,
        /// Given as the positional argument (an unreadable one may have been meant as a
        /// slash command: the error says how to run one).
        positional: bool,
        /// A zen JSON config given as `--config`: jobs run in the current folder and `.orch`
        /// goes there.
        zen_config: bool,
    },
    /// zen's direct mode: one job from the command line.
    Direct(DirectJob),
}

/// zen's direct mode: the job and its flags.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectJob {
    pub what: Direct,
    /// Said when direct mode was guessed from the positional argument.
    pub notice: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub session_id: Option<String>,
    pub clear_history: bool,
    pub compact_history: bool,
}

/// Which manifest to load and the typed overrides the flags put over it.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestConfig {
    pub source: Source,
    /// A manifest was named on the command line (the positional argument or `--config`).
    pub named: bool,
    pub workspace: Option<PathBuf>,
    pub startup_delay: Option<Duration>,
    pub max_parallel: Option<usize>,
    pub timeout: Option<Duration>,
    pub fail_fast: bool,
    pub simulate: bool,
    pub claude_path: Option<PathBuf>,
    pub budget_mode: Option<BudgetMode>,
    /// `--overall-token-budget`, `--overall-cost-budget`.
    pub run_limit: Limit,
    /// `--command-budget`, `--command-cost-budget`, per base command ("/cmd"), in flag order.
    pub command_limits: Vec<(String, Limit)>,
    /// What the flags ask for that orch does not do.
    pub warnings: Vec<String>,
}

impl ManifestConfig {
    /// Checks and types the flags of [`cli::ManifestArgs`]; the first bad one is the error.
    pub fn from_args(args: &cli::ManifestArgs) -> Result<ManifestConfig, Error> {
        let source = source(args)?;
        let startup_delay = args
            .startup_delay
            .as_deref()
            .map(|d| duration_flag("--startup-delay", d))
            .transpose()?;
        let timeout = args
            .timeout
            .as_deref()
            .map(|t| duration_flag("--timeout", t))
            .transpose()?;
        if args.max_parallel == Some(0) {
            return Err(Error::BadFlag {
                flag: "--max-parallel",
                value: "0".into(),
                reason: "it must be at least 1".into(),
                help: "leave it out for no limit".into(),
            });
        }
        let run_limit = Limit {
            tokens: args
                .overall_token_budget
                .map(|t| positive_tokens("--overall-token-budget", t))
                .transpose()?,
            usd: args
                .overall_cost_budget
                .map(|usd| positive_usd("--overall-cost-budget", usd, &usd.to_string()))
                .transpose()?,
        };
        let mut command_limits: Vec<(String, Limit)> = Vec::new();
        for spec in &args.command_budget {
            let (cmd, n) = command_flag("--command-budget", spec)?;
            let tokens = n.parse::<u64>().map_err(|_| Error::BadFlag {
                flag: "--command-budget",
                value: spec.clone(),
                reason: format!("the amount {n:?} is not a whole number of tokens"),
                help: "for example --command-budget \"/createtestsv2=50000\"".into(),
            })?;
            command_limit(&mut command_limits, &cmd).tokens =
                Some(positive_tokens("--command-budget", tokens)?);
        }
        for spec in &args.command_cost_budget {
            let (cmd, text) = command_flag("--command-cost-budget", spec)?;
            let usd = text.parse::<f64>().unwrap_or(f64::NAN);
            command_limit(&mut command_limits, &cmd).usd =
                Some(positive_usd("--command-cost-budget", usd, text)?);
        }
        let mut warnings = Vec::new();
        if args.output_format.as_deref() == Some("json") {
            warnings.push(
                "--output-format json changes nothing: orch always reads Claude Code's \
                 stream-json (zen's json mode printed one object at the end; the results file \
                 holds the same)"
                    .into(),
            );
        }
        Ok(ManifestConfig {
            source,
            named: args.manifest.is_some() || args.config.is_some(),
            workspace: args.workspace.clone(),
            startup_delay,
            max_parallel: args.max_parallel,
            timeout,
            fail_fast: args.fail_fast,
            simulate: args.simulate,
            claude_path: args.claude_path.clone(),
            budget_mode: args.budget_enforcement_mode.map(|mode| match mode {
                BudgetModeArg::Warn => BudgetMode::Warn,
                BudgetModeArg::Block => BudgetMode::Block,
            }),
            run_limit,
            command_limits,
            warnings,
        })
    }

    /// The Config of just this manifest file, no other flag (`orch commands --manifest`).
    pub fn of_file(path: &Path) -> ManifestConfig {
        ManifestConfig::from_args(&cli::ManifestArgs {
            manifest: Some(path.to_path_buf()),
            ..cli::ManifestArgs::default()
        })
        .expect("a manifest path alone has no flag to reject")
    }

    /// Whether this invocation is zen's: a JSON `--config`, or direct mode. Then jobs run in the
    /// current folder and, without `--output`, zen's auto-named results file is written there.
    pub fn zen_mode(&self) -> bool {
        match &self.source {
            Source::Direct(_) => true,
            Source::File { zen_config, .. } => *zen_config,
        }
    }

    /// Puts the flags over the loaded manifest: a flag wins over the file, the file over orch's
    /// defaults (which the loader already filled in).
    pub fn apply(&self, m: &mut Manifest) {
        if let Some(w) = &self.workspace {
            m.settings.workspace = w.clone();
            for job in &mut m.jobs {
                job.workspace = w.clone();
            }
        }
        let s = &mut m.settings;
        if let Some(d) = self.startup_delay {
            s.startup_delay = d;
        }
        if let Some(t) = self.timeout {
            s.timeout = t;
            for job in &mut m.jobs {
                job.timeout = t;
            }
        }
        if let Some(n) = self.max_parallel {
            s.max_parallel = Some(n);
        }
        s.fail_fast |= self.fail_fast;
        if let Some(p) = &self.claude_path {
            s.claude_path = Some(p.clone());
        }
        let b = &mut m.budget;
        if let Some(mode) = self.budget_mode {
            b.mode = mode;
        }
        if let Some(t) = self.run_limit.tokens {
            b.run.tokens = Some(t);
        }
        if let Some(usd) = self.run_limit.usd {
            b.run.usd = Some(usd);
        }
        for (cmd, limit) in &self.command_limits {
            let l = command_limit(&mut b.commands, cmd);
            if let Some(t) = limit.tokens {
                l.tokens = Some(t);
            }
            if let Some(usd) = limit.usd {
                l.usd = Some(usd);
            }
        }
        m.warnings.extend(self.warnings.iter().cloned());
    }
}

/// Where the jobs come from, from the positional argument, `--config` and direct mode's flags.
fn source(args: &cli::ManifestArgs) -> Result<Source, Error> {
    if let Some((what, notice)) = direct::from_args(args) {
        return Ok(Source::Direct(DirectJob {
            what,
            notice,
            name: args.instance_name.clone(),
            description: args.instance_description.clone(),
            session_id: args.session_id.clone(),
            clear_history: args.clear_history,
            compact_history: args.compact_history,
        }));
    }
    if let Some(flag) = direct::stray_flags(args) {
        return Err(Error::BadFlag {
            flag,
            value: "given alone".into(),
            reason: "it belongs to direct mode, and no --command or --prompt was given".into(),
            help: format!("for example: orch run --command \"/createtestsv2 unit\" {flag} ..."),
        });
    }
    let path = args
        .manifest
        .clone()
        .or_else(|| args.config.clone())
        .unwrap_or_else(|| PathBuf::from(manifest::DEFAULT_MANIFEST));
    Ok(Source::File {
        zen_config: args.config.is_some() && is_json_config(&path),
        positional: args.manifest.is_some(),
        path,
    })
}

/// When a run starts: `--start-at` and `--schedule` as clap parsed them, and `--once`.
#[derive(Clone, Debug, Default)]
pub struct When {
    pub start_at: Option<StartAtArg>,
    pub schedule: Option<CronArg>,
    pub once: bool,
}

/// The start time and cron schedule in force, flags over the manifest, in their zone.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// The start time as written, where it came from ("--start-at" or "schedule.start_at"), parsed.
    pub start: Option<(String, &'static str, StartAt)>,
    pub cron: Option<(String, cron::Schedule)>,
    pub zone: Zone,
}

impl When {
    fn from_args(a: cli::WhenArgs) -> When {
        When {
            start_at: a.start_at,
            schedule: a.schedule,
            once: a.once,
        }
    }

    /// The flags' start time and schedule, else the manifest's. The manifest's values were
    /// checked when it loaded; the flags' were parsed by clap and are taken as they are.
    pub fn choose(&self, s: &manifest::Schedule) -> Result<Chosen, Error> {
        let start = match (&self.start_at, &s.start_at) {
            (Some(a), _) => Some((a.text.clone(), "--start-at", a.spec.clone())),
            (None, Some(text)) => {
                let spec = schedule::parse_start_at(text).map_err(|reason| Error::BadFlag {
                    flag: "schedule.start_at",
                    value: text.clone(),
                    reason,
                    help: format!("write {}", schedule::START_AT_FORMS),
                })?;
                Some((text.clone(), "schedule.start_at", spec))
            }
            (None, None) => None,
        };
        let cron = match (&self.schedule, &s.cron) {
            (Some(a), _) => Some((a.text.clone(), a.schedule.clone())),
            (None, Some(expr)) => {
                let c = schedule::parse_cron(expr).map_err(|reason| Error::BadFlag {
                    flag: "--schedule",
                    value: expr.clone(),
                    reason,
                    help: "write 5 fields (\"0 2 * * *\"), 6 with seconds first, or @hourly, \
                           @daily, @weekly"
                        .into(),
                })?;
                Some((expr.clone(), c))
            }
            (None, None) => None,
        };
        let zone = Zone::parse(s.timezone.as_deref()).map_err(|reason| Error::BadFlag {
            flag: "schedule.timezone",
            value: s.timezone.clone().unwrap_or_default(),
            reason,
            help: "use an IANA zone name such as \"Europe/Berlin\"".into(),
        })?;
        Ok(Chosen { start, cron, zone })
    }
}

impl Default for Chosen {
    /// Nothing scheduled, in local time.
    fn default() -> Chosen {
        Chosen {
            start: None,
            cron: None,
            zone: Zone::Local,
        }
    }
}

impl Chosen {
    /// The start time tied to a day: the instant it names at `now`, in the zone.
    pub fn start_instant(&self, now: DateTime<Utc>) -> Option<Result<DateTime<Utc>, String>> {
        self.start
            .as_ref()
            .map(|(_, _, spec)| self.zone.start_at(spec, now))
    }
}

/// The state folder made absolute, once, against the current folder: the ledger stores the run
/// and log paths under it, and the next orch to read them (a reconciler) may run elsewhere.
pub fn absolute_state_dir(dir: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(dir).map_err(|e| {
        Error::io(
            format!("cannot make the state folder {} absolute", dir.display()),
            e,
        )
    })
}

/// Whether `path` is a zen JSON config (by its extension, or text that opens with `{`).
pub fn is_json_config(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    manifest::Format::detect(path, &text) == manifest::Format::LegacyJson
}

fn duration_flag(flag: &'static str, value: &str) -> Result<Duration, Error> {
    crate::duration::parse(value).map_err(|reason| Error::BadFlag {
        flag,
        value: value.into(),
        reason: reason.to_string(),
        help: format!(
            "write seconds (\"2.5\") or a duration (\"500ms\", \"30s\", \"2h\") of at most {}",
            crate::duration::MAX_TEXT
        ),
    })
}

fn positive_tokens(flag: &'static str, n: u64) -> Result<u64, Error> {
    if n == 0 {
        return Err(Error::BadFlag {
            flag,
            value: "0".into(),
            reason: "a budget must be greater than zero".into(),
            help: "leave the flag out for no limit".into(),
        });
    }
    Ok(n)
}

/// A dollar budget must be a finite number above zero; `written` is the value as the user gave
/// it, for the message.
fn positive_usd(flag: &'static str, usd: f64, written: &str) -> Result<f64, Error> {
    if usd > 0.0 && usd.is_finite() {
        return Ok(usd);
    }
    Err(Error::BadFlag {
        flag,
        value: written.into(),
        reason: "a dollar budget must be a number greater than zero".into(),
        help: "for example 2.5".into(),
    })
}

/// Splits "/cmd=amount" into the command and the amount. zen added the `/` when it was missing
/// ("createtestsv2=5000"), and so does orch.
fn command_flag<'a>(flag: &'static str, spec: &'a str) -> Result<(String, &'a str), Error> {
    let Some((cmd, n)) = spec.split_once('=') else {
        return Err(bad_command_flag(flag, spec));
    };
    let cmd = cmd.trim();
    let name = cmd.strip_prefix('/').unwrap_or(cmd);
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad_command_flag(flag, spec));
    }
    Ok((format!("/{name}"), n.trim()))
}

fn bad_command_flag(flag: &'static str, spec: &str) -> Error {
    Error::BadFlag {
        flag,
        value: spec.into(),
        reason: "expected /command=amount".into(),
        help: format!("for example {flag} \"/createtestsv2=50000\""),
    }
}

fn command_limit<'a>(commands: &'a mut Vec<(String, Limit)>, cmd: &str) -> &'a mut Limit {
    let i = match commands.iter().position(|(c, _)| c == cmd) {
        Some(i) => i,
        None => {
            commands.push((cmd.to_string(), Limit::default()));
            commands.len() - 1
        }
    };
    &mut commands[i].1
}
