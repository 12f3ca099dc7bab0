//! The ledger's readers (`orch ledger`, `orch plan`) on a ledger in use: they only read a ledger
//! whose schema is current, so a writer holding its write lock (a run committing a group) does
//! not hold them up.

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use rusqlite::Connection;

use super::harness::{Test, wait_until};

/// `child`'s output once it ends, which must be within `deadline`.
fn output_within(what: &str, mut child: Child, deadline: Duration) -> Output {
    wait_until(what, deadline, || {
        child.try_wait().expect("try_wait").is_some()
    });
    child.wait_with_output().expect("output")
}

/// With another connection holding the ledger's write lock (`BEGIN IMMEDIATE`, as a run's writer
/// does while it commits), `orch ledger` and `orch plan` answer at once, with the spend. Before,
/// every open took the write lock to check the schema: they waited for the lock up to the busy
/// timeout (10 s) and then failed with "database is locked".
#[test]
fn readers_do_not_wait_for_a_writers_lock() {
    let manifest = "name = \"locked\"\n\n[settings]\nstartup_delay = \"0s\"\n\n\
        [budget]\nwindow = { period = \"24h\", usd = 1000.0 }\n\n\
        [jobs.a]\nprompt = \"one\"\nenv = { ORCH_SIM_TURNS = \"5\", ORCH_SIM_DELAY_MS = \"0\" }\n";
    let t = Test::new().file("orch.toml", manifest);
    let sim = t.path().join("sim");
    let t = t.env("ORCH_SIM_STATE_DIR", sim.to_str().unwrap());
    let out = t
        .with_args(&["run", "--simulate", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let db = Connection::open(t.path().join(".orch/ledger.sqlite")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let spawn = |args: &[&str]| {
        t.with_args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ledger = spawn(&["ledger", "--format", "json"]);
    let ledger = output_within("orch ledger", ledger, Duration::from_secs(5));
    let plan = spawn(&["plan", "--simulate"]);
    let plan = output_within("orch plan", plan, Duration::from_secs(5));
    db.execute_batch("COMMIT").unwrap();

    assert!(ledger.status.success(), "{ledger:?}");
    let report: serde_json::Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert!(rows[0]["usd_nanos"].as_i64().unwrap() > 0, "{report}");
    assert!(plan.status.success(), "{plan:?}");
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(!text.contains("cannot read the ledger"), "{text}");
    assert!(text.contains("spent in the last 1d"), "{text}");
}
