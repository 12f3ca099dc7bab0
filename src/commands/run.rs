//! `orch run`: load, plan, run, write the results, map the outcome to an exit code; on a
//! schedule, once per fire time (`super::service` owns the waiting).

use chrono::Utc;
use uuid::Uuid;

use crate::agent::AgentProgram;
use crate::config::RunConfig;
use crate::errors::{Error, ExitCode};
use crate::events::Event;
use crate::manifest::Manifest;
use crate::plan::{Plan, PlanOptions};
use crate::report::service_file::ServiceFile;
use crate::report::{self, Sink, results};
use crate::runner::{self, RunContext};

/// Runs the manifest: once now, or as its start time and cron schedule say (`super::service`).
pub fn run(config: &RunConfig) -> Result<ExitCode, Error> {
    super::check_open_files()?;
    let (manifest, agent) = setup(config, &config.manifest, None)?;
    crate::worktree::check_branches(&manifest)?;
    let timing = super::service::Timing::new(&config.when, &manifest, Utc::now())?;
    execute(config, &manifest, &agent, timing, None)
}

/// Loads the manifest with the flags over it, its state folder (`state_dir`, else `--state-dir`,
/// else the manifest's) made absolute, and the program
/// that plays Claude Code (the simulated agent keeps its sessions in the state folder).
pub(super) fn setup(
    config: &RunConfig,
    manifest_config: &crate::config::ManifestConfig,
    state_dir: Option<&std::path::Path>,
) -> Result<(Manifest, AgentProgram), Error> {
    let mut manifest = super::load(manifest_config)?;
    manifest.settings.state_dir = match state_dir.or(config.state_dir.as_deref()) {
        Some(dir) => dir.to_path_buf(),
        None => crate::config::absolute_state_dir(&manifest.settings.state_dir)?,
    };
    let agent = if super::has_agents(&manifest) || manifest_config.simulate {
        super::agent_program(manifest_config, &manifest)?
    } else {
        AgentProgram::by_name()
    };
    if manifest_config.simulate {
        // The simulated agent keeps its sessions in this state folder, not a shared one.
        let inherited = std::env::var_os(crate::agent::simulate::STATE_DIR_ENV);
        for job in &mut manifest.jobs {
            let state = &manifest.settings.state_dir;
            let env = crate::agent::simulate::session_env(state, inherited.as_deref(), &job.env);
            job.env.extend(env);
        }
    }
    Ok((manifest, agent))
}

/// Runs the loaded manifest with the reporters the flags ask for: once, on a schedule, or as
/// the resumption of an earlier run.
pub(super) fn execute(
    config: &RunConfig,
    manifest: &Manifest,
    agent: &AgentProgram,
    timing: Option<super::service::Timing>,
    resume: Option<&super::resume::Resumption>,
) -> Result<ExitCode, Error> {
    // --- display: the reporters the flags ask for (see `report::select`), in their own task ---
    let fanout = display(config, manifest, agent)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(async {
        let (sink, reporter) = report::spawn(fanout);
        let code = {
            let once = async || run_once(config, manifest, agent, &sink, resume).await;
            match timing {
                None => once().await,
                Some(t) => {
                    let record = t.cron.as_ref().map(|(expr, _)| {
                        ServiceFile::new(
                            &manifest.settings.state_dir,
                            &manifest.name,
                            &manifest.path,
                            expr,
                            t.zone.name(),
                        )
                    });
                    super::service::serve(&t, &sink, record, once).await
                }
            }
        };
        // The reporter task shows everything sent before it ends.
        drop(sink);
        let _ = reporter.await;
        code
    })
}

/// One run of the graph, now (its own run id, run folder, plan, results and ledger entries),
/// knowing the sessions the ledger has; with `resume`, the
/// continuation of an earlier run (its completed steps reused, see `super::resume`).
pub(super) async fn run_once(
    config: &RunConfig,
    manifest: &Manifest,
    agent: &AgentProgram,
    sink: &Sink,
    resume: Option<&super::resume::Resumption>,
) -> Result<ExitCode, Error> {
    let run_uuid = Uuid::new_v4();
    let run_id = format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        &run_uuid.simple().to_string()[..8]
    );
    let options = PlanOptions {
        agent: agent.clone(),
        run_id: run_uuid,
    };
    let (plan, carried) = super::resume::prepare(manifest, &options, resume)?;
    let guardian_exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find orch's own executable", e))?;
    let ctx = RunContext {
        run_dir: manifest.settings.state_dir.join("runs").join(&run_id),
        run_id,
        startup_delay: manifest.settings.startup_delay,
        max_parallel: manifest.settings.max_parallel,
        fail_fast: manifest.settings.fail_fast,
        ladder: config.ladder,
        ledger_wait: config.ledger_wait,
        guardian_exe,
        env: std::env::vars().collect(),
        manifest: manifest.clone(),
        carried,
    };

    // The runner fails only before any step started (no run folder, ledger or guardian): a setup
    // error. From here on the run's outcome is its steps', whatever could not be written.
    let outcome = runner::run(&ctx, plan, &mut |e| sink.event(e))
        .await
        .map_err(|e| Error::io("cannot start the run", e))?;

    let code = outcome.exit_code();
    let mut results = results::build(&ctx, &outcome, code as u8);
    // zen's results file: `--output`, or in zen's modes an auto-named file in the current folder.
    let zen_file = match &config.output {
        Some(path) => Some(path.clone()),
        None if config.manifest.zen_mode() => {
            let names: Vec<String> = manifest.jobs.iter().map(|j| j.name.clone()).collect();
            let started = outcome.started.with_timezone(&chrono::Local);
            Some(std::path::PathBuf::from(results::zen_file_name(
                started, &names,
            )))
        }
        None => None,
    };
    results.metadata.generated_filename = zen_file
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let ledger = &outcome.ledger;
    if ledger.not_landed + ledger.rejected > 0 {
        let error = ledger.last_error.as_deref().unwrap_or("unknown error");
        results.faults.push(results::Fault::ledger(
            ledger.not_landed,
            ledger.rejected,
            error,
        ));
    }
    let path = ctx.run_dir.join("results.json");
    let written = results::write_or_fall_back(&mut results, &path, &std::env::temp_dir());
    if let Some(error) = &written.error {
        sink.event(Event::ResultsWriteFailed {
            path: path.clone(),
            error: error.clone(),
            written_to: written.at.clone(),
        });
    }
    let shown = written.at.clone().unwrap_or_else(|| path.clone());
    if let Some(extra) = &zen_file {
        if let Err(e) = results::write(&results, extra) {
            sink.event(Event::ResultsWriteFailed {
                path: extra.clone(),
                error: e.to_string(),
                written_to: written.at.clone(),
            });
        }
    }
    sink.event(Event::RunFinished {
        run_id: ctx.run_id.clone(),
        results: shown.clone(),
        completed: results.completed,
        failed: results.failed,
        skipped: results.skipped,
        total_tokens: results.metadata.token_usage.total_tokens,
        total_cost_usd: results.metadata.token_usage.total_cost_usd,
        duration: (outcome.finished - outcome.started)
            .to_std()
            .unwrap_or_default(),
        exit_code: code as u8,
    });
    sink.finish(results, &shown);
    Ok(code)
}

/// The reporters the flags ask for, shaped by the manifest's plan (the same for every run).
fn display(
    config: &RunConfig,
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
    let sel = &config.selection;
    report::select(
        &report::live::Shape::of(&plan).with_budgets(manifest, &plan),
        config.display.clone(),
        sel,
    )
    .map_err(|e| {
        let file = sel.events.as_deref().unwrap_or(std::path::Path::new("-"));
        Error::io(format!("cannot write the events to {}", file.display()), e)
    })
}
