//! `orch run`: load, plan, run, write the results, map the outcome to an exit code; on a
//! schedule, once per fire time (`super::service` owns the waiting).

use std::cell::RefCell;
use std::time::Instant;

use chrono::Utc;
use uuid::Uuid;

use crate::agent::AgentProgram;
use crate::cli::RunArgs;
use crate::errors::{Error, ExitCode};
use crate::events::Event;
use crate::manifest::Manifest;
use crate::plan::{Plan, PlanOptions};
use crate::process::StopLadder;
use crate::report::{self, Reporter, results};
use crate::runner::{self, RunContext};

/// Runs the manifest: once now, or as its start time and cron schedule say (`super::service`).
pub fn run(args: &RunArgs) -> Result<ExitCode, Error> {
    let mut manifest = super::load(&args.manifest)?;
    if let Some(dir) = &args.state_dir {
        manifest.settings.state_dir = dir.clone();
    }
    let agent = if super::has_agents(&manifest) || args.manifest.simulate {
        super::agent_program(&args.manifest, &manifest)?
    } else {
        AgentProgram::by_name()
    };
    if args.manifest.simulate {
        // The simulated agent keeps its sessions in this state folder, not a shared one.
        let inherited = std::env::var_os(crate::agent::simulate::STATE_DIR_ENV);
        for job in &mut manifest.jobs {
            let state = &manifest.settings.state_dir;
            let env = crate::agent::simulate::session_env(state, inherited.as_deref(), &job.env);
            job.env.extend(env);
        }
    }
    let timing = super::service::Timing::new(args, &manifest)?;
    // --- display: the reporters the flags ask for (see `report::select`) ---
    let reporter = RefCell::new(display(args, &manifest, &agent)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let once = async || run_once(args, &manifest, &agent, &reporter).await;
    match timing {
        None => runtime.block_on(once()),
        Some(t) => runtime.block_on(super::service::serve(&t, &reporter, once)),
    }
}

/// One run of the graph, now: its own run id, run folder, plan, results and ledger entries.
pub(super) async fn run_once(
    args: &RunArgs,
    manifest: &Manifest,
    agent: &AgentProgram,
    reporter: &RefCell<report::Fanout>,
) -> Result<ExitCode, Error> {
    let run_uuid = Uuid::new_v4();
    let run_id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        &run_uuid.simple().to_string()[..8]
    );
    let plan = Plan::build(
        manifest,
        &PlanOptions {
            agent: agent.clone(),
            run_id: run_uuid,
        },
    );
    let guardian_exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find orch's own executable", e))?;
    let ctx = RunContext {
        run_dir: manifest.settings.state_dir.join("runs").join(&run_id),
        run_id,
        startup_delay: manifest.settings.startup_delay,
        max_parallel: manifest.settings.max_parallel,
        fail_fast: manifest.settings.fail_fast,
        ladder: ladder_from_env(),
        guardian_exe,
        manifest: manifest.clone(),
    };

    // The borrow lasts one report or tick: the service loop reports skipped fire times meanwhile.
    let outcome = run_with_ticks(&ctx, &plan, reporter)
        .await
        .map_err(|e| Error::io("cannot start the run", e))?;
    let mut reporter = reporter.borrow_mut();

    let code = outcome.exit_code();
    let results = results::build(&ctx, &plan, &outcome, code as u8);
    let path = ctx.run_dir.join("results.json");
    results::write(&results, &path)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    if let Some(extra) = &args.output {
        results::write(&results, extra)
            .map_err(|e| Error::io(format!("cannot write {}", extra.display()), e))?;
    }
    reporter.report(
        &Event::RunFinished {
            run_id: ctx.run_id.clone(),
            results: path.clone(),
            completed: results.completed,
            failed: results.failed,
            skipped: results.skipped,
            total_tokens: results.metadata.token_usage.total_tokens,
            total_cost_usd: results.metadata.token_usage.total_cost_usd,
            duration: (outcome.finished - outcome.started)
                .to_std()
                .unwrap_or_default(),
            exit_code: code as u8,
        },
        Instant::now(),
    );
    reporter.finish(&results, &path);
    Ok(code)
}

/// The reporters the flags ask for, shaped by the manifest's plan (the same for every run).
fn display(
    args: &RunArgs,
    manifest: &Manifest,
    agent: &AgentProgram,
) -> Result<report::Fanout, Error> {
    let plan = Plan::build(
        manifest,
        &PlanOptions {
            agent: agent.clone(),
            run_id: Uuid::nil(),
        },
    );
    let opts = report::Options {
        quiet: args.quiet,
        max_console_lines: args.max_console_lines,
        max_line_length: args.max_line_length,
        status_report_interval: std::time::Duration::from_secs(args.status_report_interval),
        disable_budget_visuals: args.disable_budget_visuals,
        color: false,
    };
    let sel = report::Selection {
        no_progress: args.no_progress,
        events: args.events.clone(),
    };
    report::select(&report::live::Shape::of(&plan), opts, &sel).map_err(|e| {
        let file = args.events.as_deref().unwrap_or(std::path::Path::new("-"));
        Error::io(format!("cannot write the events to {}", file.display()), e)
    })
}

/// Runs the plan, handing each event to the reporter and ticking it on its own timer; the
/// runner knows nothing of time-driven display. One task, so the reporter is never borrowed
/// twice at once.
async fn run_with_ticks(
    ctx: &RunContext,
    plan: &Plan,
    reporter: &RefCell<report::Fanout>,
) -> std::io::Result<runner::RunOutcome> {
    let every = reporter.borrow().tick_every();
    let mut on_event = |e: &Event| reporter.borrow_mut().report(e, Instant::now());
    let run = runner::run(ctx, plan, &mut on_event);
    tokio::pin!(run);
    let Some(every) = every else {
        return run.await;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            _ = ticks.tick() => reporter.borrow_mut().tick(Instant::now()),
        }
    }
}

/// The stop ladder's grace periods; `ORCH_GRACE_INT` and `ORCH_GRACE_TERM` (durations) override
/// the defaults of 10 s and 5 s.
fn ladder_from_env() -> StopLadder {
    let mut ladder = StopLadder::default();
    let read = |key: &str| {
        std::env::var(key)
            .ok()
            .and_then(|v| crate::duration::parse(&v).ok())
    };
    if let Some(d) = read("ORCH_GRACE_INT") {
        ladder.grace_int = d;
    }
    if let Some(d) = read("ORCH_GRACE_TERM") {
        ladder.grace_term = d;
    }
    ladder
}
