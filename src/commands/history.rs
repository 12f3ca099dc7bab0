//! `orch runs` and `orch show`: the runs of a state folder, and one run's summary, read
//! through [`crate::history`] and rendered by [`crate::report::history`]. They never write.

use chrono::Utc;

use crate::cli::{HistoryPlace, LedgerFormat, ShowArgs};
use crate::config::RunsConfig;
use crate::errors::Error;
use crate::history::{History, RunFilter};

/// The history of the state folder a command's place names.
pub fn open(place: &HistoryPlace) -> Result<History, Error> {
    let dir = super::state_folder(place.state_dir.as_deref(), place.manifest.as_deref(), None)?;
    Ok(History::open(&dir)?)
}

/// `orch runs`: the table, or JSON (`{"total": N, "runs": [...]}`).
pub fn runs(config: &RunsConfig) -> Result<String, Error> {
    let history = open(&config.place)?;
    let filter = RunFilter {
        since: config.since.map(|d| crate::duration::before(Utc::now(), d)),
        status: config.status.clone(),
        manifest: None,
        limit: config.limit,
        offset: config.offset,
    };
    let runs = history.runs(&filter)?;
    let total = history.count(&filter)?;
    Ok(match config.format {
        LedgerFormat::Json => json(&serde_json::json!({ "total": total, "runs": runs })),
        LedgerFormat::Table => crate::report::history::runs_table(&runs, total),
    })
}

/// `orch show RUN`.
pub fn show(args: &ShowArgs) -> Result<String, Error> {
    let history = open(&args.place)?;
    let run = history.resolve(&args.run)?;
    let summary = history.summary(&run)?;
    Ok(match args.format {
        LedgerFormat::Json => json(&summary),
        LedgerFormat::Table => crate::report::history::summary(&summary),
    })
}

fn json(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string_pretty(value).expect("plain data serializes");
    crate::secrets::mask_owned(text) + "\n"
}
