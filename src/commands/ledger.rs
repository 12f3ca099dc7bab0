//! `orch ledger`: what was spent, grouped by run, job, command, model or day, over a period.

use chrono::Utc;

use crate::cli::LedgerFormat;
use crate::config::LedgerConfig;
use crate::errors::Error;
use crate::ledger::{self, Ledger};

/// The report as text (a table) or JSON.
pub fn run(config: &LedgerConfig) -> Result<String, Error> {
    let state_dir = super::state_folder(
        config.state_dir.as_deref(),
        config.manifest.as_deref(),
        config.config.as_deref(),
    )?;
    let since = config.since;
    let path = ledger::path(&state_dir);
    if !path.exists() {
        return Err(Error::io(
            format!("no ledger at {}", path.display()),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no run has been recorded there yet",
            ),
        ));
    }
    let sql = |e: rusqlite::Error| {
        Error::io(
            format!("ledger {}", path.display()),
            std::io::Error::other(e),
        )
    };
    let ledger = Ledger::open(&path).map_err(sql)?;
    let now = Utc::now();
    ledger::reconcile(&ledger, now).map_err(sql)?;
    let from = crate::duration::before(now, since);
    let rows = ledger::spend(&ledger, from, config.by).map_err(sql)?;
    Ok(match config.format {
        LedgerFormat::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({
                "since": from.to_rfc3339(),
                "by": config.by,
                "rows": rows,
            }))
            .expect("plain data");
            s.push('\n');
            s
        }
        LedgerFormat::Table => crate::report::ledger_table(&rows, &config.since_text),
    })
}
