//! The ledger's SQLite store: runs, steps, sessions and usage events, one row per change of a
//! step's spend (WAL). The run's writer commits them in groups (`crate::runner::writer`); what a
//! killed orch had not committed yet is re-read from the step logs by the next orch.
//!
//! Usage rows are deltas: live estimates as they come, then, when Claude Code's `result` arrives,
//! rows that cancel the estimates and add the authoritative figures per model. The sum of a
//! step's rows is always its best-known spend. A run that never finished (orch killed) is claimed
//! (`reconciling`, with the claimer's pid and start time) and then marked `dead` by the next orch
//! that opens the ledger, after re-reading its step logs so that usage which reached a log but not
//! the ledger is added (`reconciled` rows; see `super::reconcile`). Every path stored is absolute.
//!
//! Dollars are stored as integer nano-dollars (`usd_nanos`, since schema version 2); the REAL
//! `usd` column is still written, as `usd_nanos / 10^9`, for readers of older versions, but orch
//! reads only the integer. Sums use `TOTAL()`, which never overflows, so a ledger holding figures
//! from before the caps (10^19 tokens stored wrapped) can still be read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::budget::Spend;
use super::nanos::Nanos;
use super::summary;
use crate::agent::stream::{TOKEN_CAP, TokenCounts};

/// Schema version 1 (never edited: ledgers in the field have it).
pub(crate) const MIGRATIONS_V1: &str = "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        manifest TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        pid INTEGER NOT NULL,
        pid_start INTEGER
    );
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id),
        step INTEGER NOT NULL,
        job TEXT NOT NULL,
        label TEXT NOT NULL,
        command TEXT,
        session_id TEXT,
        resume INTEGER NOT NULL DEFAULT 0,
        is_agent INTEGER NOT NULL,
        log TEXT,
        status TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        PRIMARY KEY (run_id, step)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        job TEXT NOT NULL,
        totals TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        at TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        model TEXT,
        kind TEXT NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_creation INTEGER NOT NULL,
        usd REAL NOT NULL
    );
    CREATE INDEX usage_at ON usage(at_ms);
    CREATE INDEX usage_step ON usage(run_id, step);";

/// Versioned migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    MIGRATIONS_V1,
    // 2: dollars as integer nano-dollars. Old rows are converted; a NaN or infinite `usd` (the
    // parser let "inf"/"NaN" through before) becomes 0, and a token figure no real delta can have
    // (10^19 tokens, stored wrapped negative by the old u64 -> i64 cast) is counted at the cap of
    // 10^12, as the parser now counts it; each changed row says so in `note`.
    "ALTER TABLE usage ADD COLUMN usd_nanos INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN note TEXT;
    UPDATE usage SET
        note = 'migration 2: usd ' || COALESCE(CAST(usd AS TEXT), 'NaN') || ' is not a finite dollar figure; counted as 0',
        usd = 0
        WHERE usd IS NULL OR NOT (usd BETWEEN -1e9 AND 1e9);
    UPDATE usage SET usd_nanos = CAST(ROUND(usd * 1000000000) AS INTEGER);
    UPDATE usage SET
        note = COALESCE(note || '; ', '') || 'migration 2: input ' || input || ' is out of range; counted as 10^12',
        input = 1000000000000
        WHERE input NOT BETWEEN -1000000000000000 AND 1000000000000000;
    UPDATE usage SET
        note = COALESCE(note || '; ', '') || 'migration 2: output ' || output || ' is out of range; counted as 10^12',
        output = 1000000000000
        WHERE output NOT BETWEEN -1000000000000000 AND 1000000000000000;
    UPDATE usage SET
        note = COALESCE(note || '; ', '') || 'migration 2: cache_read ' || cache_read || ' is out of range; counted as 10^12',
        cache_read = 1000000000000
        WHERE cache_read NOT BETWEEN -1000000000000000 AND 1000000000000000;
    UPDATE usage SET
        note = COALESCE(note || '; ', '') || 'migration 2: cache_creation ' || cache_creation || ' is out of range; counted as 10^12',
        cache_creation = 1000000000000
        WHERE cache_creation NOT BETWEEN -1000000000000000 AND 1000000000000000;",
    // 3: reconciliation claims. A reconciler marks a dead run `reconciling` with its own pid and
    // start time before it reads the logs, so a second reconciler leaves the run alone, and a
    // claim whose holder died can be taken over.
    "ALTER TABLE runs ADD COLUMN claim_pid INTEGER;
    ALTER TABLE runs ADD COLUMN claim_start INTEGER;",
    // 4: resuming runs. A resumed run names the run it continues; every step's resolved
    // definition is hashed when its run starts, so a resume can tell a changed step.
    "ALTER TABLE runs ADD COLUMN resumed_from TEXT;
    CREATE TABLE step_defs (
        run_id TEXT NOT NULL,
        key TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );",
    // 5: attempts. A retried step has one row per attempt (the key gains `attempt`, so the table
    // is rebuilt; old rows are attempt 1), and each usage row names the attempt it was spent in.
    "CREATE TABLE steps_v5 (
        run_id TEXT NOT NULL REFERENCES runs(id),
        step INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        job TEXT NOT NULL,
        label TEXT NOT NULL,
        command TEXT,
        session_id TEXT,
        resume INTEGER NOT NULL DEFAULT 0,
        is_agent INTEGER NOT NULL,
        log TEXT,
        status TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        PRIMARY KEY (run_id, step, attempt)
    );
    INSERT INTO steps_v5 (run_id, step, attempt, job, label, command, session_id, resume,
        is_agent, log, status, started_at, finished_at)
        SELECT run_id, step, 1, job, label, command, session_id, resume, is_agent, log, status,
        started_at, finished_at FROM steps;
    DROP TABLE steps;
    ALTER TABLE steps_v5 RENAME TO steps;
    ALTER TABLE usage ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;",
    // 6: run history. Each run's step statuses, counted when it ends (JSON, `{"completed":3}`),
    // so `orch runs` lists thousands of runs without reading their steps; an index on the start
    // time orders and pages them. A run from before, or one still going, has none (its steps
    // are counted when asked).
    "ALTER TABLE runs ADD COLUMN step_counts TEXT;
    CREATE INDEX runs_started ON runs(started_at, id);",
    // 7: the usage summary, one row per (run, step, model, day) kept by triggers, back-filled
    // here: readers of spend read it instead of every usage row (see `super::summary`).
    super::summary::MIGRATION,
];

// The two statements run for every usage change and every step's end look up the step's latest
// attempt. SQLite, built with STAT4 (as libsqlite3-sys builds it), re-plans a statement on every
// run once a bound parameter is compared with an indexed column where the value could change the
// plan, as in a MAX or an ORDER BY over an index: a full parse each time. `+?1` is the same value
// as `?1` and still searches the index, but is no plain parameter to plan by, so the statement is
// prepared once (`statements_run_on_every_usage_change_are_not_re_prepared`).

/// One change of a step's spend, counted in the step's latest attempt (its row is begun before
/// anything is spent).
pub(crate) const RECORD: &str = "INSERT INTO usage (run_id, step, at, at_ms, model, kind, input,
    output, cache_read, cache_creation, usd, usd_nanos, attempt)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
        COALESCE((SELECT MAX(attempt) FROM steps WHERE run_id = +?1 AND step = +?2), 1))";

/// A step's end, on its latest attempt.
pub(crate) const FINISH_STEP: &str = "UPDATE steps SET status = ?3, finished_at = ?4
    WHERE run_id = ?1 AND step = ?2
    AND attempt = (SELECT MAX(attempt) FROM steps WHERE run_id = +?1 AND step = +?2)";

/// The schema version a ledger has once opened.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The kinds of usage rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A live estimate from the price table.
    Estimate,
    /// Claude Code's own figures (and the reversal of the estimates they replace).
    Final,
    /// Added after a crash from what the step's log held but the ledger did not.
    Reconciled,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Estimate => "estimate",
            Kind::Final => "final",
            Kind::Reconciled => "reconciled",
        }
    }
}

/// A signed change of a step's spend: tokens per kind, dollars as nano-dollars.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_creation: i64,
    pub usd: Nanos,
}

/// A token figure as a ledger integer: at most the parser's cap times 2^20 (far beyond any
/// step), so a row never holds a value whose sum with others could overflow.
fn ledger_tokens(n: u64) -> i64 {
    const MAX: u64 = TOKEN_CAP << 20;
    i64::try_from(n.min(MAX)).expect("TOKEN_CAP << 20 fits an i64")
}

impl Delta {
    /// `new - old`, field by field, never wrapping; dollars are converted to nano-dollars
    /// before the difference, so the deltas of a step always sum to its latest figure exactly.
    pub fn between(old: &TokenCounts, old_usd: f64, new: &TokenCounts, new_usd: f64) -> Delta {
        let d = |a: u64, b: u64| ledger_tokens(b).saturating_sub(ledger_tokens(a));
        Delta {
            input: d(old.input, new.input),
            output: d(old.output, new.output),
            cache_read: d(old.cache_read, new.cache_read),
            cache_creation: d(old.cache_creation, new.cache_creation),
            usd: Nanos::from_usd(new_usd)
                .non_negative()
                .saturating_sub(Nanos::from_usd(old_usd).non_negative()),
        }
    }

    /// All tokens of the change (saturating).
    pub fn tokens(&self) -> i64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    pub fn is_zero(&self) -> bool {
        *self == Delta::default()
    }

    /// The change of two changes one after the other, field by field (exact: the rows' figures
    /// are capped far below where a sum of them could reach i64's limit, where it saturates).
    pub fn then(&self, next: &Delta) -> Delta {
        Delta {
            input: self.input.saturating_add(next.input),
            output: self.output.saturating_add(next.output),
            cache_read: self.cache_read.saturating_add(next.cache_read),
            cache_creation: self.cache_creation.saturating_add(next.cache_creation),
            usd: self.usd.saturating_add(next.usd),
        }
    }
}

/// A step as the ledger knows it.
#[derive(Clone, Debug)]
pub struct StepRow {
    pub step: usize,
    pub job: String,
    pub label: String,
    pub command: Option<String>,
    pub session_id: Option<String>,
    pub resume: bool,
    pub is_agent: bool,
    pub log: PathBuf,
    /// The attempt, from 1 (a retry is a new row of the same step).
    pub attempt: u32,
}

/// A run as the ledger knows it.
#[derive(Clone, Debug)]
pub struct RunRow {
    pub id: String,
    pub name: String,
    pub manifest: PathBuf,
    pub run_dir: PathBuf,
    pub started_at: DateTime<Utc>,
}

/// An agent step of a run and its log, for reconciliation.
#[derive(Clone, Debug)]
pub struct LoggedStep {
    pub step: usize,
    pub session_id: Option<String>,
    /// Whether it resumed a session an earlier step began.
    pub resume: bool,
    pub log: PathBuf,
}

/// An open ledger.
pub struct Ledger {
    conn: Connection,
    pub path: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    ///
    /// Several orch processes may open a new ledger at once; switching it to WAL needs a moment
    /// alone with the file, and SQLite answers "database is locked" without waiting for it, so
    /// opening is retried for a while.
    pub fn open(path: &Path) -> rusqlite::Result<Ledger> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Self::open_once(path) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> rusqlite::Result<Ledger> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Already WAL (every ledger but a new one): switching again is skipped, not repeated.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The reports' sorts and groupings stay in memory instead of files in /var/tmp.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // A current schema is only read: a reader (`orch ledger`, `orch plan`) takes no write
        // lock, so it never waits for a run's writer. Only a ledger behind this orch is
        // migrated, in a `BEGIN IMMEDIATE` transaction that reads the version again.
        if schema_version(&conn)? != SCHEMA_VERSION as i64 {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            migrate(&tx)?;
            tx.commit()?;
        }
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Runs one statement, prepared once per connection (orch writes the same few statements
    /// for every step and every usage change).
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// The schema version (the number of migrations applied).
    pub fn version(&self) -> rusqlite::Result<usize> {
        schema_version(&self.conn).map(|v| v.max(0) as usize)
    }

    pub fn begin_run(&self, run: &RunRow) -> rusqlite::Result<()> {
        let pid = std::process::id();
        self.exec(
            "INSERT INTO runs (id, name, manifest, run_dir, started_at, status, pid, pid_start)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)",
            params![
                run.id,
                run.name,
                run.manifest.to_string_lossy(),
                absolute(&run.run_dir).to_string_lossy(),
                run.started_at.to_rfc3339(),
                pid,
                process_start(pid).map(|s| s as i64),
            ],
        )?;
        Ok(())
    }

    pub fn begin_step(&self, run_id: &str, s: &StepRow, at: DateTime<Utc>) -> rusqlite::Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO steps
             (run_id, step, job, label, command, session_id, resume, is_agent, log, status, started_at,
              attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10, ?11)",
            params![
                run_id,
                s.step as i64,
                s.job,
                s.label,
                s.command,
                s.session_id,
                s.resume,
                s.is_agent,
                absolute(&s.log).to_string_lossy(),
                at.to_rfc3339(),
                s.attempt.max(1),
            ],
        )?;
        Ok(())
    }

    /// Records one change of a step's spend (committed at once).
    pub fn record(
        &self,
        run_id: &str,
        step: usize,
        model: Option<&str>,
        kind: Kind,
        d: &Delta,
        at: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        self.exec(
            RECORD,
            params![
                run_id,
                step as i64,
                at.to_rfc3339(),
                at.timestamp_millis(),
                model,
                kind.as_str(),
                d.input,
                d.output,
                d.cache_read,
                d.cache_creation,
                d.usd.dollars(),
                d.usd.0,
            ],
        )?;
        Ok(())
    }

    pub fn finish_step(
        &self,
        run_id: &str,
        step: usize,
        status: &str,
        at: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        self.exec(
            FINISH_STEP,
            params![run_id, step as i64, status, at.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Remembers a session's cumulative totals (JSON) after a step.
    pub fn save_session(
        &self,
        id: &str,
        job: &str,
        totals: &str,
        at: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        self.exec(
            "INSERT INTO sessions (id, job, totals, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET totals = excluded.totals, updated_at = excluded.updated_at",
            params![id, job, totals, at.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Marks a run ended, with its step statuses counted (JSON, see `crate::history::StepCounts`).
    pub fn finish_run(
        &self,
        run_id: &str,
        status: &str,
        exit_code: u8,
        step_counts: Option<&str>,
        at: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE runs SET status = ?2, exit_code = ?3, finished_at = ?4, step_counts = ?5
             WHERE id = ?1",
            params![
                run_id,
                status,
                i64::from(exit_code),
                at.to_rfc3339(),
                step_counts
            ],
        )?;
        Ok(())
    }

    /// Everything spent since `since`, all runs together (the rolling window's starting point).
    pub fn spent_since(&self, since: DateTime<Utc>) -> rusqlite::Result<Spend> {
        let sql = format!(
            "WITH {} SELECT TOTAL(input) + TOTAL(output) + TOTAL(cache_read) + TOTAL(cache_creation),
             TOTAL(usd_nanos) FROM w",
            summary::window(summary::Part::Nothing)
        );
        self.conn
            .prepare_cached(&sql)?
            .query_row(params![since.timestamp_millis()], |r| {
                Ok(Spend {
                    tokens: total_u64(r.get(0)?),
                    usd: total_nanos(r.get(1)?).non_negative(),
                })
            })
    }

    /// A step's recorded spend, as the sum of its rows' summaries (dollars as a float, for
    /// [`Delta::between`], which converts them back exactly).
    pub fn step_spend(&self, run_id: &str, step: usize) -> rusqlite::Result<(TokenCounts, f64)> {
        self.conn.query_row(
            "SELECT TOTAL(input), TOTAL(output), TOTAL(cache_read), TOTAL(cache_creation),
             TOTAL(usd_nanos) FROM usage_summary WHERE run_id = ?1 AND step = ?2",
            params![run_id, step as i64],
            |r| {
                let get = |i: usize| r.get::<_, f64>(i).map(total_u64);
                Ok((
                    TokenCounts {
                        input: get(0)?,
                        output: get(1)?,
                        cache_read: get(2)?,
                        cache_creation: get(3)?,
                        ..TokenCounts::default()
                    },
                    total_nanos(r.get(4)?).non_negative().dollars(),
                ))
            },
        )
    }

    /// The final cost of each past completed run of each job of a manifest, oldest first (for
    /// forecasts), in one pass over the manifest's runs: asked job by job, the join started from
    /// the usage rows and read every row of the ledger once per job.
    pub fn job_costs(
        &self,
        manifest_name: &str,
    ) -> rusqlite::Result<std::collections::HashMap<String, Vec<f64>>> {
        // CROSS JOIN keeps SQLite's join order: runs, their steps, the steps' summaries.
        let mut stmt = self.conn.prepare(
            "SELECT s.job, TOTAL(u.usd_nanos) FROM runs r
             CROSS JOIN steps s ON s.run_id = r.id AND s.attempt = 1
             CROSS JOIN usage_summary u ON u.run_id = s.run_id AND u.step = s.step
             WHERE r.name = ?1 AND r.status NOT IN ('running', 'reconciling')
             GROUP BY s.job, r.id ORDER BY s.job, MIN(u.first_ms)",
        )?;
        let rows = stmt.query_map(params![manifest_name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                total_nanos(r.get::<_, f64>(1)?).dollars(),
            ))
        })?;
        let mut costs = std::collections::HashMap::<String, Vec<f64>>::new();
        for row in rows {
            let (job, usd) = row?;
            costs.entry(job).or_default().push(usd);
        }
        Ok(costs)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The runs a reconciler may claim: `running` with their orch gone (pid dead or reused) or
    /// being `me`, or `reconciling` with their claimer gone (it died mid-way) or being `me`. A hint
    /// only: the claim ([`Ledger::claim`]) checks again inside its transaction.
    ///
    /// A `running` run of `me` is one whose end did not land (a service runs one run after
    /// another in one process): reconciliation is only called while this process runs none,
    /// before a run begins or from `orch ledger`.
    pub fn orphaned_runs(&self, me: Holder) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT id FROM runs WHERE status IN ('running', 'reconciling') ORDER BY started_at",
        )?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut orphaned = Vec::new();
        for id in ids {
            if self.claimable(&id, me)? {
                orphaned.push(id);
            }
        }
        Ok(orphaned)
    }

    /// Whether `me` may claim the run now (see [`Ledger::orphaned_runs`]).
    fn claimable(&self, run_id: &str, me: Holder) -> rusqlite::Result<bool> {
        let row = self
            .conn
            .query_row(
                "SELECT status, pid, pid_start, claim_pid, claim_start FROM runs WHERE id = ?1",
                params![run_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Holder::from_row(r.get(1)?, r.get(2)?),
                        Holder::from_row(r.get(3)?, r.get(4)?),
                    ))
                },
            )
            .optional()?;
        Ok(match row {
            Some((status, owner, _)) if status == "running" => {
                owner == Some(me) || !owner.is_some_and(Holder::alive)
            }
            Some((status, _, claimer)) if status == "reconciling" => {
                claimer == Some(me) || !claimer.is_some_and(Holder::alive)
            }
            _ => false,
        })
    }

    /// Claims a dead run for reconciliation by `me`: in one `BEGIN IMMEDIATE` transaction, checks
    /// that it is still claimable and marks it `reconciling` with `me` as the claimer. False when
    /// another reconciler got there first (or the run is no longer dead).
    pub fn claim(&self, run_id: &str, me: Holder) -> rusqlite::Result<bool> {
        self.immediate(|l| {
            if !l.claimable(run_id, me)? {
                return Ok(false);
            }
            l.exec(
                "UPDATE runs SET status = 'reconciling', claim_pid = ?2, claim_start = ?3 WHERE id = ?1",
                params![run_id, me.pid, me.start.map(|s| s as i64)],
            )?;
            Ok(true)
        })
    }

    /// Whether `me` still holds the claim on a run (nobody took it over).
    pub fn holds_claim(&self, run_id: &str, me: Holder) -> rusqlite::Result<bool> {
        let claimer = self
            .conn
            .query_row(
                "SELECT claim_pid, claim_start FROM runs WHERE id = ?1 AND status = 'reconciling'",
                params![run_id],
                |r| Ok(Holder::from_row(r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(claimer.flatten() == Some(me))
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken first, so what `f`
    /// reads cannot change before it writes. Rolled back if `f` fails.
    pub fn immediate<T>(
        &self,
        f: impl FnOnce(&Ledger) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(self) {
            Ok(value) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            },
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The agent steps of a run that have a log, in step order.
    pub fn agent_steps(&self, run_id: &str) -> rusqlite::Result<Vec<LoggedStep>> {
        let mut stmt = self.conn.prepare(
            "SELECT step, session_id, resume, log FROM steps
             WHERE run_id = ?1 AND is_agent = 1 AND log IS NOT NULL ORDER BY step, attempt",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(LoggedStep {
                step: r.get::<_, i64>(0)?.max(0) as usize,
                session_id: r.get(1)?,
                resume: r.get(2)?,
                log: PathBuf::from(r.get::<_, String>(3)?),
            })
        })?;
        rows.collect()
    }

    /// Marks a dead run and its unfinished steps (inside the reconciler's closing transaction).
    pub fn mark_dead(&self, run_id: &str, at: DateTime<Utc>) -> rusqlite::Result<()> {
        self.exec(
            "UPDATE steps SET status = 'killed', finished_at = ?2 WHERE run_id = ?1 AND status = 'running'",
            params![run_id, at.to_rfc3339()],
        )?;
        self.exec(
            "UPDATE runs SET status = 'dead', finished_at = ?2 WHERE id = ?1",
            params![run_id, at.to_rfc3339()],
        )?;
        Ok(())
    }

    /// The status of a run, if the ledger knows it.
    pub fn run_status(&self, run_id: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT status FROM runs WHERE id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()
    }
}

/// The ledger's schema version (`PRAGMA user_version`; 0 for a new file).
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema up to date inside the caller's write transaction; refuses a ledger a newer
/// orch has migrated: it may hold columns and meanings this one does not know, and writing it
/// with the old schema could lose spend.
fn migrate(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let version = schema_version(tx)?;
    if version > SCHEMA_VERSION as i64 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "its schema version is {version}, newer than this orch knows \
                 ({SCHEMA_VERSION}): use the orch that wrote it, or another --state-dir"
            )),
        ));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    Ok(())
}

/// A `TOTAL()` of token rows as a count: negative is 0, beyond u64 saturates (`as` does both).
pub(crate) fn total_u64(total: f64) -> u64 {
    total as u64
}

/// A `TOTAL()` of nano-dollar rows (exact below 2^53 n$, 9·10^6 dollars; `as` saturates).
pub(crate) fn total_nanos(total: f64) -> Nanos {
    Nanos(total as i64)
}

/// `path` made absolute against the current folder, as every path the ledger stores must be: the
/// next orch to read it (a reconciler) may run elsewhere. The state folder is made absolute where
/// it is resolved; this is the backstop.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A process that owns a run or holds a claim on one: its pid and start time, which together tell
/// a live process from a reused pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Clock ticks since boot; `None` when `/proc` could not tell (the holder then counts as gone).
    pub start: Option<u64>,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            start: process_start(pid),
        }
    }

    fn from_row(pid: Option<i64>, start: Option<i64>) -> Option<Holder> {
        Some(Holder {
            pid: u32::try_from(pid?).ok()?,
            start: start.and_then(|s| u64::try_from(s).ok()),
        })
    }

    /// Whether the process still runs (same pid, same start time).
    pub fn alive(self) -> bool {
        self.start.is_some() && process_start(self.pid) == self.start
    }
}

/// The start time of a process (clock ticks since boot), which tells a live orch from a reused pid.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}
