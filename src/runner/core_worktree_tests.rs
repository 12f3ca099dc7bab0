//! The core's worktree decisions, driven by hand: no git, no process, no clock.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;

use super::super::*;
use crate::agent::AgentProgram;
use crate::ledger::budget::Spend;
use crate::manifest::load_str;
use crate::plan::PlanOptions;
use crate::process::{Exit, StopLadder};
use crate::worktree::{Finished, Prepared};

fn context(toml: &str) -> (RunContext, Plan) {
    let manifest = load_str(Path::new("/repo/orch.toml"), toml.into()).expect("valid manifest");
    let plan = Plan::build(
        &manifest,
        &PlanOptions {
            agent: AgentProgram {
                program: "claude".into(),
                prefix: vec![],
            },
            run_id: Uuid::nil(),
        },
    );
    let ctx = RunContext {
        run_id: "20260101T000000.000Z-abcd1234".into(),
        run_dir: "/nonexistent/run".into(),
        startup_delay: Duration::ZERO,
        max_parallel: manifest.settings.max_parallel,
        fail_fast: false,
        ladder: StopLadder::default(),
        ledger_wait: None,
        guardian_exe: "/nonexistent/orch".into(),
        env: Default::default(),
        carried: Default::default(),
        manifest,
    };
    (ctx, plan)
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: Utc::now(),
    }
}

fn exited(step: StepId, code: i32) -> Input {
    Input::Exited(Box::new(Exited {
        step,
        exit: Some(Exit {
            code: Some(code),
            signal: None,
            leaked: vec![],
            stopped_by: None,
            log_faults: vec![],
        }),
        spawn_error: None,
        timed_out: false,
        duration: Duration::from_millis(5),
        outcome: None,
        session_totals: None,
        tail: vec![],
        stdout: None,
    }))
}

fn prepared(branch: &str) -> Prepared {
    Prepared {
        dir: PathBuf::from("/state/wt"),
        cwd: PathBuf::from("/state/wt/sub"),
        branch: branch.into(),
        base_commit: "b".repeat(40),
        included: 0,
    }
}

const TWO: &str = r#"
[settings]
startup_delay = "0s"

[jobs.impl]
isolation = "worktree"
run = ["make"]

[jobs.next]
needs = ["impl"]
run = ["echo", "${{ jobs.impl.outputs.branch }}"]
"#;

/// The first step waits for its worktree, runs in it, and its end (and its dependents) wait for
/// the worktree's commit, whose result joins the outputs.
#[test]
fn an_isolated_job_runs_in_its_worktree_and_ends_after_its_commit() {
    let (ctx, plan) = context(TWO);
    let budgets = Budgets::new(&ctx.manifest, &plan, Spend::default());
    let mut core = Core::new(&ctx, plan, budgets, Utc::now());
    let fx = core.handle(now(), Input::Tick);
    let spec = fx
        .iter()
        .find_map(|e| match e {
            Effect::PrepareWorktree { step: 0, spec } => Some(spec.clone()),
            _ => None,
        })
        .expect("the worktree is asked for first");
    assert!(!fx.iter().any(|e| matches!(e, Effect::Launch(_))));
    assert_eq!(spec.branch, "orch/abcd1234/impl");
    assert_eq!(
        spec.dir,
        ctx.manifest
            .settings
            .state_dir
            .join("worktrees/abcd1234/impl")
    );
    assert!(!core.is_over());

    let fx = core.handle(
        now(),
        Input::WorktreePrepared {
            step: 0,
            result: Ok(prepared("orch/abcd1234/impl")),
        },
    );
    let launch = fx
        .iter()
        .find_map(|e| match e {
            Effect::Launch(l) => Some(l),
            _ => None,
        })
        .expect("then the step launches");
    assert_eq!(launch.cwd, PathBuf::from("/state/wt/sub"));

    core.handle(now(), started_input(0));
    let fx = core.handle(now(), exited(0, 0));
    let finish = fx
        .iter()
        .find_map(|e| match e {
            Effect::FinishWorktree { instance, finish } => Some((*instance, finish.clone())),
            _ => None,
        })
        .expect("its end asks for the commit");
    assert!(finish.1.commit.as_deref().unwrap().contains("impl"));
    assert!(
        finish.1.remove,
        "a completed job's worktree goes (keep = on_failure)"
    );
    assert!(
        !fx.iter()
            .any(|e| matches!(e, Effect::Report(Event::StepFinished { .. })))
    );
    assert!(launched_any(&fx).is_empty(), "`next` waits for the commit");

    let fx = core.handle(
        now(),
        Input::WorktreeFinished {
            instance: finish.0,
            prepared: Box::new(finish.1.prepared.clone()),
            result: Ok(Finished {
                commit: "c".repeat(40),
                committed: true,
                files_changed: 2,
                insertions: 5,
                deletions: 1,
                removed: true,
            }),
        },
    );
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Report(Event::StepFinished {
            status: Status::Completed,
            ..
        })
    )));
    let outputs = core.outputs[0].as_ref().unwrap();
    assert_eq!(outputs["branch"], "orch/abcd1234/impl");
    assert_eq!(outputs["files_changed"], 2);
    assert_eq!(outputs["exit_code"], 0);
    let next = fx
        .iter()
        .find_map(|e| match e {
            Effect::Launch(l) => Some(l),
            _ => None,
        })
        .expect("now `next` launches");
    assert_eq!(next.argv, ["echo", "orch/abcd1234/impl"]);
}

/// A worktree that cannot be made fails the step before it starts; a commit that fails fails
/// a step that had completed, and keeps git's answer in its reason.
#[test]
fn git_failures_fail_the_job_with_what_git_said() {
    let (ctx, plan) = context(TWO);
    let budgets = Budgets::new(&ctx.manifest, &plan, Spend::default());
    let mut core = Core::new(&ctx, plan.clone(), budgets, Utc::now());
    core.handle(now(), Input::Tick);
    core.handle(
        now(),
        Input::WorktreePrepared {
            step: 0,
            result: Err("the branch `x` exists already".into()),
        },
    );
    assert_eq!(core.states[0], Status::Failed);
    assert!(
        core.records[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("exists already")
    );
    assert_eq!(core.states[1], Status::Skipped);
    assert!(core.is_over());

    let budgets = Budgets::new(&ctx.manifest, &plan, Spend::default());
    let mut core = Core::new(&ctx, plan, budgets, Utc::now());
    core.handle(now(), Input::Tick);
    core.handle(
        now(),
        Input::WorktreePrepared {
            step: 0,
            result: Ok(prepared("b")),
        },
    );
    core.handle(now(), started_input(0));
    core.handle(now(), exited(0, 0));
    core.handle(
        now(),
        Input::WorktreeFinished {
            instance: 0,
            prepared: Box::new(prepared("b")),
            result: Err("`git commit` failed: disk full".into()),
        },
    );
    assert_eq!(core.states[0], Status::Failed);
    assert!(
        core.records[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("disk full")
    );
    assert_eq!(core.outputs[0].as_ref().unwrap()["commit"], Value::Null);
    assert_eq!(core.states[1], Status::Skipped);
    assert!(core.is_over());
}

fn started_input(step: StepId) -> Input {
    Input::Executor(ExecutorEvent::Started { step, pid: 4242 })
}

fn launched_any(fx: &[Effect]) -> Vec<StepId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(l) => Some(l.step),
            _ => None,
        })
        .collect()
}
