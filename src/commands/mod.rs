//! One file per subcommand, and what they share: loading a manifest with the flags applied on top.

pub mod completions;
pub mod convert;
pub mod direct;
pub mod history;
pub mod ledger;
pub mod logs;
pub mod plan;
pub mod resume;
pub mod run;
pub mod schema;
pub mod service;
pub mod slash;

use std::path::PathBuf;

use crate::agent::{self, AgentProgram};
use crate::config::{ManifestConfig, Source};
use crate::errors::Error;
use crate::manifest::{self, Manifest};

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

/// Loads the manifest (or the direct job) and puts the Config's overrides over it (flags win
/// over the file); the workspaces are then checked.
pub fn load(config: &ManifestConfig) -> Result<Manifest, Error> {
    let mut m = match &config.source {
        Source::Direct(job) => {
            if let Some(notice) = &job.notice {
                crate::report::print_warning(notice);
            }
            let cwd = std::env::current_dir()
                .map_err(|e| Error::io("cannot read the current folder", e))?;
            direct::load(job, &cwd)?
        }
        Source::File {
            path,
            positional,
            zen_config,
        } => {
            let mut m = manifest::load(path).map_err(|e| slash_hint(e, *positional))?;
            if *zen_config {
                current_folder_defaults(&mut m)?;
            }
            m
        }
    };
    config.apply(&mut m);
    let inherited: Vec<(String, String)> = std::env::vars().collect();
    crate::secrets::install(crate::secrets::Mask::for_manifest(&m, &inherited));
    check_workspaces(&m, config.workspace.is_some())?;
    crate::worktree::check(&m)?;
    Ok(m)
}

/// Every job's workspace must be an existing folder: a missing one is a setup error naming the
/// path, before anything runs (the manifest loader never touches the file system beyond the
/// manifest itself, so this is checked here, once the flags are applied).
fn check_workspaces(m: &Manifest, from_flag: bool) -> Result<(), Error> {
    let mut checked = std::collections::HashSet::new();
    // A Slurm job's folder is on the nodes (a shared filesystem this machine may not mount):
    // the step wrapper checks it there and says what to do.
    for job in m.jobs.iter().filter(|j| j.slurm.is_none()) {
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
            .filter(|j| j.workspace == job.workspace && j.slurm.is_none())
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

/// An unreadable positional manifest that may have been meant as a slash command: the hint says
/// how to run one directly.
fn slash_hint(e: manifest::LoadError, positional: bool) -> Error {
    match e {
        manifest::LoadError::Unreadable { path, hint, source } if positional => {
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
pub fn agent_program(config: &ManifestConfig, m: &Manifest) -> Result<AgentProgram, Error> {
    if config.simulate {
        return AgentProgram::simulated()
            .map_err(|e| Error::io("cannot find orch's own executable", e));
    }
    agent::discover_claude(
        config.claude_path.as_deref(),
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

/// The state folder a reading command means, made absolute: `--state-dir`, else the manifest's,
/// else zen's `--config`'s (a JSON config's runs are kept in ./.orch), else ./orch.toml's, else
/// ./.orch.
pub fn state_folder(
    state_dir: Option<&std::path::Path>,
    manifest: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
) -> Result<std::path::PathBuf, Error> {
    let dir = match (state_dir, manifest, config) {
        (Some(dir), _, _) => dir.to_path_buf(),
        (None, Some(path), _) => crate::manifest::load(path)?.settings.state_dir,
        (None, None, Some(path)) => {
            let mut m = crate::manifest::load(path)?;
            if crate::config::is_json_config(path) {
                current_folder_defaults(&mut m)?;
            }
            m.settings.state_dir
        }
        (None, None, None) => {
            let default = std::path::Path::new(crate::manifest::DEFAULT_MANIFEST);
            match crate::manifest::load(default) {
                Ok(m) => m.settings.state_dir,
                Err(_) => std::path::PathBuf::from(".orch"),
            }
        }
    };
    crate::config::absolute_state_dir(&dir)
}
