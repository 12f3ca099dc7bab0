//! The rolling-window budgets recent runs were held to, read from their `results.json` (the
//! `budgets` entries that have a `period_seconds`): what the spend page draws each window's
//! use against. The limits are what the runs recorded, never read from a manifest file, which
//! may have changed since.

use std::time::Duration;

use serde::Deserialize;

use super::{History, HistoryError, RunFilter};

/// A window budget as a run recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowBudget {
    /// The budget scope's name, `window 5h`.
    pub scope: String,
    pub period: Duration,
    pub tokens_limit: Option<u64>,
    pub usd_limit: Option<f64>,
}

impl History {
    /// The distinct window budgets of the latest `runs` runs with a results file, newest first.
    pub fn window_budgets(&self, runs: usize) -> Result<Vec<WindowBudget>, HistoryError> {
        let latest = self.runs(&RunFilter {
            limit: runs,
            ..RunFilter::default()
        })?;
        let mut found: Vec<WindowBudget> = Vec::new();
        for run in latest.iter().filter(|r| !r.is_running()) {
            let Ok(file) = self
                .run_dir(run)
                .and_then(|d| self.confine(&d.join("results.json")))
            else {
                continue;
            };
            // A run that never wrote its results (killed) recorded no budgets.
            let Some(results) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| serde_json::from_str::<ResultsBudgets>(&text).ok())
            else {
                continue;
            };
            for b in results.budgets {
                let Some(seconds) = b.period_seconds else {
                    continue;
                };
                let budget = WindowBudget {
                    scope: b.scope,
                    period: Duration::from_secs(seconds),
                    tokens_limit: b.tokens_limit,
                    usd_limit: b.usd_limit,
                };
                if !found.contains(&budget) {
                    found.push(budget);
                }
            }
        }
        Ok(found)
    }
}

/// The parts of `results.json` read here (see `crate::report::results::BudgetResult`).
#[derive(Deserialize)]
struct ResultsBudgets {
    #[serde(default)]
    budgets: Vec<BudgetFile>,
}

#[derive(Deserialize)]
struct BudgetFile {
    scope: String,
    #[serde(default)]
    period_seconds: Option<u64>,
    #[serde(default)]
    tokens_limit: Option<u64>,
    #[serde(default)]
    usd_limit: Option<f64>,
}
