//! Crash reconciliation: a run whose orch died is claimed by one reconciler, its step logs are
//! re-read, what they hold that the ledger does not is added as `reconciled` rows, and the run is
//! marked `dead`.
//!
//! Owns the claim protocol that keeps concurrent reconcilers (several orchs, `orch ledger`,
//! starting at once) from adding a run twice: claim in a `BEGIN IMMEDIATE` transaction, read the
//! logs outside any transaction (a big log must not hold the write lock), then add the rows and
//! mark the run dead in a second transaction that first checks the claim is still held. A
//! reconciler that dies mid-way added nothing; its claim is taken over once it is gone.
//!
//! It must never lower a step's recorded spend from a log that lacks the final `result` (a log
//! with a gap is shorter than what the ledger recorded), and never hold a whole log in memory:
//! logs are read line by line, and a line longer than the live framing's cap is skipped without
//! being kept.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::nanos::Nanos;
use super::store::{Delta, Holder, Kind, Ledger, LoggedStep};
use crate::agent::accounting::{Accounting, SessionTotals, StepUsage};
use crate::agent::stream;

/// Longest line parsed; longer ones are skipped. The same cap as the live framing's
/// (`runner::executor::MAX_LINE_BYTES`), so a reconciler sees what the live run saw.
pub const MAX_LINE_BYTES: usize = 64 << 20;
/// Read size for the logs.
const READ_BUF: usize = 256 * 1024;

/// Marks every run whose orch died as `dead`, after adding what its step logs hold that the
/// ledger does not. Returns the ids of the runs this call reconciled (a run another reconciler
/// claimed is left to it).
pub fn reconcile(ledger: &Ledger, now: DateTime<Utc>) -> rusqlite::Result<Vec<String>> {
    let me = Holder::me();
    let mut done = Vec::new();
    for run_id in ledger.orphaned_runs(me)? {
        if !ledger.claim(&run_id, me)? {
            continue;
        }
        let steps = ledger.agent_steps(&run_id)?;
        let from_logs = read_logs(&ledger.path, &run_id, &steps);
        let finished = ledger.immediate(|l| {
            if !l.holds_claim(&run_id, me)? {
                return Ok(false);
            }
            for (step, usage) in &from_logs {
                let (tokens, usd) = l.step_spend(&run_id, *step)?;
                let missing = Delta::between(&tokens, usd, &usage.tokens, usage.cost_usd);
                // Without Claude Code's final `result` the log's figures are an estimate from the
                // lines it holds, and a log may have gaps (writes failed on a full disk): it may
                // then add what the ledger misses, never take away what the ledger recorded.
                let lowers = missing.tokens() < 0 || missing.usd < Nanos::ZERO;
                let keep_ledger = usage.is_estimate && lowers;
                if !missing.is_zero() && !keep_ledger {
                    let model = usage.model.as_deref();
                    l.record(&run_id, *step, model, Kind::Reconciled, &missing, now)?;
                }
            }
            l.mark_dead(&run_id, now)?;
            Ok(true)
        })?;
        if finished {
            done.push(run_id);
        }
    }
    Ok(done)
}

/// Each agent step's usage as its log tells it, sessions carried from step to step.
fn read_logs(ledger_path: &Path, run_id: &str, steps: &[LoggedStep]) -> Vec<(usize, StepUsage)> {
    let mut sessions: HashMap<String, SessionTotals> = HashMap::new();
    let mut out: Vec<(usize, StepUsage)> = Vec::with_capacity(steps.len());
    for logged in steps {
        let session = &logged.session_id;
        let prior = if logged.resume {
            session.as_ref().and_then(|s| sessions.get(s).cloned())
        } else {
            None
        };
        let mut accounting = Accounting::new(prior);
        let log = locate(ledger_path, run_id, &logged.log);
        // A missing or unreadable log holds nothing to add; what was read before an error counts.
        if let Ok(file) = std::fs::File::open(&log) {
            let reader = BufReader::with_capacity(READ_BUF, file);
            let _ = for_each_line(reader, MAX_LINE_BYTES, |line| {
                if let Some(event) = stream::parse_line(line) {
                    accounting.observe(&event);
                }
            });
        }
        if let (Some(id), Some(totals)) = (session, accounting.session_totals()) {
            sessions.insert(id.clone(), totals);
        }
        let usage = accounting.usage().clone();
        // A retried step has a log per attempt; the ledger holds their sum.
        match out.last_mut() {
            Some((step, sum)) if *step == logged.step => {
                sum.tokens.add(&usage.tokens);
                sum.cost_usd += usage.cost_usd;
                sum.is_estimate |= usage.is_estimate;
            }
            _ => out.push((logged.step, usage)),
        }
    }
    out
}

/// Where a step's log is. Ledgers written before state folders were made absolute may hold a
/// relative path, meaningful only from the folder that orch ran in: then the log is looked for
/// at its usual place beside the ledger (`runs/<run-id>/logs/<file>`).
fn locate(ledger_path: &Path, run_id: &str, log: &Path) -> PathBuf {
    if log.is_absolute() || log.exists() {
        return log.to_path_buf();
    }
    let beside = ledger_path
        .parent()
        .zip(log.file_name())
        .map(|(dir, file)| dir.join("runs").join(run_id).join("logs").join(file));
    match beside {
        Some(path) if path.exists() => path,
        _ => log.to_path_buf(),
    }
}

/// Calls `each` with every line of `reader` (without its newline), holding at most `cap` bytes
/// of a line: a longer line is skipped whole, as the live framing skips it. A last line without
/// a newline counts.
pub fn for_each_line(
    mut reader: impl BufRead,
    cap: usize,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let newline = memchr::memchr(b'\n', buf);
        let part = &buf[..newline.unwrap_or(buf.len())];
        if !skipping {
            if line.len() + part.len() > cap {
                skipping = true;
                // Give the memory back: the line is dropped, not kept.
                line = Vec::new();
            } else if newline.is_some() && line.is_empty() {
                // The whole line is in the read buffer: no copy.
                each(part);
            } else {
                line.extend_from_slice(part);
            }
        }
        let used = match newline {
            Some(i) => {
                if !skipping && !line.is_empty() {
                    each(&line);
                }
                line.clear();
                skipping = false;
                i + 1
            }
            None => buf.len(),
        };
        reader.consume(used);
    }
    if !skipping && !line.is_empty() {
        each(&line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize, buf: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let reader = BufReader::with_capacity(buf, input);
        for_each_line(reader, cap, |l| got.push(l.to_vec())).unwrap();
        got
    }

    #[test]
    fn lines_are_split_across_reads_and_the_last_needs_no_newline() {
        let input = b"one\ntwo two\n\nthree";
        for buf in [1, 2, 3, 5, 64] {
            assert_eq!(
                lines(input, 100, buf),
                vec![
                    b"one".to_vec(),
                    b"two two".to_vec(),
                    b"".to_vec(),
                    b"three".to_vec()
                ],
                "read size {buf}"
            );
        }
    }

    #[test]
    fn a_line_over_the_cap_is_skipped_whole_and_the_next_is_kept() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 50));
        input.extend_from_slice(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'y', 50));
        for buf in [4, 16, 200] {
            assert_eq!(
                lines(&input, 10, buf),
                vec![b"short".to_vec(), b"after".to_vec()],
                "read size {buf}"
            );
        }
        // Exactly the cap is kept.
        assert_eq!(lines(b"0123456789\n", 10, 3), vec![b"0123456789".to_vec()]);
    }

    /// A ledger with one run whose orch is gone (its pid's start time no longer matches).
    fn ledger_with_a_dead_run(dir: &Path) -> Ledger {
        let ledger = Ledger::open(&dir.join("ledger.sqlite")).unwrap();
        ledger
            .begin_run(&super::super::store::RunRow {
                id: "r1".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: dir.join("runs/r1"),
                started_at: Utc::now(),
            })
            .unwrap();
        ledger
            .conn()
            .execute("UPDATE runs SET pid_start = pid_start + 1", [])
            .unwrap();
        ledger
    }

    #[test]
    fn a_claim_excludes_other_reconcilers_until_its_holder_dies() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_a_dead_run(dir.path());
        let me = Holder::me();
        let start = me.start.expect("/proc tells the start time");
        // A live process that is not us (pid 1 runs as long as the machine does).
        let other = Holder {
            pid: 1,
            start: super::super::store::process_start(1),
        };
        assert!(other.alive());
        let gone = Holder {
            pid: me.pid,
            start: Some(start + 1),
        };
        assert_eq!(ledger.orphaned_runs(me).unwrap(), vec!["r1".to_string()]);
        // A claimer that then dies (the start time of `gone` matches no process).
        assert!(ledger.claim("r1", gone).unwrap());
        assert!(!ledger.holds_claim("r1", me).unwrap());
        // Its claim is taken over...
        assert!(ledger.claim("r1", me).unwrap());
        assert!(ledger.holds_claim("r1", me).unwrap());
        assert!(!ledger.holds_claim("r1", gone).unwrap());
        // ...and a live claim is not.
        assert!(!ledger.claim("r1", other).unwrap());
        assert!(ledger.orphaned_runs(other).unwrap().is_empty());
        assert_eq!(
            reconcile(&ledger, Utc::now()).unwrap(),
            vec!["r1".to_string()]
        );
        assert_eq!(ledger.run_status("r1").unwrap().as_deref(), Some("dead"));
        assert!(reconcile(&ledger, Utc::now()).unwrap().is_empty());
    }

    #[test]
    fn a_live_run_is_never_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        ledger
            .begin_run(&super::super::store::RunRow {
                id: "live".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: dir.path().join("runs/live"),
                started_at: Utc::now(),
            })
            .unwrap();
        // Its orch is another live process (pid 1 runs as long as the machine does).
        ledger
            .conn()
            .execute(
                "UPDATE runs SET pid = 1, pid_start = ?1",
                [super::super::store::process_start(1).map(|s| s as i64)],
            )
            .unwrap();
        assert!(ledger.orphaned_runs(Holder::me()).unwrap().is_empty());
        assert!(!ledger.claim("live", Holder::me()).unwrap());
        assert_eq!(
            ledger.run_status("live").unwrap().as_deref(),
            Some("running")
        );
    }

    /// A service (`orch run --schedule`) runs one run after another in one process. A run whose
    /// end did not land (the ledger was locked past the wait) is left `running` with this process
    /// as its owner; the next run's start must reconcile it, or its spend stays out of the ledger
    /// (and out of the window budget) for as long as the service lives.
    #[test]
    fn an_earlier_run_of_this_process_left_running_is_reconciled_by_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        ledger
            .begin_run(&super::super::store::RunRow {
                id: "earlier".into(),
                name: "n".into(),
                manifest: "m".into(),
                run_dir: dir.path().join("runs/earlier"),
                started_at: Utc::now(),
            })
            .unwrap();
        assert_eq!(
            reconcile(&ledger, Utc::now()).unwrap(),
            vec!["earlier".to_string()]
        );
        assert_eq!(
            ledger.run_status("earlier").unwrap().as_deref(),
            Some("dead")
        );
    }

    /// A dead run whose one agent step logged `fixture` and has `recorded` in the ledger;
    /// returns the step's spend after reconciliation.
    fn reconciled_spend(fixture: &str, recorded: &Delta) -> (u64, f64) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_a_dead_run(dir.path());
        let log = dir.path().join("001-a.log");
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/claude-code-2.1.331"
        );
        std::fs::copy(Path::new(fixtures).join(fixture), &log).unwrap();
        let step = super::super::store::StepRow {
            step: 0,
            job: "a".into(),
            label: "a".into(),
            command: None,
            session_id: None,
            resume: false,
            is_agent: true,
            log,
            attempt: 1,
        };
        ledger.begin_step("r1", &step, Utc::now()).unwrap();
        ledger
            .record("r1", 0, None, Kind::Final, recorded, Utc::now())
            .unwrap();
        assert_eq!(
            reconcile(&ledger, Utc::now()).unwrap(),
            vec!["r1".to_string()]
        );
        let (tokens, usd) = ledger.step_spend("r1", 0).unwrap();
        (tokens.total(), usd)
    }

    #[test]
    fn a_log_without_a_result_never_lowers_what_the_ledger_recorded() {
        let recorded = Delta {
            input: 1_000_000,
            usd: Nanos::from_usd(5.0),
            ..Delta::default()
        };
        let (tokens, usd) = reconciled_spend("killed-by-sigterm-no-result.jsonl", &recorded);
        assert_eq!(tokens, 1_000_000);
        assert!((usd - 5.0).abs() < 1e-12, "{usd}");
    }

    #[test]
    fn a_log_with_a_result_corrects_the_ledger_either_way() {
        let recorded = Delta {
            input: 1_000_000,
            usd: Nanos::from_usd(5.0),
            ..Delta::default()
        };
        let (tokens, usd) = reconciled_spend("text-only.jsonl", &recorded);
        assert!(tokens < 1_000_000 && tokens > 0, "{tokens}");
        assert!(usd < 5.0 && usd > 0.0, "{usd}");
    }

    /// A retried step has a log per attempt: reconciliation compares their sum with what the
    /// ledger holds for the step, so two complete attempts recorded in full add nothing.
    #[test]
    fn a_retried_step_is_reconciled_over_all_its_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_with_a_dead_run(dir.path());
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/claude-code-2.1.331"
        );
        let mut per_attempt = None;
        for attempt in 1..=2u32 {
            let log = dir.path().join(format!("001-a.a{attempt}.log"));
            std::fs::copy(Path::new(fixtures).join("text-only.jsonl"), &log).unwrap();
            let step = super::super::store::StepRow {
                step: 0,
                job: "a".into(),
                label: "a".into(),
                command: None,
                session_id: None,
                resume: false,
                is_agent: true,
                log: log.clone(),
                attempt,
            };
            ledger.begin_step("r1", &step, Utc::now()).unwrap();
            // What the live run recorded for the attempt: exactly what its log says.
            let logged = read_logs(
                &ledger.path,
                "r1",
                &[LoggedStep {
                    step: 0,
                    session_id: None,
                    resume: false,
                    log,
                }],
            );
            let usage = &logged[0].1;
            let delta = Delta::between(&Default::default(), 0.0, &usage.tokens, usage.cost_usd);
            ledger
                .record("r1", 0, None, Kind::Final, &delta, Utc::now())
                .unwrap();
            per_attempt = Some((usage.tokens.total(), usage.cost_usd));
        }
        let (tokens, usd) = per_attempt.unwrap();
        assert!(tokens > 0);
        assert_eq!(
            reconcile(&ledger, Utc::now()).unwrap(),
            vec!["r1".to_string()]
        );
        let (after, after_usd) = ledger.step_spend("r1", 0).unwrap();
        assert_eq!(after.total(), 2 * tokens, "nothing added, nothing taken");
        assert!((after_usd - 2.0 * usd).abs() < 1e-9, "{after_usd}");
        let attempts: Vec<i64> = ledger
            .conn()
            .prepare("SELECT attempt FROM usage WHERE run_id = 'r1' ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(attempts, [1, 2], "each usage row names its attempt");
    }

    #[test]
    fn a_relative_log_of_an_old_ledger_is_found_beside_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("runs/r1/logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("001-a.log"), "").unwrap();
        let ledger = dir.path().join("ledger.sqlite");
        let found = locate(
            &ledger,
            "r1",
            Path::new("elsewhere/.orch/runs/r1/logs/001-a.log"),
        );
        assert_eq!(found, logs.join("001-a.log"));
    }
}
