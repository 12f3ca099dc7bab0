//! End to end with the real Claude Code CLI (pinned, installed from npm into a cache under the
//! target folder) against a local mock of the Messages API, each scenario through `orch run`.
//!
//! Every test enters a network namespace of its own with only loopback (see `sandbox`), starts the
//! mock there, and runs orch, which runs `claude`, inside it: the CLI can reach nothing but the
//! mock. The figures orch records (results file and ledger) must equal the CLI's own `result`
//! lines. See book/src/testing-with-claude-code.md.

mod config;
#[allow(dead_code)]
#[path = "../cli/harness.rs"]
mod harness;
mod install;
mod mock;
mod sandbox;
mod scenarios;
mod structured;
mod support;
