//! orch: a declarative pipeline and job runner for Claude Code agents and any other command.
//!
//! The pipeline, each arrow a module boundary:
//! manifest file → [`manifest`] (load, read, resolve) → [`plan`] (the DAG of steps) →
//! `runner` (dispatcher and executors) → events → [`report`].

pub mod agent;
pub mod cli;
pub mod commands;
pub mod duration;
pub mod errors;
pub mod events;
pub mod ledger;
pub mod manifest;
pub mod plan;
pub mod process;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod slash;

use clap::Parser;

use cli::{Cli, Command};
use errors::{Error, ExitCode};

/// The whole program: parse the command line, run the subcommand, map the outcome to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The simulated agent and the guardian are other programs sharing this executable.
        Command::AgentSim { args } => return agent::simulate::main(args),
        Command::Guardian => return process::guardian::main(),
        _ => {}
    }
    init_tracing(cli.verbose);
    match dispatch(cli.command) {
        Ok(code) => code.into(),
        Err(err) => {
            report::print_error(miette::Report::new(err));
            ExitCode::Setup.into()
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Plan(args) => {
            report::emit(&commands::plan::run_checked(
                &args.manifest,
                args.format,
                args.strict,
                &args.when,
                chrono::Utc::now(),
            )?);
            Ok(ExitCode::Ok)
        }
        Command::Run(args) => {
            // zen's --list-commands / --inspect-command answer and exit, as in zen.
            let zen = args.inspect_command.as_deref();
            if let Some(out) = commands::slash::zen_flags(&args.manifest, args.list_commands, zen) {
                report::emit(&out?);
                return Ok(ExitCode::Ok);
            }
            if args.dry_run {
                // The dry run shows when the run would start, as zen's did.
                let when = cli::WhenArgs {
                    start_at: args.start_at.clone(),
                    schedule: args.schedule.clone(),
                    once: args.once,
                };
                report::emit(&commands::plan::run_checked(
                    &args.manifest,
                    cli::PlanFormat::Text,
                    false,
                    &when,
                    chrono::Utc::now(),
                )?);
                return Ok(ExitCode::Ok);
            }
            for warning in commands::flag_warnings(&args.manifest) {
                report::print_warning(&warning);
            }
            commands::run::run(&args)
        }
        Command::Ledger(args) => {
            report::emit(&commands::ledger::run(&args)?);
            Ok(ExitCode::Ok)
        }
        Command::Convert { config } => {
            report::emit(&commands::convert::convert(&config)?);
            Ok(ExitCode::Ok)
        }
        Command::Schema { events } => {
            report::emit(&if events {
                commands::schema::events_schema()
            } else {
                commands::schema::manifest_schema()
            });
            Ok(ExitCode::Ok)
        }
        Command::Commands(args) => {
            report::emit(&commands::slash::run(&args)?);
            Ok(ExitCode::Ok)
        }
        Command::Completions { shell } => {
            report::emit(&commands::completions::completions(shell));
            Ok(ExitCode::Ok)
        }
        Command::Man { subcommand } => {
            report::emit(&commands::completions::man(subcommand.as_deref())?);
            Ok(ExitCode::Ok)
        }
        Command::AgentSim { .. } | Command::Guardian => unreachable!("handled in main"),
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
