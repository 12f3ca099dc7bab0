//! End-to-end tests of the real `orch` binary, one integration-test binary for all of them.

mod book;
mod budget;
mod checks;
mod claude_config;
mod display;
mod fuzz;
mod harness;
mod history;
mod interplay;
mod ledger;
mod limits;
mod manifests;
mod pipeline;
mod plan;
mod procs;
mod recovery;
mod resume;
mod retry;
mod run;
mod run_core;
mod schedule;
// The network namespaces of the Claude Code suite (see its module comment).
#[path = "../claude_code/sandbox.rs"]
mod sandbox;
mod serve;
mod serve_browser;
mod slash;
mod slurm;
mod worktree;
mod zen;
