//! orch: a declarative pipeline and job runner for Claude Code agents and any other command.
//!
//! The pipeline, each arrow a module boundary:
//! command line → [`cli`] (clap types) → [`config`] (typed, validated, once) →
//! manifest file → [`manifest`] (load, read, resolve) → [`plan`] (the DAG of steps) →
//! `runner` (dispatcher and executors) → events → [`report`].

pub mod agent;
pub mod cli;
pub mod commands;
pub mod condition;
pub mod config;
pub mod duration;
pub mod errors;
pub mod events;
pub mod history;
pub mod ledger;
pub mod manifest;
pub mod plan;
pub mod process;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod serve;
pub mod slash;
pub mod template;
pub mod worktree;

use clap::Parser;

use cli::{Cli, Command};
use config::Config;
use errors::{Error, ExitCode};

/// The whole program: parse the command line, run the subcommand, map the outcome to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The simulated agent and the guardian are other programs sharing this executable.
        Command::AgentSim { args } => return agent::simulate::main(args),
        Command::Guardian => return process::guardian::main(),
        Command::SlurmStep { cwd, argv } => return process::wrapper::main(cwd, argv),
        _ => {}
    }
    init_tracing(cli.verbose);
    // Until a manifest names its own, orch's environment's secrets are masked.
    secrets::install(secrets::Mask::new(
        std::env::vars()
            .filter(|(name, _)| secrets::is_secret_name(name))
            .map(|(_, value)| value),
    ));
    match dispatch(cli.command) {
        Ok(code) => code.into(),
        Err(err) => {
            report::print_error(miette::Report::new(err));
            ExitCode::Setup.into()
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode, Error> {
    // Every flag is checked and typed here, once, before anything loads or runs.
    match Config::from_command(command)? {
        Config::Plan(c) => {
            report::emit(&commands::plan::run_checked(
                &c.manifest,
                c.format,
                c.strict,
                &c.when,
                chrono::Utc::now(),
            )?);
            Ok(ExitCode::Ok)
        }
        Config::Run(c) => {
            // zen's --list-commands / --inspect-command answer and exit, as in zen.
            let zen = c.inspect_command.as_deref();
            if let Some(out) = commands::slash::zen_flags(&c.manifest, c.list_commands, zen) {
                report::emit(&out?);
                return Ok(ExitCode::Ok);
            }
            if c.dry_run {
                // The dry run shows when the run would start, as zen's did.
                report::emit(&commands::plan::run_checked(
                    &c.manifest,
                    cli::PlanFormat::Text,
                    false,
                    &c.when,
                    chrono::Utc::now(),
                )?);
                return Ok(ExitCode::Ok);
            }
            for warning in &c.manifest.warnings {
                report::print_warning(warning);
            }
            commands::run::run(&c)
        }
        Config::Resume(c) => commands::resume::resume(&c),
        Config::Ledger(c) => {
            report::emit(&commands::ledger::run(&c)?);
            Ok(ExitCode::Ok)
        }
        Config::Serve(c) => {
            serve::run(c)?;
            Ok(ExitCode::Ok)
        }
        Config::Runs(c) => {
            report::emit(&commands::history::runs(&c)?);
            Ok(ExitCode::Ok)
        }
        Config::Show(a) => {
            report::emit(&commands::history::show(&a)?);
            Ok(ExitCode::Ok)
        }
        Config::Logs(a) => commands::logs::logs(&a),
        Config::Convert { config } => {
            report::emit(&commands::convert::convert(&config)?);
            Ok(ExitCode::Ok)
        }
        Config::Schema { events } => {
            report::emit(&if events {
                commands::schema::events_schema()
            } else {
                commands::schema::manifest_schema()
            });
            Ok(ExitCode::Ok)
        }
        Config::Commands(args) => {
            report::emit(&commands::slash::run(&args)?);
            Ok(ExitCode::Ok)
        }
        Config::Completions { shell } => {
            report::emit(&commands::completions::completions(shell));
            Ok(ExitCode::Ok)
        }
        Config::Man { subcommand } => {
            report::emit(&commands::completions::man(subcommand.as_deref())?);
            Ok(ExitCode::Ok)
        }
    }
}

/// Diagnostics (`tracing`) on stderr, off unless asked for: `-v` shows orch's debug events,
/// `-vv` its trace events, and `RUST_LOG` takes any filter.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match (verbose, std::env::var("RUST_LOG")) {
        (0, Ok(spec)) if !spec.is_empty() => EnvFilter::new(spec),
        (0, _) => return,
        (1, _) => EnvFilter::new("orch=debug,warn"),
        _ => EnvFilter::new("orch=trace,info"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(report::select::color_allowed(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ))
        .try_init();
}
