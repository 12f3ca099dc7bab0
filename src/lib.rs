//! orch: a declarative pipeline and job runner for Claude Code agents and any other command.
//!
//! The pipeline, each arrow a module boundary:
//! manifest file → [`manifest`] (load, resolve) → [`plan`] (the DAG of steps) →
//! [`runner`] (dispatcher and executors) → [`events`] → [`report`].

pub mod agent;
pub mod process;

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
