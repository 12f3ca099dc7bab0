//! The ledger's runs as history: one [`RunEntry`] per run (its spend summed, its step statuses
//! counted), listed newest first with a [`RunFilter`], and found by `latest` or an id prefix.
//!
//! Listing reads the `runs` table through its start-time index and sums usage per listed run
//! only, so a page of a ledger of 10,000 runs costs what the page costs. It never writes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{History, HistoryError};
use crate::events::Status;
use crate::ledger::store::{Holder, total_nanos, total_u64};

/// How many steps ended (or are) in each status, by status name (`completed`, `failed`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct StepCounts(pub BTreeMap<String, u32>);

impl StepCounts {
    /// The statuses of a run's steps, counted.
    pub fn of(states: &[Status]) -> StepCounts {
        let mut counts = BTreeMap::new();
        for s in states {
            *counts.entry(s.as_str().to_string()).or_insert(0) += 1;
        }
        StepCounts(counts)
    }

    /// As the ledger stores it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a map of strings to numbers serializes")
    }

    /// The number of steps in `status`.
    pub fn get(&self, status: &str) -> u32 {
        self.0.get(status).copied().unwrap_or(0)
    }

    /// Every step counted.
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }

    /// Steps that failed in any way (failed, timed out, over budget, blocked).
    pub fn failures(&self) -> u32 {
        ["failed", "timed_out", "budget_exceeded", "blocked"]
            .iter()
            .map(|s| self.get(s))
            .sum()
    }
}

/// A run as history shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEntry {
    pub id: String,
    /// The manifest's name.
    pub name: String,
    /// The manifest file.
    pub manifest: PathBuf,
    pub run_dir: PathBuf,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// To its end, or to now while it runs.
    pub duration_seconds: f64,
    /// `running`, `completed`, `failed`, `budget_stop`, `interrupted`, `rate_limited`,
    /// `setup_error`, `reconciling` or `dead`.
    pub status: String,
    /// The ledger says `running` but the orch that ran it is gone (the next orch to start marks
    /// it `dead`).
    pub orphaned: bool,
    pub exit_code: Option<u8>,
    /// Its steps' statuses; while it runs, only the steps that have started.
    pub steps: StepCounts,
    pub total_tokens: u64,
    /// Dollars, from the integer nano-dollars.
    pub usd: f64,
    pub usd_nanos: i64,
    /// The run this one resumes.
    pub resumed_from: Option<String>,
}

impl RunEntry {
    pub fn is_running(&self) -> bool {
        self.status == "running" && !self.orphaned
    }
}

/// Which runs to list: every field narrows it; `limit` 0 means no limit.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Runs started at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Runs whose status is this (see [`RunEntry::status`]).
    pub status: Option<String>,
    /// Runs of this manifest: its name or its file's path.
    pub manifest: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

const COLUMNS: &str = "r.id, r.name, r.manifest, r.run_dir, r.started_at, r.finished_at, r.status,
    r.exit_code, r.pid, r.pid_start, r.step_counts, r.resumed_from,
    (SELECT TOTAL(input) + TOTAL(output) + TOTAL(cache_read) + TOTAL(cache_creation)
        FROM usage u WHERE u.run_id = r.id),
    (SELECT TOTAL(usd_nanos) FROM usage u WHERE u.run_id = r.id)";

const FILTER: &str = "(?1 IS NULL OR r.started_at >= ?1) AND (?2 IS NULL OR r.status = ?2)
    AND (?3 IS NULL OR r.name = ?3 OR r.manifest = ?3)";

impl History {
    /// The runs the filter lets through, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunEntry>, HistoryError> {
        let Some(ledger) = self.ledger() else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM runs r WHERE {FILTER}
             ORDER BY r.started_at DESC, r.id DESC LIMIT ?4 OFFSET ?5"
        );
        let limit = if filter.limit == 0 {
            -1
        } else {
            filter.limit as i64
        };
        let since = filter.since.map(|t| t.to_rfc3339());
        let rows = (|| {
            let mut stmt = ledger.conn().prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    since,
                    filter.status,
                    filter.manifest,
                    limit,
                    filter.offset as i64
                ],
                entry_of,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(|e| self.sql(e))?;
        rows.into_iter().map(|r| self.completed(r)).collect()
    }

    /// How many runs the filter lets through (its limit and offset aside), for paging.
    pub fn count(&self, filter: &RunFilter) -> Result<u64, HistoryError> {
        let Some(ledger) = self.ledger() else {
            return Ok(0);
        };
        let since = filter.since.map(|t| t.to_rfc3339());
        ledger
            .conn()
            .query_row(
                &format!("SELECT COUNT(*) FROM runs r WHERE {FILTER}"),
                params![since, filter.status, filter.manifest],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.sql(e))
    }

    /// The run with exactly this id.
    pub fn run(&self, id: &str) -> Result<Option<RunEntry>, HistoryError> {
        let Some(ledger) = self.ledger() else {
            return Ok(None);
        };
        let row = ledger
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM runs r WHERE r.id = ?1"),
                params![id],
                entry_of,
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        row.map(|r| self.completed(r)).transpose()
    }

    /// The run `wanted` names: `latest` (the newest started, running or not), an exact id, or
    /// the unique start of one — of the whole id or of its random part after the `-`.
    pub fn resolve(&self, wanted: &str) -> Result<RunEntry, HistoryError> {
        let Some(ledger) = self.ledger() else {
            return Err(HistoryError::NoRuns {
                state_dir: self.state_dir.clone(),
            });
        };
        let wanted = wanted.trim();
        if wanted == "latest" {
            let newest = self.runs(&RunFilter {
                limit: 1,
                ..RunFilter::default()
            })?;
            return newest
                .into_iter()
                .next()
                .ok_or_else(|| HistoryError::NoRuns {
                    state_dir: self.state_dir.clone(),
                });
        }
        if let Some(run) = self.run(wanted)? {
            return Ok(run);
        }
        let ids = (|| {
            let mut stmt = ledger.conn().prepare_cached(
                "SELECT id FROM runs WHERE ?1 != '' AND (substr(id, 1, length(?1)) = ?1
                    OR substr(id, instr(id, '-') + 1, length(?1)) = ?1)
                 ORDER BY started_at DESC, id DESC LIMIT 11",
            )?;
            let rows = stmt.query_map(params![wanted], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(|e| self.sql(e))?;
        match ids.as_slice() {
            [one] => self.run(one)?.ok_or_else(|| self.unknown(wanted)),
            [] => Err(self.unknown(wanted)),
            many => {
                let mut candidates = many.to_vec();
                if candidates.len() > 10 {
                    candidates.truncate(10);
                    candidates.push("...".into());
                }
                Err(HistoryError::AmbiguousRun {
                    wanted: wanted.to_string(),
                    candidates,
                })
            }
        }
    }

    fn unknown(&self, wanted: &str) -> HistoryError {
        let recent = self
            .runs(&RunFilter {
                limit: 5,
                ..RunFilter::default()
            })
            .unwrap_or_default();
        HistoryError::UnknownRun {
            wanted: wanted.to_string(),
            state_dir: self.state_dir.clone(),
            help: if recent.is_empty() {
                "no run has been recorded there yet".into()
            } else {
                let ids: Vec<&str> = recent.iter().map(|r| r.id.as_str()).collect();
                format!(
                    "`latest` names the newest; the newest runs: {}",
                    ids.join(", ")
                )
            },
        }
    }

    /// A row with what the ledger did not store for it: the step counts of a run that has not
    /// ended (or ended before the counts were kept), from its steps' rows.
    fn completed(&self, mut row: Row) -> Result<RunEntry, HistoryError> {
        if row.counts_missing {
            if let Some(ledger) = self.ledger() {
                row.entry.steps = step_counts(ledger, &row.entry.id).map_err(|e| self.sql(e))?;
            }
        }
        Ok(row.entry)
    }
}

struct Row {
    entry: RunEntry,
    counts_missing: bool,
}

fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let started_at = time(&r.get::<_, String>(4)?).unwrap_or(DateTime::UNIX_EPOCH);
    let finished_at = r.get::<_, Option<String>>(5)?.as_deref().and_then(time);
    let status: String = r.get(6)?;
    let owner = Holder {
        pid: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
        start: r
            .get::<_, Option<i64>>(9)?
            .and_then(|s| u64::try_from(s).ok()),
    };
    let orphaned = status == "running" && !owner.alive();
    let counts: Option<String> = r.get(10)?;
    let steps = counts
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let usd = total_nanos(r.get(13)?).non_negative();
    let end = finished_at.unwrap_or_else(Utc::now);
    Ok(Row {
        counts_missing: counts.is_none(),
        entry: RunEntry {
            id: r.get(0)?,
            name: r.get(1)?,
            manifest: PathBuf::from(r.get::<_, String>(2)?),
            run_dir: PathBuf::from(r.get::<_, String>(3)?),
            started_at,
            finished_at,
            duration_seconds: ((end - started_at).num_milliseconds().max(0) as f64) / 1000.0,
            status,
            orphaned,
            exit_code: r
                .get::<_, Option<i64>>(7)?
                .and_then(|c| u8::try_from(c).ok()),
            steps,
            total_tokens: total_u64(r.get(12)?),
            usd: usd.dollars(),
            usd_nanos: usd.0,
            resumed_from: r.get(11)?,
        },
    })
}

/// The statuses of a run's steps as their rows stand (each step's latest attempt).
fn step_counts(ledger: &crate::ledger::Ledger, run_id: &str) -> rusqlite::Result<StepCounts> {
    let mut stmt = ledger.conn().prepare_cached(
        "SELECT status, COUNT(*) FROM steps AS s WHERE run_id = ?1
           AND attempt = (SELECT MAX(attempt) FROM steps WHERE run_id = s.run_id AND step = s.step)
         GROUP BY status",
    )?;
    let rows = stmt.query_map(params![run_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let (status, n) = row?;
        counts.insert(status, u32::try_from(n).unwrap_or(0));
    }
    Ok(StepCounts(counts))
}

/// A time as the ledger stores it (RFC 3339).
pub(crate) fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
