//! `orch ledger`: what was spent, grouped by run, job, command, model or day, over a period.

use std::path::PathBuf;

use chrono::Utc;

use crate::cli::LedgerFormat;
use crate::config::LedgerConfig;
use crate::errors::Error;
use crate::ledger::{self, Ledger};

/// The report as text (a table) or JSON.
pub fn run(config: &LedgerConfig) -> Result<String, Error> {
    let state_dir = match (&config.state_dir, &config.manifest, &config.config) {
        (Some(dir), _, _) => dir.clone(),
        (None, Some(path), _) => crate::manifest::load(path)?.settings.state_dir,
        // zen's --config: `orch run --config x.json` keeps a JSON config's runs in ./.orch.
        (None, None, Some(path)) => {
            let mut m = crate::manifest::load(path)?;
            if crate::config::is_json_config(path) {
                super::current_folder_defaults(&mut m)?;
            }
            m.settings.state_dir
        }
        (None, None, None) => {
            let default = PathBuf::from(crate::manifest::DEFAULT_MANIFEST);
            match crate::manifest::load(&default) {
                Ok(m) => m.settings.state_dir,
                Err(_) => PathBuf::from(".orch"),
            }
        }
    };
    let state_dir = crate::config::absolute_state_dir(&state_dir)?;
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
