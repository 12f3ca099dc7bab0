use std::path::Path;

use chrono::{Duration, Utc};

use super::*;
use crate::ledger::store::{RunRow, StepRow};
use crate::ledger::{Delta, Kind, Nanos};

/// A state folder with runs `a1b2`, `a1c3` (failed) and `ff00` (running), oldest first.
fn seeded() -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let ledger = Ledger::open(&crate::ledger::path(state)).unwrap();
    let t0 = Utc::now() - Duration::days(3);
    for (i, (id, status)) in [
        ("20260101T000000.000Z-a1b20000", Some("completed")),
        ("20260102T000000.000Z-a1c30000", Some("failed")),
        ("20260103T000000.000Z-ff000000", None),
    ]
    .into_iter()
    .enumerate()
    {
        let at = t0 + Duration::days(i as i64);
        ledger
            .begin_run(&RunRow {
                id: id.into(),
                name: "demo".into(),
                manifest: state.join("orch.toml"),
                run_dir: state.join("runs").join(id),
                started_at: at,
            })
            .unwrap();
        let step = StepRow {
            step: 0,
            job: "a".into(),
            label: "a".into(),
            command: None,
            session_id: None,
            resume: false,
            is_agent: true,
            log: state.join("runs").join(id).join("logs/a.log"),
            attempt: 1,
        };
        ledger.begin_step(id, &step, at).unwrap();
        let d = Delta {
            output: 100,
            usd: Nanos(1_000_000),
            ..Delta::default()
        };
        ledger
            .record(id, 0, Some("m"), Kind::Final, &d, at)
            .unwrap();
        if let Some(status) = status {
            ledger.finish_step(id, 0, status, at).unwrap();
            let counts = StepCounts([(status.to_string(), 1)].into_iter().collect());
            let end = at + Duration::seconds(90);
            ledger
                .finish_run(id, status, 0, Some(&counts.to_json()), end)
                .unwrap();
        }
    }
    let history = History::open(state).unwrap();
    (dir, history)
}

#[test]
fn runs_are_listed_newest_first_with_spend_and_counts_and_filtered() {
    let (_d, h) = seeded();
    let all = h.runs(&RunFilter::default()).unwrap();
    let ids: Vec<&str> = all.iter().map(|r| &r.id[21..25]).collect();
    assert_eq!(ids, ["ff00", "a1c3", "a1b2"]);
    assert_eq!((all[2].total_tokens, all[2].usd_nanos), (100, 1_000_000));
    assert_eq!(all[2].duration_seconds, 90.0);
    assert_eq!(all[1].steps.get("failed"), 1);
    // The running run's steps are counted from their rows; its orch (this test) is alive.
    assert_eq!(all[0].steps.get("running"), 1);
    assert!(all[0].is_running());
    let failed = RunFilter {
        status: Some("failed".into()),
        ..RunFilter::default()
    };
    assert_eq!(h.runs(&failed).unwrap().len(), 1);
    assert_eq!(h.count(&failed).unwrap(), 1);
    let recent = RunFilter {
        since: Some(Utc::now() - Duration::hours(36)),
        ..RunFilter::default()
    };
    assert_eq!(h.runs(&recent).unwrap().len(), 1);
    let page = RunFilter {
        limit: 1,
        offset: 1,
        ..RunFilter::default()
    };
    assert_eq!(h.runs(&page).unwrap()[0].status, "failed");
    let other = RunFilter {
        manifest: Some("other".into()),
        ..RunFilter::default()
    };
    assert!(h.runs(&other).unwrap().is_empty());
}

#[test]
fn latest_exact_ids_and_unique_prefixes_resolve_and_an_ambiguous_one_lists_candidates() {
    let (_d, h) = seeded();
    assert!(h.resolve("latest").unwrap().id.ends_with("ff000000"));
    assert!(h.resolve("20260101").unwrap().id.ends_with("a1b20000"));
    assert!(h.resolve("a1c").unwrap().id.ends_with("a1c30000"));
    match h.resolve("a1") {
        Err(HistoryError::AmbiguousRun { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("{other:?}"),
    }
    match h.resolve("zz") {
        Err(e @ HistoryError::UnknownRun { .. }) => {
            let help = miette::Diagnostic::help(&e).unwrap().to_string();
            assert!(help.contains("ff000000"), "{help}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.resolve(""),
        Err(HistoryError::UnknownRun { .. })
    ));
}

#[test]
fn a_folder_without_a_ledger_has_no_runs_and_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path()).unwrap();
    assert!(h.runs(&RunFilter::default()).unwrap().is_empty());
    assert!(matches!(
        h.resolve("latest"),
        Err(HistoryError::NoRuns { .. })
    ));
    assert!(!crate::ledger::path(dir.path()).exists());
}

#[test]
fn paths_outside_the_state_folder_are_refused_links_included() {
    let (d, h) = seeded();
    let state = d.path();
    std::fs::create_dir_all(state.join("runs/x")).unwrap();
    assert!(h.confine(&state.join("runs/x/not-yet.log")).is_ok());
    assert!(h.confine(Path::new("runs/x")).is_ok());
    for bad in ["/etc/passwd", "runs/../../etc", "/"] {
        assert!(h.confine(Path::new(bad)).is_err(), "{bad}");
    }
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), state.join("runs/link")).unwrap();
    assert!(h.confine(&state.join("runs/link/file")).is_err());
}

#[test]
fn events_are_read_in_whole_lines_from_an_offset_and_folded_into_steps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(EVENTS_FILE);
    let lines = [
        r#"{"v":1,"event":"run_started","steps":2}"#,
        r#"{"v":1,"event":"step_started","step":0,"label":"a","log":"/l","at":"2026-01-01T00:00:00Z","pid":1}"#,
        r#"{"v":1,"event":"usage_recorded","step":0,"label":"a","update":{"tokens":{"input":5,"output":7},"cost_usd":0.5}}"#,
        "not json",
    ];
    std::fs::write(&file, lines.join("\n") + "\n{\"v\":1,\"event\":\"step_fin").unwrap();
    let page = events::read(&file, 0, usize::MAX).unwrap();
    assert_eq!((page.events.len(), page.unreadable), (3, 1));
    assert!(!page.finished);
    let full = lines.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
    assert_eq!(
        page.next_offset, full,
        "the unfinished line is left for later"
    );
    let small = events::read(&file, 0, 10).unwrap();
    assert_eq!(small.events.len(), 1);
    let rest = events::read(&file, small.next_offset, usize::MAX).unwrap();
    assert_eq!(rest.next_offset, full);
    let (planned, steps) = summary::fold(&page.events);
    assert_eq!(planned, Some(2));
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (steps[0].status.as_str(), steps[0].total_tokens),
        ("running", 12)
    );
    assert!(
        events::read(&dir.path().join("none"), 0, 1)
            .unwrap()
            .events
            .is_empty()
    );
}

#[test]
fn a_jobs_outputs_go_with_its_last_step() {
    let events: Vec<serde_json::Value> = [
        r#"{"event":"step_started","step":0,"label":"build [1/2]"}"#,
        r#"{"event":"step_started","step":1,"label":"build [2/2]"}"#,
        r#"{"event":"step_started","step":2,"label":"builder"}"#,
        r#"{"event":"job_outputs","job":"build","outputs":{"stdout":"ok"}}"#,
        r#"{"event":"job_outputs","job":"builder","outputs":{"result":"done"}}"#,
    ]
    .iter()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let (_, steps) = summary::fold(&events);
    let outputs: Vec<Option<String>> = steps
        .iter()
        .map(|s| s.outputs.as_ref().map(|o| o.to_string()))
        .collect();
    assert_eq!(
        outputs,
        [
            None,
            Some(r#"{"stdout":"ok"}"#.into()),
            Some(r#"{"result":"done"}"#.into())
        ]
    );
}
