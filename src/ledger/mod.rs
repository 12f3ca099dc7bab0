//! The budget ledger: pure budget scopes ([`budget`]) and the SQLite store of every token spent
//! ([`store`]), with the crash reconciliation ([`reconcile`]) and the spend report built on them.

pub mod budget;
pub mod reconcile;
pub mod store;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use reconcile::reconcile;
pub use store::{Delta, Kind, Ledger};

/// The ledger file inside a state folder.
pub fn path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("ledger.sqlite")
}

/// What `orch ledger` groups spend by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Run,
    Job,
    Command,
    Model,
    Day,
}

/// One line of the spend report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SpendRow {
    pub key: String,
    pub runs: u64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_creation_tokens: i64,
    pub total_tokens: i64,
    pub usd: f64,
    /// Part of the dollars are orch's estimates (no final figure from Claude Code).
    pub estimated: bool,
}

/// Spend since `since`, grouped, largest dollars first.
pub fn spend(
    ledger: &Ledger,
    since: DateTime<Utc>,
    by: GroupBy,
) -> rusqlite::Result<Vec<SpendRow>> {
    let key = match by {
        GroupBy::Run => "u.run_id || ' ' || r.name",
        GroupBy::Job => "s.job",
        GroupBy::Command => "COALESCE(s.command, '(none)')",
        GroupBy::Model => "COALESCE(u.model, '(unknown)')",
        GroupBy::Day => "substr(u.at, 1, 10)",
    };
    let sql = format!(
        "SELECT {key} AS k, COUNT(DISTINCT u.run_id), SUM(u.input), SUM(u.output), SUM(u.cache_read),
                SUM(u.cache_creation), SUM(u.usd),
                MAX(CASE WHEN u.kind = 'estimate' AND NOT EXISTS (
                        SELECT 1 FROM usage f WHERE f.run_id = u.run_id AND f.step = u.step
                        AND f.kind != 'estimate') THEN 1 ELSE 0 END)
         FROM usage u
         JOIN runs r ON r.id = u.run_id
         LEFT JOIN steps s ON s.run_id = u.run_id AND s.step = u.step
         WHERE u.at_ms >= ?1
         GROUP BY k ORDER BY SUM(u.usd) DESC, k"
    );
    let mut stmt = ledger.conn().prepare(&sql)?;
    let rows = stmt.query_map([since.timestamp_millis()], |r| {
        let (i, o, cr, cc): (i64, i64, i64, i64) = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        Ok(SpendRow {
            key: r.get(0)?,
            runs: r.get::<_, i64>(1)? as u64,
            input_tokens: i,
            output_tokens: o,
            cache_read_tokens: cr,
            cache_creation_tokens: cc,
            total_tokens: i + o + cr + cc,
            usd: r.get(6)?,
            estimated: r.get::<_, i64>(7)? != 0,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::stream::TokenCounts;
    use std::path::PathBuf;

    fn temp_ledger(name: &str) -> (Ledger, PathBuf) {
        let dir = std::env::temp_dir().join(format!("orch-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Ledger::open(&dir.join("ledger.sqlite")).unwrap(), dir)
    }

    #[test]
    fn migrations_are_versioned_and_idempotent() {
        let (ledger, dir) = temp_ledger("migrate");
        assert_eq!(ledger.version().unwrap(), store::SCHEMA_VERSION);
        drop(ledger);
        let again = Ledger::open(&dir.join("ledger.sqlite")).unwrap();
        assert_eq!(again.version().unwrap(), store::SCHEMA_VERSION);
    }

    #[test]
    fn deltas_sum_to_the_latest_figures_and_window_spend_adds_up() {
        let (ledger, dir) = temp_ledger("deltas");
        let now = Utc::now();
        ledger
            .begin_run(&store::RunRow {
                id: "r1".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: dir.clone(),
                started_at: now,
            })
            .unwrap();
        let est = TokenCounts {
            input: 10,
            output: 1,
            ..Default::default()
        };
        let fin = TokenCounts {
            input: 10,
            output: 50,
            ..Default::default()
        };
        let d1 = Delta::between(&TokenCounts::default(), 0.0, &est, 0.01);
        ledger
            .record("r1", 0, Some("m"), Kind::Estimate, &d1, now)
            .unwrap();
        let d2 = Delta::between(&est, 0.01, &fin, 0.05);
        ledger
            .record("r1", 0, Some("m"), Kind::Final, &d2, now)
            .unwrap();
        let (tokens, usd) = ledger.step_spend("r1", 0).unwrap();
        assert_eq!(tokens.output, 50);
        assert!((usd - 0.05).abs() < 1e-12);
        let spent = ledger
            .spent_since(now - chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(spent.tokens, 60);
        let later = ledger
            .spent_since(now + chrono::Duration::seconds(1))
            .unwrap();
        assert_eq!(later.tokens, 0);
    }
}
