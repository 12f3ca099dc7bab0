//! Run history: what a state folder holds about past and running runs, read for people (`orch
//! runs`, `orch show`, `orch logs`) and for the dashboard, as plain serializable data.
//!
//! It owns four readings: the ledger's runs ([`runs`]: listing with filters, `latest` and id
//! prefixes), a run's summary ([`summary`]: its `results.json` once it ended, else its events
//! file folded as it stands), a run folder's events file ([`events`], read from an offset so
//! another process can follow it) and the window budgets recent runs recorded ([`windows`]). Every path it hands out is confined to the state folder
//! ([`History::confine`]). It never writes: not the ledger (it opens none that does not exist),
//! not a run folder, and it never prints.

pub mod events;
pub mod runs;
pub mod summary;
pub mod windows;

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

use crate::ledger::Ledger;

pub use events::{EVENTS_FILE, EventsPage};
pub use runs::{RunEntry, RunFilter, StepCounts};
pub use summary::{RunSummary, Source, StepView};
pub use windows::WindowBudget;

/// The job a step belongs to: its label without a fan-out key (`job[key]`) or a place in a
/// chain (`job [2/3]`).
pub fn job_of(label: &str) -> &str {
    label.split(['[', ' ']).next().unwrap_or(label)
}

/// Why a history question has no answer.
#[derive(Debug, Error, Diagnostic)]
pub enum HistoryError {
    #[error("no run has been recorded in {}", state_dir.display())]
    #[diagnostic(
        code(orch::history::no_runs),
        help("run a manifest first, or point --state-dir at the folder that holds its runs")
    )]
    NoRuns { state_dir: PathBuf },

    #[error("no run {wanted:?} in {}", state_dir.display())]
    #[diagnostic(code(orch::history::unknown_run), help("{help}"))]
    UnknownRun {
        wanted: String,
        state_dir: PathBuf,
        help: String,
    },

    #[error("{wanted:?} is the start of {} runs' ids", candidates.len())]
    #[diagnostic(
        code(orch::history::ambiguous_run),
        help("give more of the id; it could be: {}", candidates.join(", "))
    )]
    AmbiguousRun {
        wanted: String,
        candidates: Vec<String>,
    },

    #[error("{} is outside the state folder {}", path.display(), state_dir.display())]
    #[diagnostic(
        code(orch::history::outside_state),
        help(
            "history reads only what is inside the state folder; a link out of it is not followed"
        )
    )]
    OutsideState { path: PathBuf, state_dir: PathBuf },

    #[error("reading the ledger {}", path.display())]
    #[diagnostic(code(orch::history::ledger))]
    Ledger {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("reading {}", path.display())]
    #[diagnostic(code(orch::history::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A state folder's history, read through its ledger.
pub struct History {
    /// The state folder, canonical (links resolved), against which every path is confined.
    pub state_dir: PathBuf,
    /// `None` when the folder has no ledger yet: no run was recorded.
    ledger: Option<Ledger>,
}

impl History {
    /// Opens the history of a state folder. A folder without a ledger has no runs (nothing is
    /// created); a ledger is brought to the current schema as every orch opening it does.
    pub fn open(state_dir: &Path) -> Result<History, HistoryError> {
        let io = |source| HistoryError::Io {
            path: state_dir.to_path_buf(),
            source,
        };
        let state_dir = match state_dir.canonicalize() {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::path::absolute(state_dir).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        let path = crate::ledger::path(&state_dir);
        let ledger = if path.exists() {
            Some(Ledger::open(&path).map_err(|source| HistoryError::Ledger {
                path: path.clone(),
                source,
            })?)
        } else {
            None
        };
        Ok(History { state_dir, ledger })
    }

    /// The ledger, or `None` when nothing was recorded.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    pub(crate) fn sql(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Ledger {
            path: crate::ledger::path(&self.state_dir),
            source,
        }
    }

    /// `path` with its links resolved, if it lies inside the state folder: the only paths history
    /// reads or hands out. A path that does not exist yet is checked by its nearest existing
    /// ancestor (a log not yet created); `..` is never taken on trust.
    pub fn confine(&self, path: &Path) -> Result<PathBuf, HistoryError> {
        let outside = || HistoryError::OutsideState {
            path: path.to_path_buf(),
            state_dir: self.state_dir.clone(),
        };
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(outside());
        }
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.state_dir.join(path)
        };
        // The nearest ancestor that exists is resolved; the rest is appended as it is.
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        let resolved = loop {
            match existing.canonicalize() {
                Ok(p) => break p,
                Err(_) => {
                    rest.push(existing.file_name().ok_or_else(outside)?);
                    existing = existing.parent().ok_or_else(outside)?;
                }
            }
        };
        let full = rest.iter().rev().fold(resolved, |p, part| p.join(part));
        if full.starts_with(&self.state_dir) {
            Ok(full)
        } else {
            Err(outside())
        }
    }

    /// A run's folder, confined to the state folder.
    pub fn run_dir(&self, run: &RunEntry) -> Result<PathBuf, HistoryError> {
        self.confine(&run.run_dir)
    }
}

#[cfg(test)]
mod tests;
