//! Seeds a state folder's ledger with N runs through orch's own ledger API (no SQL), for the
//! run-history benchmark (`benches/history.sh`) and the dashboard's tests:
//!
//! ```text
//! cargo run --release --example seed_history -- DIR [RUNS] [DAYS]
//! ```
//!
//! Each run has three steps (one in ten runs has a failed step and fails), usage on each, and
//! starts at an even spacing over the last DAYS days (default 10,000 runs over 10 days).

use chrono::{Duration, Utc};
use orch::history::StepCounts;
use orch::ledger::store::{RunRow, StepRow};
use orch::ledger::{Delta, Kind, Ledger, Nanos};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: seed_history DIR [RUNS] [DAYS]")?);
    let runs: i64 = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let days: i64 = args.next().map_or(Ok(10), |n| n.parse())?;
    let dir = std::path::absolute(dir)?;
    let ledger = Ledger::open(&orch::ledger::path(&dir))?;
    let start = Utc::now() - Duration::days(days);
    let spacing = Duration::days(days).num_milliseconds() / runs.max(1);
    // One transaction per thousand runs: one commit each would take minutes.
    for chunk in (0..runs).collect::<Vec<_>>().chunks(1000) {
        ledger.immediate(|l| {
            for &i in chunk {
                let at = start + Duration::milliseconds(i * spacing);
                let id = format!("{}-{:08x}", at.format("%Y%m%dT%H%M%S%.3fZ"), i);
                let run_dir = dir.join("runs").join(&id);
                l.begin_run(&RunRow {
                    id: id.clone(),
                    name: format!("nightly-{}", i % 3),
                    manifest: dir.join("orch.toml"),
                    run_dir: run_dir.clone(),
                    started_at: at,
                })?;
                let failed = i % 10 == 9;
                let mut states = Vec::new();
                for step in 0..3usize {
                    let job = ["plan", "build", "review"][step];
                    l.begin_step(
                        &id,
                        &StepRow {
                            step,
                            job: job.into(),
                            label: job.into(),
                            command: None,
                            session_id: None,
                            resume: false,
                            is_agent: true,
                            log: run_dir.join(format!("logs/00{}-{job}.log", step + 1)),
                            attempt: 1,
                        },
                        at,
                    )?;
                    let d = Delta {
                        input: 1_200,
                        output: 300 + i % 100,
                        cache_read: 5_000,
                        usd: Nanos(12_000_000 + (i % 7) * 1_000_000),
                        ..Delta::default()
                    };
                    l.record(&id, step, Some("claude-sonnet-4-5"), Kind::Final, &d, at)?;
                    let status = if failed && step == 2 {
                        "failed"
                    } else {
                        "completed"
                    };
                    l.finish_step(&id, step, status, at + Duration::seconds(20))?;
                    states.push(if status == "failed" {
                        orch::events::Status::Failed
                    } else {
                        orch::events::Status::Completed
                    });
                }
                let (status, code) = if failed {
                    ("failed", 1)
                } else {
                    ("completed", 0)
                };
                let counts = StepCounts::of(&states).to_json();
                l.finish_run(&id, status, code, Some(&counts), at + Duration::seconds(61))?;
            }
            Ok(())
        })?;
    }
    println!("{runs} runs in {}", orch::ledger::path(&dir).display());
    Ok(())
}
