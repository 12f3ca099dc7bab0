//! End-to-end tests of the real `orch` binary, one integration-test binary for all of them.

mod book;
mod budget;
mod display;
mod fuzz;
mod harness;
mod manifests;
mod plan;
mod procs;
mod run;
mod schedule;
mod slash;
