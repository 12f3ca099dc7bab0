//! The usage summary: one row per (run, step, model, day) holding the sums of that group's usage
//! rows, kept by SQLite triggers on `usage` (insert, update and delete), so every reader of spend
//! (the report, window spend, plan forecasts, a step's spend) reads summaries, linear in steps
//! rather than in usage rows.
//!
//! It owns the migration that creates and back-fills the table and the SQL that reads a window
//! from it. Nothing but the triggers may write the table: the raw `usage` rows stay the record,
//! and the summary can always be rebuilt from them. A window whose start falls inside a group's
//! rows (`first_ms < since <= last_ms`) reads that group's raw rows, so a window is exact.
//!
//! Sums are SQLite integer additions, which turn into floats instead of overflowing (the
//! readers use `TOTAL()` as they did on the raw rows). `first_ms` and `last_ms` only widen (a
//! deleted row does not narrow them), which only makes a group be read raw more often.

/// The upsert of one usage row (`$r`, `new` or a back-filled row) into its group, as a literal
/// for `concat!` (a trigger's body cannot call anything).
macro_rules! add_row {
    ($r:literal) => {
        concat!(
            "INSERT INTO usage_summary (run_id, step, model, day, input, output, cache_read,
                cache_creation, usd_nanos, estimates, finals, first_ms, last_ms)
             SELECT ",
            $r,
            ".run_id, ",
            $r,
            ".step, COALESCE(",
            $r,
            ".model, '(unknown)'), substr(",
            $r,
            ".at, 1, 10), ",
            $r,
            ".input, ",
            $r,
            ".output, ",
            $r,
            ".cache_read, ",
            $r,
            ".cache_creation, ",
            $r,
            ".usd_nanos, ",
            $r,
            ".kind = 'estimate', ",
            $r,
            ".kind != 'estimate', ",
            $r,
            ".at_ms, ",
            $r,
            ".at_ms"
        )
    };
}

/// What an upsert does to an existing group.
macro_rules! on_conflict {
    () => {
        " WHERE true ON CONFLICT (run_id, step, model, day) DO UPDATE SET
            input = input + excluded.input,
            output = output + excluded.output,
            cache_read = cache_read + excluded.cache_read,
            cache_creation = cache_creation + excluded.cache_creation,
            usd_nanos = usd_nanos + excluded.usd_nanos,
            estimates = estimates + excluded.estimates,
            finals = finals + excluded.finals,
            first_ms = MIN(first_ms, excluded.first_ms),
            last_ms = MAX(last_ms, excluded.last_ms)"
    };
}

/// Takes an old usage row out of its group (and the group away once it has no rows).
macro_rules! remove_old {
    () => {
        "UPDATE usage_summary SET
            input = input - old.input,
            output = output - old.output,
            cache_read = cache_read - old.cache_read,
            cache_creation = cache_creation - old.cache_creation,
            usd_nanos = usd_nanos - old.usd_nanos,
            estimates = estimates - (old.kind = 'estimate'),
            finals = finals - (old.kind != 'estimate')
         WHERE run_id = old.run_id AND step = old.step AND model = COALESCE(old.model, '(unknown)')
            AND day = substr(old.at, 1, 10);
         DELETE FROM usage_summary
         WHERE run_id = old.run_id AND step = old.step AND model = COALESCE(old.model, '(unknown)')
            AND day = substr(old.at, 1, 10) AND estimates = 0 AND finals = 0"
    };
}

/// The migration: the table, its index on `last_ms` (a window reads the groups that reach into
/// it), the back-fill of every existing row, and the triggers.
pub(crate) const MIGRATION: &str = concat!(
    "CREATE TABLE usage_summary (
        run_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        model TEXT NOT NULL,
        day TEXT NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_creation INTEGER NOT NULL,
        usd_nanos INTEGER NOT NULL,
        estimates INTEGER NOT NULL,
        finals INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, step, model, day)
    ) WITHOUT ROWID;
    CREATE INDEX usage_summary_last ON usage_summary(last_ms);
    ",
    add_row!("u"),
    " FROM usage u",
    on_conflict!(),
    ";
    CREATE TRIGGER usage_summary_insert AFTER INSERT ON usage BEGIN ",
    add_row!("new"),
    on_conflict!(),
    "; END;
    CREATE TRIGGER usage_summary_delete AFTER DELETE ON usage BEGIN ",
    remove_old!(),
    "; END;
    CREATE TRIGGER usage_summary_update AFTER UPDATE ON usage BEGIN ",
    remove_old!(),
    "; ",
    add_row!("new"),
    on_conflict!(),
    "; END;"
);

/// What a window's partial sums are keyed by beyond (run, step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Nothing,
    Model,
    Day,
}

/// A `WITH` table `w` of the spend since `?1` (milliseconds): rows of (run_id, step, part, input,
/// output, cache_read, cache_creation, usd_nanos, has_estimate), at least one per (run, step,
/// part) with rows in the window. Groups wholly in the window are read from the summary, groups
/// the window's start cuts from their raw rows.
pub(crate) fn window(part: Part) -> String {
    let part = match part {
        Part::Nothing => "NULL",
        Part::Model => "e.model",
        Part::Day => "e.day",
    };
    format!(
        "w AS (
             SELECT e.run_id, e.step, {part} AS part, e.input, e.output, e.cache_read,
                    e.cache_creation, e.usd_nanos, e.estimates > 0 AS has_estimate
             FROM usage_summary e WHERE e.last_ms >= ?1 AND e.first_ms >= ?1
             UNION ALL
             SELECT e.run_id, e.step, {part}, TOTAL(u.input), TOTAL(u.output), TOTAL(u.cache_read),
                    TOTAL(u.cache_creation), TOTAL(u.usd_nanos), MAX(u.kind = 'estimate')
             FROM usage_summary e
             CROSS JOIN usage u ON u.run_id = e.run_id AND u.step = e.step
             WHERE e.last_ms >= ?1 AND e.first_ms < ?1 AND u.at_ms >= ?1
                AND COALESCE(u.model, '(unknown)') = e.model AND substr(u.at, 1, 10) = e.day
             GROUP BY e.run_id, e.step, e.model, e.day
         )"
    )
}

/// Spend since `?1` (milliseconds) in intervals of `?2` milliseconds (counted from the epoch):
/// rows of (interval number, tokens, usd_nanos) in order. A group whose rows all lie in one
/// interval after `?1` is read from the summary; the others (a step that crossed an interval's
/// end, or the window's start) from their raw rows.
pub(crate) const INTERVALS: &str = "
    SELECT b, TOTAL(t), TOTAL(d) FROM (
        SELECT e.first_ms / ?2 AS b, e.input + e.output + e.cache_read + e.cache_creation AS t,
               e.usd_nanos AS d
        FROM usage_summary e
        WHERE e.last_ms >= ?1 AND e.first_ms >= ?1 AND e.first_ms / ?2 = e.last_ms / ?2
        UNION ALL
        SELECT u.at_ms / ?2, u.input + u.output + u.cache_read + u.cache_creation, u.usd_nanos
        FROM usage_summary e
        CROSS JOIN usage u ON u.run_id = e.run_id AND u.step = e.step
        WHERE e.last_ms >= ?1 AND (e.first_ms < ?1 OR e.first_ms / ?2 != e.last_ms / ?2)
           AND u.at_ms >= ?1
           AND COALESCE(u.model, '(unknown)') = e.model AND substr(u.at, 1, 10) = e.day
    ) GROUP BY b ORDER BY b";

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
