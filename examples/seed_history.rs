//! Seeds a state folder's ledger with N runs through orch's own ledger API (no SQL), for the
//! run-history and ledger benchmarks (`benches/history.sh`, `benches/serve.sh`,
//! `benches/ledger.sh`) and the dashboard's tests:
//!
//! ```text
//! cargo run --release --example seed_history -- DIR [RUNS] [SPAN] [--steps N] [--estimates E] [--name NAME]
//! ```
//!
//! The runs start at an even spacing over the last SPAN: a number of days (default 10) or a
//! duration such as `23h`. One in ten runs has its last step failed and fails. By default each
//! run, named `nightly-0`..`nightly-2`, has three steps (`plan`, `build`, `review`) and one final
//! usage row each. `--steps N` gives N steps named `j0`..; `--name` names every run alike (so that
//! `orch plan` of a manifest of that name forecasts from them); `--estimates E` has each step
//! spend as a live agent step does: E estimate rows, then a final row that cancels them and
//! carries Claude Code's figure, and a second model's share (a subagent) as a final of its own.

use chrono::{DateTime, Duration, Utc};
use orch::history::StepCounts;
use orch::ledger::store::{RunRow, StepRow};
use orch::ledger::{Delta, Kind, Ledger, Nanos};

const USAGE: &str =
    "usage: seed_history DIR [RUNS] [SPAN] [--steps N] [--estimates E] [--name NAME]";

/// What to seed.
struct Shape {
    dir: std::path::PathBuf,
    runs: i64,
    span: Duration,
    /// `None`: the three named steps of the history benchmark.
    steps: Option<usize>,
    estimates: i64,
    name: Option<String>,
}

fn parse() -> Result<Shape, Box<dyn std::error::Error>> {
    let mut positional = Vec::new();
    let mut shape = Shape {
        dir: Default::default(),
        runs: 10_000,
        span: Duration::days(10),
        steps: None,
        estimates: 0,
        name: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(USAGE);
        match arg.as_str() {
            "--steps" => shape.steps = Some(value()?.parse()?),
            "--estimates" => shape.estimates = value()?.parse()?,
            "--name" => shape.name = Some(value()?),
            flag if flag.starts_with("--") => return Err(format!("{flag}? {USAGE}").into()),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    shape.dir = std::path::absolute(positional.next().ok_or(USAGE)?)?;
    if let Some(runs) = positional.next() {
        shape.runs = runs.parse()?;
    }
    if let Some(span) = positional.next() {
        shape.span = match span.parse::<i64>() {
            Ok(days) => Duration::days(days),
            Err(_) => Duration::from_std(orch::duration::parse(&span)?)?,
        };
    }
    Ok(shape)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shape = parse()?;
    let ledger = Ledger::open(&orch::ledger::path(&shape.dir))?;
    let start = Utc::now() - shape.span;
    let spacing = shape.span.num_milliseconds() / shape.runs.max(1);
    // One transaction per thousand runs: one commit each would take minutes.
    for chunk in (0..shape.runs).collect::<Vec<_>>().chunks(1000) {
        ledger.immediate(|l| {
            for &i in chunk {
                seed_run(l, &shape, i, start + Duration::milliseconds(i * spacing))?;
            }
            Ok(())
        })?;
    }
    println!(
        "{} runs in {}",
        shape.runs,
        orch::ledger::path(&shape.dir).display()
    );
    Ok(())
}

fn seed_run(l: &Ledger, shape: &Shape, i: i64, at: DateTime<Utc>) -> rusqlite::Result<()> {
    let id = format!("{}-{:08x}", at.format("%Y%m%dT%H%M%S%.3fZ"), i);
    let run_dir = shape.dir.join("runs").join(&id);
    l.begin_run(&RunRow {
        id: id.clone(),
        name: shape
            .name
            .clone()
            .unwrap_or_else(|| format!("nightly-{}", i % 3)),
        manifest: shape.dir.join("orch.toml"),
        run_dir: run_dir.clone(),
        started_at: at,
    })?;
    let failed = i % 10 == 9;
    let steps = shape.steps.unwrap_or(3);
    let mut states = Vec::new();
    for step in 0..steps {
        let job = match shape.steps {
            None => ["plan", "build", "review"][step].to_string(),
            Some(_) => format!("j{step}"),
        };
        l.begin_step(
            &id,
            &StepRow {
                step,
                job: job.clone(),
                label: job.clone(),
                command: None,
                session_id: None,
                resume: false,
                is_agent: true,
                log: run_dir.join(format!("logs/{:03}-{job}.log", step + 1)),
                attempt: 1,
            },
            at,
        )?;
        spend(l, &id, step, shape.estimates, i, at)?;
        let status = if failed && step == steps - 1 {
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
    l.finish_run(&id, status, code, Some(&counts), at + Duration::seconds(61))
}

/// A step's usage rows: `estimates` live estimates, then the final figure (less the estimates),
/// and with estimates a second model's share.
fn spend(
    l: &Ledger,
    id: &str,
    step: usize,
    estimates: i64,
    i: i64,
    at: DateTime<Utc>,
) -> rusqlite::Result<()> {
    const MODEL: &str = "claude-sonnet-4-5";
    let estimate = Delta {
        input: 3,
        output: 20,
        cache_read: 1_000,
        cache_creation: 50,
        usd: Nanos(900_000),
    };
    for _ in 0..estimates {
        l.record(id, step, Some(MODEL), Kind::Estimate, &estimate, at)?;
    }
    let spent = Delta {
        input: 1_200,
        output: 300 + i % 100,
        cache_read: 5_000,
        usd: Nanos(12_000_000 + (i % 7) * 1_000_000),
        ..Delta::default()
    };
    let cancel = |n: i64| n.saturating_mul(estimates);
    let fin = Delta {
        input: spent.input - cancel(estimate.input),
        output: spent.output - cancel(estimate.output),
        cache_read: spent.cache_read - cancel(estimate.cache_read),
        cache_creation: spent.cache_creation - cancel(estimate.cache_creation),
        usd: Nanos(spent.usd.0 - cancel(estimate.usd.0)),
    };
    l.record(id, step, Some(MODEL), Kind::Final, &fin, at)?;
    if estimates > 0 {
        let subagent = Delta {
            input: 100,
            output: 30,
            usd: Nanos(200_000),
            ..Delta::default()
        };
        l.record(
            id,
            step,
            Some("claude-haiku-4-5"),
            Kind::Final,
            &subagent,
            at,
        )?;
    }
    Ok(())
}
