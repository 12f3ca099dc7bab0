//! One file per subcommand, and what they share: loading a manifest with the flags applied on top.

pub mod completions;
pub mod convert;
pub mod direct;
pub mod ledger;
pub mod plan;
pub mod run;
pub mod schema;
pub mod service;
pub mod slash;

use std::path::{Path, PathBuf};

use crate::agent::{self, AgentProgram};
use crate::cli::{BudgetModeArg, ManifestArgs};
use crate::errors::Error;
use crate::manifest::{self, BudgetMode, Limit, Manifest};

/// The manifest path from the arguments, or `orch.toml` in the current folder.
pub fn manifest_path(args: &ManifestArgs) -> PathBuf {
    args.manifest
        .clone()
        .or_else(|| args.config.clone())
        .unwrap_or_else(|| PathBuf::from(manifest::DEFAULT_MANIFEST))
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

/// Whether this invocation is zen's: a JSON `--config`, or direct mode. Then jobs run in the
/// current folder and, without `--output`, zen's auto-named results file is written there.
pub fn zen_mode(args: &ManifestArgs) -> bool {
    direct::from_args(args).is_some() || args.config.as_deref().is_some_and(is_json_config)
}

/// zen ran a JSON config's instances in the current folder, wherever the config lay: with
/// `--config x.json` (and in direct mode) jobs run there and `.orch` goes there too. A TOML
/// manifest keeps its own folder.
pub fn current_folder_defaults(m: &mut Manifest) -> Result<(), Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("cannot read the current folder", e))?;
    m.settings.workspace = cwd.clone();
    m.settings.state_dir = cwd.join(".orch");
    for job in &mut m.jobs {
        job.workspace = cwd.clone();
    }
    Ok(())
}

/// Loads the manifest (or the direct job) and applies the command-line overrides (flags win over
/// the file).
pub fn load(args: &ManifestArgs) -> Result<Manifest, Error> {
    let direct = direct::from_args(args);
    if direct.is_none() {
        if let Some(flag) = direct::stray_flags(args) {
            return Err(Error::BadFlag {
                flag,
                value: "given alone".into(),
                reason: "it belongs to direct mode, and no --command or --prompt was given".into(),
                help: format!("for example: orch run --command \"/createtestsv2 unit\" {flag} ..."),
            });
        }
    }
    let mut m = match &direct {
        Some((job, notice)) => {
            if let Some(notice) = notice {
                crate::report::print_warning(notice);
            }
            let cwd = std::env::current_dir()
                .map_err(|e| Error::io("cannot read the current folder", e))?;
            direct::load(job, args, &cwd)?
        }
        None => {
            let path = manifest_path(args);
            let mut m = manifest::load(&path).map_err(|e| slash_hint(e, args))?;
            if args.config.is_some() && is_json_config(&path) {
                current_folder_defaults(&mut m)?;
            }
            m
        }
    };
    if let Some(w) = &args.workspace {
        m.settings.workspace = w.clone();
        for job in &mut m.jobs {
            job.workspace = w.clone();
        }
    }
    check_workspaces(&m, args.workspace.is_some())?;
    let s = &mut m.settings;
    if let Some(d) = &args.startup_delay {
        s.startup_delay = duration_flag("--startup-delay", d)?;
    }
    if let Some(t) = &args.timeout {
        let timeout = duration_flag("--timeout", t)?;
        s.timeout = timeout;
        for job in &mut m.jobs {
            job.timeout = timeout;
        }
    }
    if let Some(n) = args.max_parallel {
        if n == 0 {
            return Err(Error::BadFlag {
                flag: "--max-parallel",
                value: "0".into(),
                reason: "it must be at least 1".into(),
                help: "leave it out for no limit".into(),
            });
        }
        s.max_parallel = Some(n);
    }
    s.fail_fast |= args.fail_fast;
    if let Some(p) = &args.claude_path {
        s.claude_path = Some(p.clone());
    }
    let b = &mut m.budget;
    if let Some(mode) = args.budget_enforcement_mode {
        b.mode = match mode {
            BudgetModeArg::Warn => BudgetMode::Warn,
            BudgetModeArg::Block => BudgetMode::Block,
        };
    }
    if let Some(t) = args.overall_token_budget {
        b.run.tokens = Some(positive_tokens("--overall-token-budget", t)?);
    }
    if let Some(usd) = args.overall_cost_budget {
        b.run.usd = Some(positive_usd("--overall-cost-budget", &usd.to_string())?);
    }
    for spec in &args.command_budget {
        let (cmd, n) = command_flag("--command-budget", spec)?;
        let tokens = n.parse::<u64>().map_err(|_| Error::BadFlag {
            flag: "--command-budget",
            value: spec.clone(),
            reason: format!("the amount {n:?} is not a whole number of tokens"),
            help: "for example --command-budget \"/createtestsv2=50000\"".into(),
        })?;
        command_limit(&mut b.commands, &cmd).tokens =
            Some(positive_tokens("--command-budget", tokens)?);
    }
    for spec in &args.command_cost_budget {
        let (cmd, usd) = command_flag("--command-cost-budget", spec)?;
        command_limit(&mut b.commands, &cmd).usd =
            Some(positive_usd("--command-cost-budget", usd)?);
    }
    m.warnings.extend(flag_warnings(args));
    Ok(m)
}

/// Every job's workspace must be an existing folder: a missing one is a setup error naming the
/// path, before anything runs (the manifest loader never touches the file system beyond the
/// manifest itself, so this is checked here, once the flags are applied).
fn check_workspaces(m: &Manifest, from_flag: bool) -> Result<(), Error> {
    let mut checked = std::collections::HashSet::new();
    for job in &m.jobs {
        if !checked.insert(job.workspace.as_path()) {
            continue;
        }
        let problem = match std::fs::metadata(&job.workspace) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => "is not a folder",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
            Err(_) => "cannot be read",
        };
        let users: Vec<&str> = m
            .jobs
            .iter()
            .filter(|j| j.workspace == job.workspace)
            .map(|j| j.name.as_str())
            .collect();
        return Err(Error::BadWorkspace {
            path: job.workspace.clone(),
            problem,
            jobs: users.len(),
            first_job: users[0].to_string(),
            help: if from_flag {
                "create the folder, or pass an existing one to --workspace".into()
            } else {
                format!(
                    "create the folder, or fix `workspace` in [settings], [defaults] or \
                     [jobs.{}] (relative to the manifest's folder), or pass --workspace",
                    crate::manifest::read::quote_key(users[0])
                )
            },
        });
    }
    Ok(())
}

/// The fewest open files a run can work with: the async runtime, the ledger (database, WAL and
/// shared memory), the guardian's pipe, and a step's pipes and log files. Below it, tokio panics
/// while building its signal driver, so the limit is checked before.
pub const MIN_OPEN_FILES: u64 = 32;

/// Raises the open-file limit to the hard limit, and refuses to run when even that is below
/// [`MIN_OPEN_FILES`] (`ulimit -n 7` in bash lowers both limits).
pub fn check_open_files() -> Result<(), Error> {
    use nix::sys::resource::{Resource, getrlimit};
    crate::process::raise_fd_limit();
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < MIN_OPEN_FILES => Err(Error::TooFewFiles { soft, hard }),
        _ => Ok(()),
    }
}

/// What the flags ask for that orch does not do: `orch plan` lists these with the manifest's
/// warnings, `orch run` prints them on stderr before it starts.
pub fn flag_warnings(args: &ManifestArgs) -> Vec<String> {
    let mut out = Vec::new();
    if args.output_format.as_deref() == Some("json") {
        out.push(
            "--output-format json changes nothing: orch always reads Claude Code's stream-json \
             (zen's json mode printed one object at the end; the results file holds the same)"
                .into(),
        );
    }
    out
}

/// An unreadable positional manifest that may have been meant as a slash command: the hint says
/// how to run one directly.
fn slash_hint(e: manifest::LoadError, args: &ManifestArgs) -> Error {
    match e {
        manifest::LoadError::Unreadable { path, hint, source } if args.manifest.is_some() => {
            manifest::LoadError::Unreadable {
                path,
                hint: format!(
                    "{hint}; to run one slash command without a manifest (zen's direct mode): \
                     orch run --command \"/cmd args\""
                ),
                source,
            }
            .into()
        }
        e => e.into(),
    }
}

/// The program that plays Claude Code for this invocation.
pub fn agent_program(args: &ManifestArgs, m: &Manifest) -> Result<AgentProgram, Error> {
    if args.simulate {
        return AgentProgram::simulated()
            .map_err(|e| Error::io("cannot find orch's own executable", e));
    }
    agent::discover_claude(
        args.claude_path.as_deref(),
        m.settings.claude_path.as_deref(),
        std::env::var_os("PATH"),
        std::env::var_os("HOME").map(PathBuf::from),
    )
    .map(|program| AgentProgram {
        program,
        prefix: Vec::new(),
    })
    .map_err(|tried| Error::ClaudeNotFound { tried })
}

/// Whether any job of the manifest runs Claude Code.
pub fn has_agents(m: &Manifest) -> bool {
    m.jobs
        .iter()
        .any(|j| matches!(j.task, manifest::Task::Agent(_)))
}

fn duration_flag(flag: &'static str, value: &str) -> Result<std::time::Duration, Error> {
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

fn positive_usd(flag: &'static str, value: &str) -> Result<f64, Error> {
    match value.trim().parse::<f64>() {
        Ok(usd) if usd > 0.0 && usd.is_finite() => Ok(usd),
        _ => Err(Error::BadFlag {
            flag,
            value: value.into(),
            reason: "a dollar budget must be a number greater than zero".into(),
            help: "for example 2.5".into(),
        }),
    }
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
