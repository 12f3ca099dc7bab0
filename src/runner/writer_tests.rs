//! The writer against real SQLite files, with a second connection holding the write lock the way
//! another orch (or a person's `sqlite3`) can.

use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::Connection;

use super::*;
use crate::agent::stream::TokenCounts;
use crate::ledger::Nanos;
use crate::ledger::store::RunRow;

fn ledger(name: &str) -> (Ledger, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("orch-writer-{name}-"))
        .tempdir()
        .expect("temp dir");
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).expect("open");
    ledger
        .begin_run(&RunRow {
            id: "r".into(),
            name: "n".into(),
            manifest: "m".into(),
            run_dir: dir.path().into(),
            started_at: Utc::now(),
        })
        .expect("begin run");
    (ledger, dir)
}

fn usage(step: StepId, output: i64) -> Write {
    Write::Usage {
        step,
        model: None,
        kind: Kind::Estimate,
        delta: Delta {
            output,
            ..Delta::default()
        },
        at: Utc::now(),
    }
}

/// Yields until `ok` holds, failing with `what` past `deadline`.
async fn until(deadline: Instant, what: &str, ok: impl Fn() -> bool) {
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::task::yield_now().await;
    }
}

fn locked(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).expect("second connection");
    c.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_queued_behind_a_held_lock_land_once_it_is_released() {
    let (ledger, dir) = ledger("busy");
    let path = dir.path().join("ledger.sqlite");
    let holder = locked(&path);
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    let sent = Instant::now();
    for i in 0..100 {
        w.send(usage(0, i));
    }
    // Sending never waited for the lock.
    assert!(
        sent.elapsed() < Duration::from_millis(100),
        "{:?}",
        sent.elapsed()
    );
    match tokio::time::timeout(Duration::from_secs(5), w.notices.recv()).await {
        Ok(Some(Notice::Failing { error, .. })) => assert!(error.contains("locked"), "{error}"),
        other => panic!("expected a failing notice, got {other:?}"),
    }
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        holder.execute_batch("COMMIT").expect("release");
    });
    let landing = w
        .close(Duration::from_secs(10), Duration::from_secs(1))
        .await;
    release.join().expect("holder");
    assert_eq!(
        (landing.landed, landing.not_landed),
        (100, 0),
        "{landing:?}"
    );
    let check = Ledger::open(&path).expect("reopen");
    let (tokens, _) = check.step_spend("r", 0).expect("spend");
    assert_eq!(tokens.output, (0..100).sum::<i64>() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_land_in_the_wait_at_the_end_is_counted_not_lost_silently() {
    let (ledger, dir) = ledger("stuck");
    let path = dir.path().join("ledger.sqlite");
    let _holder = locked(&path);
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    w.send(usage(0, 5));
    w.send(Write::FinishRun {
        status: "completed",
        exit_code: 0,
        step_counts: "{}".into(),
        at: Utc::now(),
    });
    let closed = Instant::now();
    let landing = w
        .close(Duration::from_millis(300), Duration::from_millis(300))
        .await;
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "{:?}",
        closed.elapsed()
    );
    assert_eq!((landing.landed, landing.not_landed), (0, 2), "{landing:?}");
    assert!(landing.last_error.is_some_and(|e| e.contains("locked")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_commit_takes_everything_queued_in_one_transaction() {
    let (ledger, dir) = ledger("group");
    let path = dir.path().join("ledger.sqlite");
    // While the lock is held the queue grows; once released it lands as one group, which the
    // data_version of another connection sees as a single change.
    let holder = locked(&path);
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    for i in 0..50 {
        w.send(usage(1, i));
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), w.notices.recv()).await;
    holder.execute_batch("COMMIT").expect("release");
    let watcher = Connection::open(&path).expect("watcher");
    let version = |c: &Connection| -> i64 {
        c.query_row("PRAGMA data_version", [], |r| r.get(0))
            .expect("data_version")
    };
    let before = version(&watcher);
    let landing = w
        .close(Duration::from_secs(5), Duration::from_secs(1))
        .await;
    assert_eq!(landing.landed, 50);
    // The 50 estimates of one step are one row, their exact sum.
    let (rows, output): (i64, i64) = watcher
        .query_row(
            "SELECT COUNT(*), SUM(output) FROM usage WHERE step = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!((rows, output), (1, (0..50).sum::<i64>()));
    assert_eq!(
        version(&watcher) - before,
        1,
        "one commit for the whole group"
    );
}

/// A usage write SQLite refuses for good is dropped; the run's end must then not land either, so
/// that the run stays `running` and the next orch adds the dropped spend back from the step log.
/// (Before: the run was marked `completed`, nothing ever reconciled it, the spend was lost.)
#[tokio::test(flavor = "multi_thread")]
async fn a_write_refused_for_good_leaves_the_run_to_reconciliation_which_adds_it_back() {
    let (ledger, dir) = ledger("refused");
    let path = dir.path().join("ledger.sqlite");
    let log = dir.path().join("001-a.log");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/claude-code-2.1.331/text-only.jsonl"
    );
    std::fs::copy(fixture, &log).expect("copy the step log");
    // What the log says the step spent, as reconciliation reads it.
    let mut accounting = crate::agent::accounting::Accounting::new(None);
    for line in std::fs::read_to_string(&log).expect("log").lines() {
        if let Some(event) = crate::agent::stream::parse_line(line.as_bytes()) {
            accounting.observe(&event);
        }
    }
    let logged = accounting.usage().clone();
    assert!(!logged.is_estimate && logged.tokens.total() > 0);
    // Another writer's trigger: SQLite refuses every `final` row for good (a constraint).
    Connection::open(&path)
        .expect("second connection")
        .execute_batch(
            "CREATE TRIGGER refuse_final BEFORE INSERT ON usage WHEN NEW.kind = 'final'
             BEGIN SELECT RAISE(ABORT, 'refused for good'); END;",
        )
        .expect("trigger");
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    w.send(Write::BeginStep {
        row: StepRow {
            step: 0,
            job: "a".into(),
            label: "a".into(),
            command: None,
            session_id: None,
            resume: false,
            is_agent: true,
            log: log.clone(),
            attempt: 1,
        },
        at: Utc::now(),
    });
    let estimate = TokenCounts {
        output: 3,
        ..TokenCounts::default()
    };
    w.send(Write::Usage {
        step: 0,
        model: None,
        kind: Kind::Estimate,
        delta: Delta::between(&TokenCounts::default(), 0.0, &estimate, 0.001),
        at: Utc::now(),
    });
    w.send(Write::Usage {
        step: 0,
        model: None,
        kind: Kind::Final,
        delta: Delta::between(&estimate, 0.001, &logged.tokens, logged.cost_usd),
        at: Utc::now(),
    });
    w.send(Write::FinishStep {
        step: 0,
        status: "completed",
        is_agent: true,
        at: Utc::now(),
    });
    w.send(Write::FinishRun {
        status: "completed",
        exit_code: 0,
        step_counts: "{}".into(),
        at: Utc::now(),
    });
    let landing = w
        .close(Duration::from_secs(5), Duration::from_secs(1))
        .await;
    assert_eq!(landing.rejected, 1, "{landing:?}");
    let check = Ledger::open(&path).expect("reopen");
    assert_eq!(
        check.run_status("r").expect("status").as_deref(),
        Some("running"),
        "a run that lost a write must be left to reconciliation: {landing:?}"
    );
    assert_eq!(landing.not_landed, 1, "the run's end: {landing:?}");
    // The next orch: this run's orch is gone (start time no longer matches), the fault is gone.
    check
        .conn()
        .execute_batch("DROP TRIGGER refuse_final; UPDATE runs SET pid_start = pid_start + 1;")
        .expect("next start");
    assert_eq!(
        crate::ledger::reconcile(&check, Utc::now()).expect("reconcile"),
        ["r"]
    );
    let (tokens, usd) = check.step_spend("r", 0).expect("spend");
    assert_eq!(tokens.total(), logged.tokens.total());
    assert_eq!(Nanos::from_usd(usd), Nanos::from_usd(logged.cost_usd));
}

/// After a write refused for good, the rest of its group lands one by one; a write that fails
/// there for a passing reason (a full disk) is kept and retried, not dropped as refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_passing_failure_after_a_refused_write_is_retried_not_dropped() {
    let (ledger, dir) = ledger("refused-then-full");
    let path = dir.path().join("ledger.sqlite");
    Connection::open(&path)
        .expect("second connection")
        .execute_batch(
            "CREATE TRIGGER refuse_final BEFORE INSERT ON usage WHEN NEW.kind = 'final'
             BEGIN SELECT RAISE(ABORT, 'refused for good'); END;",
        )
        .expect("trigger");
    // The writer's ledger may not grow: a big row fails with SQLITE_FULL, as on a full disk.
    let pages: i64 = ledger
        .conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page count");
    ledger
        .conn()
        .pragma_update(None, "max_page_count", pages)
        .expect("cap the pages");
    // Both writes queue behind a held lock, so they meet in one group.
    let holder = locked(&path);
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    w.send(Write::Usage {
        step: 0,
        model: None,
        kind: Kind::Final,
        delta: Delta {
            output: 7,
            ..Delta::default()
        },
        at: Utc::now(),
    });
    w.send(Write::SaveSession {
        id: "s".into(),
        job: "a".into(),
        totals: "x".repeat(200_000),
        at: Utc::now(),
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), w.notices.recv()).await;
    holder.execute_batch("COMMIT").expect("release");
    let landing = w
        .close(Duration::from_millis(300), Duration::from_millis(300))
        .await;
    assert_eq!(
        (landing.rejected, landing.not_landed),
        (1, 1),
        "only the refused write is dropped; the one the full disk held back is still queued: {landing:?}"
    );
}

fn delta(output: i64, usd: f64) -> Delta {
    Delta {
        input: 1,
        output,
        cache_read: 7,
        cache_creation: 3,
        usd: crate::ledger::Nanos::from_usd(usd),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_sums_the_usage_of_each_step_model_and_kind_into_one_row_exactly() {
    let (ledger, dir) = ledger("coalesce");
    let path = dir.path().join("ledger.sqlite");
    let holder = locked(&path);
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    let at = Utc::now();
    let step = |step: StepId| StepRow {
        step,
        job: format!("j{step}"),
        label: format!("j{step}"),
        command: None,
        session_id: None,
        resume: false,
        is_agent: true,
        log: dir.path().join("log"),
        attempt: 1,
    };
    // Two steps streaming estimates of two models, interleaved, then each one's final: the
    // reversal of its estimates and Claude Code's figure. A tenth of a cent is no exact float.
    w.send(Write::BeginStep { row: step(0), at });
    w.send(Write::BeginStep { row: step(1), at });
    let mut last = at;
    for i in 0..200i64 {
        last = at + chrono::Duration::milliseconds(i);
        for (s, model) in [(0, "sonnet"), (1, "sonnet"), (1, "haiku")] {
            w.send(Write::Usage {
                step: s,
                model: Some(model.into()),
                kind: Kind::Estimate,
                delta: delta(i, 0.001),
                at: last,
            });
        }
    }
    for s in [0, 1] {
        w.send(Write::Usage {
            step: s,
            model: Some("sonnet".into()),
            kind: Kind::Final,
            delta: delta(5, 0.1),
            at: last,
        });
        w.send(Write::FinishStep {
            step: s,
            status: "completed",
            is_agent: true,
            at: last,
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), w.notices.recv()).await;
    holder.execute_batch("COMMIT").expect("release");
    let landing = w
        .close(Duration::from_secs(5), Duration::from_secs(1))
        .await;
    assert_eq!((landing.landed, landing.not_landed), (2 + 600 + 4, 0));
    let check = Ledger::open(&path).expect("reopen");
    let rows: Vec<(i64, String, String, i64, i64, i64, i64)> = check
        .conn()
        .prepare(
            "SELECT step, model, kind, output, input, usd_nanos, at_ms FROM usage
             ORDER BY step, model, kind",
        )
        .expect("query")
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let sum = (0..200).sum::<i64>();
    let ms = last.timestamp_millis();
    let est = |s: i64, m: &str| {
        (
            s,
            m.to_string(),
            "estimate".to_string(),
            sum,
            200,
            200_000_000,
            ms,
        )
    };
    let fin = |s: i64| {
        (
            s,
            "sonnet".to_string(),
            "final".to_string(),
            5,
            1,
            100_000_000,
            ms,
        )
    };
    assert_eq!(
        rows,
        [
            est(0, "sonnet"),
            fin(0),
            est(1, "haiku"),
            est(1, "sonnet"),
            fin(1)
        ]
    );
    // The step's figure is the sum of everything sent: 200 tenths of a cent and a dime, exactly.
    let (tokens, usd) = check.step_spend("r", 1).expect("spend");
    assert_eq!(tokens.output, (2 * sum + 5) as u64);
    assert_eq!(usd, 0.5);
    let status: String = check
        .conn()
        .query_row("SELECT status FROM steps WHERE step = 1", [], |r| r.get(0))
        .expect("status");
    assert_eq!(status, "completed");
}

/// Live estimates sent one after another, as a streaming agent's arrive, are one commit and one
/// row per step (they wait for the group window); an agent's end sent after them lands at once
/// with them, before the window is over: what the dispatcher counts as done is never held back.
/// A command's end, which carries no spend, waits for the window, or for the next step's start.
#[tokio::test(flavor = "multi_thread")]
async fn estimates_and_command_ends_wait_for_the_group_window_and_an_agent_end_or_a_start_lands_them()
 {
    let (ledger, dir) = ledger("window");
    let path = dir.path().join("ledger.sqlite");
    let watcher = Connection::open(&path).expect("watcher");
    let rows = |step: i64| -> (i64, i64, i64) {
        watcher
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(output), 0),
                 (SELECT COUNT(*) FROM steps WHERE step = ?1 AND status = 'completed')
                 FROM usage WHERE step = ?1",
                [step],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("rows")
    };
    let mut w = Writer::start(ledger, "r".into()).expect("start");
    // Step 0: estimates only. They land by themselves, once, as one row.
    for i in 1..=200 {
        w.send(usage(0, i));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    until(deadline, "the estimates never landed", || rows(0).0 > 0).await;
    assert_eq!(rows(0), (1, (1..=200).sum::<i64>(), 0));
    // Step 1: begun, estimates, ended. The end does not wait out the window.
    let row_of = |step| StepRow {
        step,
        job: "j".into(),
        label: "j".into(),
        command: None,
        session_id: None,
        resume: false,
        is_agent: true,
        log: dir.path().join(format!("{step}.log")),
        attempt: 1,
    };
    w.send(Write::BeginStep {
        row: row_of(1),
        at: Utc::now(),
    });
    let ended = Instant::now();
    for i in 1..=10 {
        w.send(usage(1, i));
    }
    w.send(Write::FinishStep {
        step: 1,
        status: "completed",
        is_agent: true,
        at: Utc::now(),
    });
    until(deadline, "the step's end never landed", || rows(1).2 > 0).await;
    let took = ended.elapsed();
    assert_eq!(rows(1), (1, 55, 1), "the estimates landed with the end");
    assert!(took < GROUP_WINDOW, "the end waited {took:?}");
    // Step 2: a command, begun and ended. Its start lands at once; its end, on which no spend
    // rides, waits for the window ...
    let started = |step: i64| -> bool {
        watcher
            .query_row("SELECT COUNT(*) FROM steps WHERE step = ?1", [step], |r| {
                r.get::<_, i64>(0)
            })
            .expect("started")
            > 0
    };
    let command_start = |step| Write::BeginStep {
        row: StepRow {
            is_agent: false,
            ..row_of(step)
        },
        at: Utc::now(),
    };
    let command_end = |step| Write::FinishStep {
        step,
        status: "completed",
        is_agent: false,
        at: Utc::now(),
    };
    w.send(command_start(2));
    until(deadline, "the command's start never landed", || started(2)).await;
    let sent = Instant::now();
    w.send(command_end(2));
    until(deadline, "the command's end never landed", || rows(2).2 > 0).await;
    let took = sent.elapsed();
    assert!(
        took >= GROUP_WINDOW,
        "the command's end landed after {took:?}"
    );
    // ... unless a step starts after it: that start lands the end with it.
    w.send(command_start(3));
    until(deadline, "the command's start never landed", || started(3)).await;
    w.send(command_end(3));
    let sent = Instant::now();
    w.send(command_start(4));
    until(deadline, "the next start never landed", || started(4)).await;
    let took = sent.elapsed();
    assert!(took < GROUP_WINDOW, "the next start waited {took:?}");
    assert_eq!(rows(3).2, 1, "the end before the start landed with it");
    let landing = w
        .close(Duration::from_secs(5), Duration::from_secs(1))
        .await;
    assert_eq!((landing.landed, landing.not_landed), (217, 0));
}
