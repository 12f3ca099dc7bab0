//! Errors that stop orch before or outside a run, and the exit codes, documented in one place.
//!
//! A job failing is not an error: it is a run outcome, mapped to [`ExitCode::StepsFailed`].

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::manifest::LoadError;

/// orch's exit codes. Stable: scripts and CI depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Every step completed.
    Ok = 0,
    /// At least one step failed, timed out, or was skipped or cancelled because of one.
    StepsFailed = 1,
    /// Bad manifest, bad flags, or missing executable: nothing ran.
    Setup = 2,
    /// A budget in block mode stopped or refused steps.
    BudgetStop = 3,
    /// A rate limit resets later than `max_pause`: the run ended without waiting for it.
    RateLimited = 4,
    /// Interrupted by SIGINT, SIGTERM or SIGHUP (all three stop the run the same way; a closed
    /// terminal gives 130 too, not 129).
    Interrupted = 130,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// A setup error: reported with its help, exit code 2, nothing runs.
#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Manifest(#[from] LoadError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    History(#[from] crate::history::HistoryError),

    #[error("invalid value {value:?} for {flag}: {reason}")]
    #[diagnostic(code(orch::cli::bad_flag))]
    BadFlag {
        flag: &'static str,
        value: String,
        reason: String,
        #[help]
        help: String,
    },

    #[error(
        "workspace `{}` {problem} (the working folder of job `{first_job}`{})",
        path.display(),
        if *jobs > 1 { format!(" and {} more", jobs - 1) } else { String::new() }
    )]
    #[diagnostic(code(orch::manifest::missing_workspace))]
    BadWorkspace {
        path: PathBuf,
        /// "does not exist", "is not a folder".
        problem: &'static str,
        /// How many jobs run there, and the first of them.
        jobs: usize,
        first_job: String,
        #[help]
        help: String,
    },

    #[error(
        "orch may open only {soft} files at once (hard limit {hard}); a run needs at least {}",
        crate::commands::MIN_OPEN_FILES
    )]
    #[diagnostic(
        code(orch::setup::too_few_files),
        help(
            "{}raise the limit before running orch, e.g. `ulimit -n 1024` \
             (`ulimit -n` in bash sets the hard limit too; check it with `ulimit -Hn`)",
            if soft == hard { "the hard limit is that low too, so orch cannot raise it itself: " } else { "" }
        )
    )]
    TooFewFiles { soft: u64, hard: u64 },

    #[error("Claude Code (`claude`) was not found")]
    #[diagnostic(
        code(orch::agent::not_found),
        help(
            "install it (npm install -g @anthropic-ai/claude-code), pass --claude-path, set ORCH_CLAUDE_PATH \
             or settings.claude_path, or rehearse with --simulate. Looked in:\n{}",
            tried.iter().map(|p| format!("  {}", p.display())).collect::<Vec<_>>().join("\n")
        )
    )]
    ClaudeNotFound { tried: Vec<PathBuf> },

    #[error("there is no slash command {name} here")]
    #[diagnostic(code(orch::commands::unknown))]
    UnknownSlashCommand {
        name: String,
        #[help]
        help: String,
    },

    #[error("{} unknown slash command(s), and --strict makes that an error", unknown.len())]
    #[diagnostic(
        code(orch::plan::unknown_command),
        help(
            "{}\n`orch commands` lists what Claude Code would find; drop --strict to plan anyway",
            unknown.iter().map(|u| format!("  - {u}")).collect::<Vec<_>>().join("\n")
        )
    )]
    UnknownCommand { unknown: Vec<String> },

    #[error("{message}")]
    #[diagnostic(code(orch::resume), help("{help}"))]
    Resume { message: String, help: String },
    #[error(
        "job `{job}` runs in a worktree (isolation = \"worktree\"), but its workspace {} is not in a git repository: {reason}",
        workspace.display()
    )]
    #[diagnostic(
        code(orch::worktree::not_a_repository),
        help(
            "run `git init` there and commit, point `workspace` (or --workspace) at a git checkout, \
             or remove `isolation`"
        )
    )]
    NotARepository {
        job: String,
        workspace: PathBuf,
        reason: String,
    },

    #[error(
        "job `{job}` has require_clean = true, and {} has uncommitted changes: {changes}",
        workspace.display()
    )]
    #[diagnostic(
        code(orch::worktree::dirty),
        help(
            "commit or stash them (`git stash`), or set `require_clean = false` to start the \
             worktree from the last commit without them"
        )
    )]
    DirtyWorkspace {
        job: String,
        workspace: PathBuf,
        changes: String,
    },

    #[error("job `{job}` would create the branch `{branch}`, which exists already in {}", repo.display())]
    #[diagnostic(
        code(orch::worktree::branch_exists),
        help(
            "choose another `branch` (a template such as \"fix/${{{{ run.id }}}}\" makes it unique), \
             or delete the old one with `git branch -D {branch}`"
        )
    )]
    BranchExists {
        job: String,
        branch: String,
        repo: PathBuf,
    },

    #[error("{what}")]
    #[diagnostic(code(orch::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
