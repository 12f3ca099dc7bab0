//! What the ledger keeps so that a run can be resumed: each step's definition hash, the link from
//! a resumed run to the one it continues, and the queries `orch resume` asks (a run's steps, the
//! sessions Claude Code already has, what a chain of resumed runs spent).
//!
//! It owns the meaning of "the same step" across runs: its key (its label, `job [2/3]`) and
//! the hash of its resolved definition ([`definition_hash`]). It never decides what to re-run:
//! `crate::commands::resume` does.

use std::collections::HashMap;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::Ledger;
use super::budget::Spend;
use super::store::{total_nanos, total_u64};
use crate::manifest::Job;
use crate::plan::{Action, Step};

/// The flags of an agent's argv that do not change what a step does, with the value each takes:
/// the session (a new run, a known session, a fork pick them) and the dollar cap (a resume may
/// raise a budget without changing a completed step).
const UNHASHED_FLAGS: &[(&str, bool)] = &[
    ("--session-id", true),
    ("--resume", true),
    ("--fork-session", false),
    ("--max-budget-usd", true),
];

/// The hash of a step's resolved definition: its argv template (for an agent, Claude Code's
/// arguments without the program, the session and the dollar cap), its job's environment,
/// working folder, `needs`, `if`, fan-out and outputs. Two runs of an unchanged manifest give
/// their steps the same hashes; budgets, timeouts and descriptions are not part of it.
pub fn definition_hash(step: &Step, job: &Job) -> String {
    let mut text = String::new();
    let argv: Vec<&str> = match &step.action {
        Action::Agent { .. } => {
            // The program (orch itself for --simulate, or claude) comes before "-p".
            let start = step.argv.iter().position(|a| a == "-p").unwrap_or(0);
            let mut kept = Vec::new();
            let mut args = step.argv[start..].iter();
            while let Some(a) = args.next() {
                match UNHASHED_FLAGS.iter().find(|(flag, _)| flag == a) {
                    Some((_, true)) => {
                        args.next();
                    }
                    Some((_, false)) => {}
                    None => kept.push(a.as_str()),
                }
            }
            kept
        }
        _ => step.argv.iter().map(String::as_str).collect(),
    };
    let mut add = |part: &str| {
        text.push_str(part);
        text.push('\u{1f}');
    };
    add(&format!("{}/{}", step.index, step.of));
    for a in argv {
        add(a);
    }
    add("\u{1e}env");
    // The simulated agent's state folder is orch's own plumbing, not the job's.
    for (k, v) in job
        .env
        .iter()
        .filter(|(k, _)| k != crate::agent::simulate::STATE_DIR_ENV)
    {
        add(&format!("{k}={v}"));
    }
    add(&job.workspace.to_string_lossy());
    add(&format!(
        "{:?}|{:?}|{:?}|{:?}|{}",
        job.needs, job.condition, job.fan_out, job.outputs, job.continue_on_failure
    ));
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text.as_bytes())
        .simple()
        .to_string()
}

/// A run as `orch resume` needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub manifest: PathBuf,
    pub run_dir: PathBuf,
    /// `running`, `completed`, `failed`, `budget_stop`, `interrupted`, `dead`, ...
    pub status: String,
    pub resumed_from: Option<String>,
}

/// A step of a past run as the ledger recorded it (a step that never launched has no row).
#[derive(Clone, Debug, PartialEq)]
pub struct StepInfo {
    pub step: usize,
    /// The job instance's name.
    pub job: String,
    pub label: String,
    /// `completed`, `failed`, `killed` (its orch died), ...
    pub status: String,
    pub session_id: Option<String>,
    pub log: Option<PathBuf>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl Ledger {
    /// Stores the definition hash of each step of a run that is starting (`(key, hash)`).
    pub fn save_definitions(
        &self,
        run_id: &str,
        defs: &[(String, String)],
    ) -> rusqlite::Result<()> {
        self.immediate(|l| {
            for (key, hash) in defs {
                l.conn().execute(
                    "INSERT OR REPLACE INTO step_defs (run_id, key, hash) VALUES (?1, ?2, ?3)",
                    params![run_id, key, hash],
                )?;
            }
            Ok(())
        })
    }

    /// The definition hashes of a run's steps, by key.
    pub fn definitions(&self, run_id: &str) -> rusqlite::Result<HashMap<String, String>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT key, hash FROM step_defs WHERE run_id = ?1")?;
        let rows = stmt.query_map(params![run_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Links a run to the one it resumes.
    pub fn set_resumed_from(&self, run_id: &str, from: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE runs SET resumed_from = ?2 WHERE id = ?1",
            params![run_id, from],
        )?;
        Ok(())
    }

    /// A run by id.
    pub fn run_info(&self, run_id: &str) -> rusqlite::Result<Option<RunInfo>> {
        self.conn()
            .query_row(
                "SELECT id, manifest, run_dir, status, resumed_from FROM runs WHERE id = ?1",
                params![run_id],
                run_info_of,
            )
            .optional()
    }

    /// The newest run that is not still going (ties broken by id, which starts with the time).
    pub fn latest_run(&self) -> rusqlite::Result<Option<RunInfo>> {
        self.conn()
            .query_row(
                "SELECT id, manifest, run_dir, status, resumed_from FROM runs
                 WHERE status NOT IN ('running', 'reconciling')
                 ORDER BY started_at DESC, id DESC LIMIT 1",
                [],
                run_info_of,
            )
            .optional()
    }

    /// The newest runs' ids, newest first, for an error message.
    pub fn recent_runs(&self, n: usize) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1")?;
        let rows = stmt.query_map(params![n as i64], |r| r.get(0))?;
        rows.collect()
    }

    /// Every step of a run the ledger has a row for, in step order: a retried step as its last
    /// attempt left it.
    pub fn run_steps(&self, run_id: &str) -> rusqlite::Result<Vec<StepInfo>> {
        let mut stmt = self.conn().prepare(
            "SELECT step, job, label, status, session_id, log, started_at, finished_at
             FROM steps AS s WHERE run_id = ?1
               AND attempt = (SELECT MAX(attempt) FROM steps WHERE run_id = s.run_id AND step = s.step)
             ORDER BY step",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok(StepInfo {
                step: r.get::<_, i64>(0)?.max(0) as usize,
                job: r.get(1)?,
                label: r.get(2)?,
                status: r.get(3)?,
                session_id: r.get(4)?,
                log: r.get::<_, Option<String>>(5)?.map(PathBuf::from),
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
            })
        })?;
        rows.collect()
    }

    /// Every session Claude Code reported a result for, with its saved totals (JSON).
    pub fn sessions(&self) -> rusqlite::Result<HashMap<String, String>> {
        let mut stmt = self.conn().prepare("SELECT id, totals FROM sessions")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// What a run and every run it resumed (following `resumed_from`) spent.
    pub fn chain_spend(&self, run_id: &str) -> rusqlite::Result<Spend> {
        let mut total = Spend::default();
        let mut next = Some(run_id.to_string());
        let mut seen = std::collections::HashSet::new();
        while let Some(id) = next.take() {
            if !seen.insert(id.clone()) {
                break;
            }
            let (tokens, usd): (f64, f64) = self.conn().query_row(
                "SELECT TOTAL(input) + TOTAL(output) + TOTAL(cache_read) + TOTAL(cache_creation),
                        TOTAL(usd_nanos)
                 FROM usage WHERE run_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            total.tokens = total.tokens.saturating_add(total_u64(tokens));
            total.usd = total.usd.saturating_add(total_nanos(usd)).non_negative();
            next = self.run_info(&id)?.and_then(|r| r.resumed_from);
        }
        Ok(total)
    }
}

fn run_info_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    Ok(RunInfo {
        id: r.get(0)?,
        manifest: PathBuf::from(r.get::<_, String>(1)?),
        run_dir: PathBuf::from(r.get::<_, String>(2)?),
        status: r.get(3)?,
        resumed_from: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::store::RunRow;
    use chrono::Utc;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        (dir, l)
    }

    fn begin(l: &Ledger, id: &str) {
        l.begin_run(&RunRow {
            id: id.into(),
            name: "n".into(),
            manifest: "/m/orch.toml".into(),
            run_dir: format!("/m/.orch/runs/{id}").into(),
            started_at: Utc::now(),
        })
        .unwrap();
    }

    #[test]
    fn definitions_and_links_round_trip() {
        let (_d, l) = ledger();
        begin(&l, "r1");
        l.save_definitions(
            "r1",
            &[("a".into(), "h1".into()), ("b".into(), "h2".into())],
        )
        .unwrap();
        assert_eq!(l.definitions("r1").unwrap()["b"], "h2");
        assert!(l.definitions("r2").unwrap().is_empty());
        l.finish_run("r1", "failed", 1, None, Utc::now()).unwrap();
        begin(&l, "r2");
        l.set_resumed_from("r2", "r1").unwrap();
        // A run still going is not the latest to resume.
        assert_eq!(l.latest_run().unwrap().unwrap().id, "r1");
        l.finish_run("r2", "completed", 0, None, Utc::now())
            .unwrap();
        let latest = l.latest_run().unwrap().unwrap();
        assert_eq!(latest.id, "r2");
        assert_eq!(latest.resumed_from.as_deref(), Some("r1"));
        assert_eq!(l.recent_runs(5).unwrap(), ["r2", "r1"]);
    }

    #[test]
    fn a_chain_of_resumed_runs_adds_its_spend() {
        let (_d, l) = ledger();
        begin(&l, "r1");
        begin(&l, "r2");
        l.set_resumed_from("r2", "r1").unwrap();
        let d = crate::ledger::Delta {
            input: 10,
            output: 5,
            cache_read: 0,
            cache_creation: 0,
            usd: crate::ledger::Nanos(250_000_000),
        };
        l.record("r1", 0, None, crate::ledger::Kind::Final, &d, Utc::now())
            .unwrap();
        l.record("r2", 0, None, crate::ledger::Kind::Final, &d, Utc::now())
            .unwrap();
        let s = l.chain_spend("r2").unwrap();
        assert_eq!((s.tokens, s.usd.0), (30, 500_000_000));
        assert_eq!(l.chain_spend("r1").unwrap().tokens, 15);
    }
}
