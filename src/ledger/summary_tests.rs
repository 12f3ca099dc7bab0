use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::super::store::{Delta, Kind, Ledger};
use super::super::{GroupBy, Nanos, spend, spend_over_time};

/// One usage row as a test writes it: run, step, model, kind, time (ms), tokens, nano-dollars.
type Row = (u8, u8, Option<u8>, u8, i64, i64, i64);

fn row() -> impl Strategy<Value = Row> {
    (
        0..2u8,
        0..3u8,
        proptest::option::of(0..2u8),
        0..3u8,
        // Around a midnight, so groups split by day and windows cut groups.
        -3_000i64..3_000,
        -1_000_000i64..1_000_000,
        -1_000_000i64..1_000_000,
    )
}

/// A midnight, milliseconds since the epoch.
const MIDNIGHT: i64 = 1_764_633_600_000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(MIDNIGHT + ms).expect("in range")
}

fn write(ledger: &Ledger, rows: &[Row]) {
    for &(run, step, model, kind, ms, tokens, nanos) in rows {
        let kind = [Kind::Estimate, Kind::Final, Kind::Reconciled][usize::from(kind)];
        let model = model.map(|m| format!("m{m}"));
        let d = Delta {
            input: tokens,
            output: tokens / 3,
            cache_read: -tokens / 7,
            cache_creation: 1,
            usd: Nanos(nanos),
        };
        ledger
            .record(
                &format!("r{run}"),
                step.into(),
                model.as_deref(),
                kind,
                &d,
                at(ms),
            )
            .unwrap();
    }
}

/// The sums of the raw rows since `since` (ms), as the readers before the summary computed them.
fn raw_since(ledger: &Ledger, since: i64) -> (f64, f64) {
    ledger
        .conn()
        .query_row(
            "SELECT TOTAL(input) + TOTAL(output) + TOTAL(cache_read) + TOTAL(cache_creation),
             TOTAL(usd_nanos) FROM usage WHERE at_ms >= ?1",
            [since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Every group's figures, from the summary and from the raw rows, side by side.
fn groups(ledger: &Ledger) -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
    let read = |sql: &str| -> Vec<Vec<i64>> {
        let mut stmt = ledger.conn().prepare(sql).unwrap();
        stmt.query_map([], |r| (0..8).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let summary = read(
        "SELECT step, input, output, cache_read, cache_creation, usd_nanos, estimates, finals
         FROM usage_summary ORDER BY run_id, step, model, day",
    );
    let raw = read(
        "SELECT step, SUM(input), SUM(output), SUM(cache_read), SUM(cache_creation),
                SUM(usd_nanos), SUM(kind = 'estimate'), SUM(kind != 'estimate')
         FROM usage GROUP BY run_id, step, COALESCE(model, '(unknown)'), substr(at, 1, 10)
         ORDER BY run_id, step, COALESCE(model, '(unknown)'), substr(at, 1, 10)",
    );
    (summary, raw)
}

fn temp() -> (Ledger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    (ledger, dir)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever rows are written, deleted or changed, every group's summary equals the sum of its
    /// raw rows, and window spend and a step's spend read from it equal the raw sums.
    #[test]
    fn the_summary_equals_the_raw_sum(
        rows in proptest::collection::vec(row(), 0..60),
        deleted in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        changed in proptest::collection::vec((any::<prop::sample::Index>(), -5_000i64..5_000), 0..4),
        since in -4_000i64..4_000,
        every in 1u64..2_500,
    ) {
        let (ledger, _dir) = temp();
        write(&ledger, &rows);
        if !rows.is_empty() {
            for i in &deleted {
                let id = i.index(rows.len()) + 1;
                ledger.conn().execute("DELETE FROM usage WHERE id = ?1", [id as i64]).unwrap();
            }
            for (i, by) in &changed {
                let id = i.index(rows.len()) + 1;
                ledger.conn().execute(
                    "UPDATE usage SET output = output + ?2, at_ms = at_ms + ?2, model = 'x'
                     WHERE id = ?1",
                    [id as i64, *by],
                ).unwrap();
            }
        }
        let (summary, raw) = groups(&ledger);
        prop_assert_eq!(summary, raw);
        let spent = ledger.spent_since(at(since)).unwrap();
        let (tokens, nanos) = raw_since(&ledger, MIDNIGHT + since);
        prop_assert_eq!(spent.tokens, tokens as u64);
        prop_assert_eq!(spent.usd, Nanos(nanos as i64).non_negative());
        // Spend per interval equals the raw rows' sums per interval.
        let intervals = spend_over_time(&ledger, at(since), Duration::from_millis(every)).unwrap();
        let mut stmt = ledger.conn().prepare(
            "SELECT at_ms / ?2 * ?2, TOTAL(input) + TOTAL(output) + TOTAL(cache_read)
                 + TOTAL(cache_creation), TOTAL(usd_nanos)
             FROM usage WHERE at_ms >= ?1 GROUP BY at_ms / ?2 ORDER BY 1",
        ).unwrap();
        let raw: Vec<(i64, u64, Nanos)> = stmt
            .query_map([MIDNIGHT + since, every as i64], |r| {
                Ok((r.get(0)?, r.get::<_, f64>(1)? as u64, Nanos(r.get::<_, f64>(2)? as i64).non_negative()))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let read: Vec<(i64, u64, Nanos)> = intervals
            .iter()
            .map(|(t, s)| (t.timestamp_millis(), s.tokens, s.usd))
            .collect();
        prop_assert_eq!(read, raw);
        for run in 0..2 {
            for step in 0..3usize {
                let (t, usd) = ledger.step_spend(&format!("r{run}"), step).unwrap();
                let (raw_t, raw_usd): (f64, f64) = ledger.conn().query_row(
                    "SELECT TOTAL(input), TOTAL(usd_nanos) FROM usage WHERE run_id = ?1 AND step = ?2",
                    rusqlite::params![format!("r{run}"), step as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                ).unwrap();
                prop_assert_eq!(t.input, raw_t as u64);
                prop_assert_eq!(usd, Nanos(raw_usd as i64).non_negative().dollars());
            }
        }
    }
}

/// A ledger migrated from the version before the summary gets its summary back-filled from the rows it holds, and the
/// report reads the same figures from it.
#[test]
fn the_migration_back_fills_the_summary() {
    let (ledger, dir) = temp();
    let rows: Vec<Row> = (0..40)
        .map(|i| {
            (
                i % 2,
                i % 3,
                Some(i % 2),
                i % 3,
                i64::from(i) * 100 - 2_000,
                1_000,
                7,
            )
        })
        .collect();
    write(&ledger, &rows);
    let before = spend(&ledger, at(-1_000), GroupBy::Model).unwrap();
    // Back to the version before the summary: no table, no triggers.
    ledger
        .conn()
        .execute_batch(
            "DROP TRIGGER usage_summary_insert; DROP TRIGGER usage_summary_delete;
             DROP TRIGGER usage_summary_update; DROP TABLE usage_summary;",
        )
        .unwrap();
    let previous = super::super::store::SCHEMA_VERSION - 1;
    ledger
        .conn()
        .pragma_update(None, "user_version", previous as i64)
        .unwrap();
    drop(ledger);
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    assert_eq!(
        ledger.version().unwrap(),
        super::super::store::SCHEMA_VERSION
    );
    let (summary, raw) = groups(&ledger);
    assert!(!summary.is_empty());
    assert_eq!(summary, raw);
    assert_eq!(spend(&ledger, at(-1_000), GroupBy::Model).unwrap(), before);
}
