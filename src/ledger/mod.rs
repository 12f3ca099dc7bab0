//! The budget ledger: pure budget scopes ([`budget`]) and the SQLite store of every token spent
//! ([`store`]), with the crash reconciliation ([`reconcile`]) and the spend report built on them.

pub mod budget;
pub mod nanos;
pub mod reconcile;
pub mod resume;
pub mod store;
pub(crate) mod summary;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use nanos::Nanos;
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
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub total_tokens: u64,
    /// Dollars, computed from the integer nano-dollars.
    pub usd: f64,
    /// The exact figure in nano-dollars.
    pub usd_nanos: i64,
    /// Part of the dollars are orch's estimates (no final figure from Claude Code).
    pub estimated: bool,
}

/// Spend since `since`, grouped, largest dollars first.
///
/// Sums are `TOTAL()`s (floats, which never overflow; exact below 2^53), so a ledger holding
/// rows from before the caps still reads.
///
/// Linear in the steps of the window, not in their rows: it reads the usage summary
/// ([`summary`]), one row per (run, step, model, day), and only the raw rows of the groups the
/// window's start cuts. A step is `estimated` when it has estimate rows in the window and no final
/// or reconciled row at all (looked up in the step's summaries, a few rows).
pub fn spend(
    ledger: &Ledger,
    since: DateTime<Utc>,
    by: GroupBy,
) -> rusqlite::Result<Vec<SpendRow>> {
    let (part, key) = match by {
        GroupBy::Run => (summary::Part::Nothing, "w.run_id || ' ' || r.name"),
        GroupBy::Job => (summary::Part::Nothing, "s.job"),
        GroupBy::Command => (summary::Part::Nothing, "COALESCE(s.command, '(none)')"),
        GroupBy::Model => (summary::Part::Model, "w.part"),
        GroupBy::Day => (summary::Part::Day, "w.part"),
    };
    // The steps table only where the key is read from it: SQLite keeps an unused LEFT JOIN, a
    // seek per summary row (a quarter of a report over 1,000 runs).
    let steps = if matches!(by, GroupBy::Job | GroupBy::Command) {
        "LEFT JOIN steps s ON s.run_id = w.run_id AND s.step = w.step AND s.attempt = 1"
    } else {
        ""
    };
    let sql = format!(
        "WITH {}
         SELECT {key} AS k, COUNT(DISTINCT w.run_id), TOTAL(w.input), TOTAL(w.output),
                TOTAL(w.cache_read), TOTAL(w.cache_creation), TOTAL(w.usd_nanos),
                MAX(CASE WHEN w.has_estimate AND NOT EXISTS (
                        SELECT 1 FROM usage_summary f WHERE f.run_id = w.run_id AND f.step = w.step
                        AND f.finals > 0) THEN 1 ELSE 0 END)
         FROM w
         JOIN runs r ON r.id = w.run_id
         {steps}
         GROUP BY k ORDER BY TOTAL(w.usd_nanos) DESC, k",
        summary::window(part)
    );
    let mut stmt = ledger.conn().prepare(&sql)?;
    let rows = stmt.query_map([since.timestamp_millis()], |r| {
        let get = |i: usize| r.get::<_, f64>(i).map(store::total_u64);
        let (i, o, cr, cc) = (get(2)?, get(3)?, get(4)?, get(5)?);
        let usd = store::total_nanos(r.get(6)?).non_negative();
        Ok(SpendRow {
            key: r.get(0)?,
            runs: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            input_tokens: i,
            output_tokens: o,
            cache_read_tokens: cr,
            cache_creation_tokens: cc,
            total_tokens: i.saturating_add(o).saturating_add(cr).saturating_add(cc),
            usd: usd.dollars(),
            usd_nanos: usd.0,
            estimated: r.get::<_, i64>(7)? != 0,
        })
    })?;
    rows.collect()
}

/// What was spent since `since` in each `interval` (counted from the epoch, so a day's
/// intervals start at midnight UTC when they divide a day), oldest first; intervals without
/// spend are left out. Each interval starts at its time. Like [`spend`], linear in the steps of
/// the period: only the raw rows of steps that crossed an interval's end are read.
pub fn spend_over_time(
    ledger: &Ledger,
    since: DateTime<Utc>,
    interval: std::time::Duration,
) -> rusqlite::Result<Vec<(DateTime<Utc>, budget::Spend)>> {
    let every = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let mut stmt = ledger.conn().prepare_cached(summary::INTERVALS)?;
    let rows = stmt.query_map([since.timestamp_millis(), every], |r| {
        let start = r.get::<_, i64>(0)?.saturating_mul(every);
        Ok((
            DateTime::from_timestamp_millis(start).unwrap_or_default(),
            budget::Spend {
                tokens: store::total_u64(r.get(1)?),
                usd: store::total_nanos(r.get(2)?).non_negative(),
            },
        ))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::stream::TokenCounts;

    /// A folder of its own for one test, removed when it drops (a fixed name per process id
    /// collided with one another user's run had left behind, and could not be replaced).
    struct Scratch(tempfile::TempDir);

    impl std::ops::Deref for Scratch {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            self.0.path()
        }
    }

    fn temp_ledger(name: &str) -> (Ledger, Scratch) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("orch-ledger-{name}-"))
            .tempdir()
            .unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        (ledger, Scratch(dir))
    }

    /// A ledger as orch wrote it before schema version 2: 10^19 tokens wrapped negative by the
    /// old `u64 as i64` cast, and infinite dollars (the parser took "inf" as a number).
    fn old_ledger(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("old.sqlite");
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(store::MIGRATIONS_V1).unwrap();
        db.pragma_update(None, "user_version", 1).unwrap();
        let now = Utc::now();
        db.execute(
            "INSERT INTO runs (id, name, manifest, run_dir, started_at, status, pid)
             VALUES ('r1', 'old', 'm', 'd', ?1, 'completed', 1)",
            [now.to_rfc3339()],
        )
        .unwrap();
        db.execute(
            "INSERT INTO steps (run_id, step, job, label, is_agent, status)
             VALUES ('r1', 0, 'big', 'big', 1, 'completed')",
            [],
        )
        .unwrap();
        let wrapped = 10_000_000_000_000_000_000u64 as i64;
        assert!(wrapped < 0);
        let mut insert = db
            .prepare(
                "INSERT INTO usage (run_id, step, at, at_ms, model, kind, input, output,
                 cache_read, cache_creation, usd) VALUES ('r1', 0, ?1, ?2, 'm', ?3, ?4, ?5, ?6, 0, ?7)",
            )
            .unwrap();
        for (kind, input, output, cache_read, usd) in [
            ("estimate", wrapped, 1, wrapped, 0.25),
            ("final", 0, 4, 0, f64::INFINITY),
            ("final", 5, 0, 0, 0.125),
            ("final", 0, 0, 0, f64::NEG_INFINITY),
        ] {
            insert
                .execute(rusqlite::params![
                    now.to_rfc3339(),
                    now.timestamp_millis(),
                    kind,
                    input,
                    output,
                    cache_read,
                    usd
                ])
                .unwrap();
        }
        path
    }

    #[test]
    fn an_old_ledger_with_wrapped_tokens_and_infinite_dollars_is_converted() {
        let (_, dir) = temp_ledger("old");
        let path = old_ledger(&dir);
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.version().unwrap(), store::SCHEMA_VERSION);
        let rows: Vec<(i64, i64, i64, Option<String>)> = ledger
            .conn()
            .prepare("SELECT input, cache_read, usd_nanos, note FROM usage ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let cap = crate::agent::stream::TOKEN_CAP as i64;
        assert_eq!((rows[0].0, rows[0].1, rows[0].2), (cap, cap, 250_000_000));
        assert!(
            rows[0]
                .3
                .as_deref()
                .unwrap()
                .contains("input -8446744073709551616")
        );
        assert_eq!(rows[1].2, 0);
        assert!(
            rows[1]
                .3
                .as_deref()
                .unwrap()
                .contains("not a finite dollar figure")
        );
        assert_eq!(
            (rows[2].0, rows[2].2, rows[2].3.as_deref()),
            (5, 125_000_000, None)
        );
        assert_eq!(rows[3].2, 0);
        // Every reading works and adds up: 2 * 10^12 + 1 + 4 + 5 tokens, $0.375.
        let (tokens, usd) = ledger.step_spend("r1", 0).unwrap();
        assert_eq!(tokens.total(), 2 * cap as u64 + 10);
        assert_eq!(usd, 0.375);
        let since = Utc::now() - chrono::Duration::hours(1);
        let spent = ledger.spent_since(since).unwrap();
        assert_eq!(
            (spent.tokens, spent.usd),
            (2 * cap as u64 + 10, Nanos(375_000_000))
        );
        let report = spend(&ledger, since, GroupBy::Job).unwrap();
        assert_eq!(report.len(), 1);
        assert_eq!(
            (report[0].total_tokens, report[0].usd_nanos),
            (2 * cap as u64 + 10, 375_000_000)
        );
    }

    #[test]
    fn sums_never_overflow_even_on_rows_beyond_the_caps() {
        let (ledger, _) = temp_ledger("overflow");
        let now = Utc::now();
        ledger
            .begin_run(&store::RunRow {
                id: "r".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: "d".into(),
                started_at: now,
            })
            .unwrap();
        // Rows a writer outside orch could leave: i64::MAX twice would overflow SUM().
        for _ in 0..2 {
            ledger
                .conn()
                .execute(
                    "INSERT INTO usage (run_id, step, at, at_ms, kind, input, output, cache_read,
                     cache_creation, usd, usd_nanos) VALUES ('r', 0, ?1, ?2, 'final', ?3, ?3, 0, 0, 0, ?3)",
                    rusqlite::params![now.to_rfc3339(), now.timestamp_millis(), i64::MAX],
                )
                .unwrap();
        }
        let since = now - chrono::Duration::hours(1);
        assert_eq!(ledger.spent_since(since).unwrap().tokens, u64::MAX);
        assert!(spend(&ledger, since, GroupBy::Run).is_ok());
        assert!(ledger.step_spend("r", 0).is_ok());
    }

    #[test]
    fn deltas_of_huge_counts_saturate_instead_of_wrapping() {
        let huge = TokenCounts {
            input: 10_000_000_000_000_000_000,
            cache_read: u64::MAX,
            ..Default::default()
        };
        let d = Delta::between(&TokenCounts::default(), 0.0, &huge, f64::INFINITY);
        assert!(d.input > 0 && d.cache_read > 0, "{d:?}");
        assert!(d.tokens() > 0);
        let back = Delta::between(&huge, f64::NAN, &TokenCounts::default(), 0.0);
        assert_eq!(back.tokens(), -d.tokens());
        assert_eq!(back.usd, Nanos::ZERO, "NaN counts as nothing");
    }

    #[test]
    fn a_ledger_from_a_newer_orch_is_refused_not_written() {
        let (ledger, dir) = temp_ledger("newer");
        ledger
            .conn()
            .pragma_update(None, "user_version", (store::SCHEMA_VERSION + 1) as i64)
            .unwrap();
        drop(ledger);
        let Err(e) = Ledger::open(&dir.join("ledger.sqlite")) else {
            panic!("a ledger of a newer schema opened");
        };
        let text = e.to_string();
        assert!(text.contains("newer than this orch knows"), "{text}");
    }

    #[test]
    fn statements_run_on_every_usage_change_are_not_re_prepared() {
        let (ledger, dir) = temp_ledger("reprepare");
        let now = Utc::now();
        ledger
            .begin_run(&store::RunRow {
                id: "r1".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: dir.to_path_buf(),
                started_at: now,
            })
            .unwrap();
        let d = Delta::between(
            &TokenCounts::default(),
            0.0,
            &TokenCounts {
                input: 1,
                ..Default::default()
            },
            0.01,
        );
        // Step 0 is retried: its second attempt gets the spend and the end.
        for (step, attempt) in [(0, 1), (0, 2), (1, 1), (2, 1)] {
            let row = store::StepRow {
                step,
                job: "j".into(),
                label: "j".into(),
                command: None,
                session_id: None,
                resume: false,
                is_agent: true,
                log: dir.join("log"),
                attempt,
            };
            ledger.begin_step("r1", &row, now).unwrap();
        }
        for step in [0, 1, 2, 0, 1, 2] {
            ledger
                .record("r1", step, Some("m"), Kind::Estimate, &d, now)
                .unwrap();
        }
        for step in [0, 1, 2] {
            ledger.finish_step("r1", step, "completed", now).unwrap();
        }
        for sql in [store::RECORD, store::FINISH_STEP] {
            let statement = ledger.conn().prepare_cached(sql).unwrap();
            let runs = statement.get_status(rusqlite::StatementStatus::Run);
            let again = statement.get_status(rusqlite::StatementStatus::RePrepare);
            assert!(runs >= 3, "{runs} runs of {sql}");
            assert_eq!(again, 0, "re-prepared {again} times in {runs} runs: {sql}");
        }
        let by_attempt = |sql: &str| -> Vec<(i64, i64, String)> {
            let mut statement = ledger.conn().prepare(sql).unwrap();
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            rows.unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(
            by_attempt("SELECT step, attempt, status FROM steps ORDER BY step, attempt"),
            [
                (0, 1, "running".to_string()),
                (0, 2, "completed".into()),
                (1, 1, "completed".into()),
                (2, 1, "completed".into()),
            ]
        );
        assert_eq!(
            by_attempt(
                "SELECT step, attempt, CAST(COUNT(*) AS TEXT) FROM usage GROUP BY step, attempt ORDER BY step"
            ),
            [
                (0, 2, "2".to_string()),
                (1, 1, "2".into()),
                (2, 1, "2".into())
            ]
        );
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
                run_dir: dir.to_path_buf(),
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
    #[test]
    fn estimated_means_estimates_and_no_final_in_or_out_of_the_window() {
        let (ledger, dir) = temp_ledger("estimated");
        let now = Utc::now();
        ledger
            .begin_run(&store::RunRow {
                id: "r1".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: dir.to_path_buf(),
                started_at: now,
            })
            .unwrap();
        let hour_ago = now - chrono::Duration::hours(1);
        let est = Delta {
            output: 10,
            usd: Nanos(1_000),
            ..Delta::default()
        };
        let fin = Delta {
            output: 5,
            usd: Nanos(500),
            ..Delta::default()
        };
        // a: estimates only. b: estimates, then a final. c: its final stamped before the window
        // (a clock set back), so only the lookup outside the window finds it. d: a final only.
        for (step, job, rows) in [
            (0, "a", vec![(Kind::Estimate, now), (Kind::Estimate, now)]),
            (1, "b", vec![(Kind::Estimate, now), (Kind::Final, now)]),
            (2, "c", vec![(Kind::Estimate, now), (Kind::Final, hour_ago)]),
            (3, "d", vec![(Kind::Reconciled, now)]),
        ] {
            let row = store::StepRow {
                step,
                job: job.into(),
                label: job.into(),
                command: None,
                session_id: None,
                resume: false,
                is_agent: true,
                log: dir.join("log"),
                attempt: 1,
            };
            ledger.begin_step("r1", &row, now).unwrap();
            for (kind, at) in rows {
                let d = if kind == Kind::Estimate { &est } else { &fin };
                ledger.record("r1", step, Some("m"), kind, d, at).unwrap();
            }
        }
        let since = now - chrono::Duration::minutes(5);
        let by_job: Vec<(String, u64, i64, bool)> = spend(&ledger, since, GroupBy::Job)
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.output_tokens, r.usd_nanos, r.estimated))
            .collect();
        assert_eq!(
            by_job,
            [
                ("a".to_string(), 20, 2_000, true),
                ("b".to_string(), 15, 1_500, false),
                ("c".to_string(), 10, 1_000, false),
                ("d".to_string(), 5, 500, false),
            ]
        );
        for by in [GroupBy::Run, GroupBy::Model, GroupBy::Day, GroupBy::Command] {
            let rows = spend(&ledger, since, by).unwrap();
            assert_eq!(rows.len(), 1, "{by:?}");
            assert_eq!((rows[0].output_tokens, rows[0].usd_nanos), (50, 5_000));
            assert!(rows[0].estimated, "{by:?}: step a is an estimate");
        }
    }
}
