//! The core driven by a fake executor: inputs in, effects out, time as data. No process, no
//! SQLite, no clock: every test reads like the run it describes.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::agent::AgentProgram;
use crate::ledger::budget::Spend;
use crate::manifest::load_str;
use crate::plan::PlanOptions;
use crate::process::{Exit, StopLadder, StopStage};

/// A manifest, its plan and a context, for one test.
struct Fixture {
    ctx: RunContext,
    plan: Plan,
}

fn fixture(toml: &str) -> Fixture {
    let manifest = load_str(Path::new("orch.toml"), toml.into()).expect("valid manifest");
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
        run_id: "r".into(),
        run_dir: "/nonexistent/run".into(),
        startup_delay: manifest.settings.startup_delay,
        max_parallel: manifest.settings.max_parallel,
        fail_fast: manifest.settings.fail_fast,
        ladder: StopLadder::default(),
        ledger_wait: None,
        guardian_exe: "/nonexistent/orch".into(),
        env: Default::default(),
        manifest,
        carried: Default::default(),
    };
    Fixture { ctx, plan }
}

impl Fixture {
    fn core(&self) -> Core<'_> {
        let budgets = Budgets::new(&self.ctx.manifest, &self.plan, Spend::default());
        Core::new(&self.ctx, self.plan.clone(), budgets, Utc::now())
    }
}

/// A fake clock: a fixed origin plus the time the test says has passed.
#[derive(Clone, Copy)]
struct Clock {
    mono: Instant,
    wall: chrono::DateTime<Utc>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }

    fn at(&self, ms: u64) -> Now {
        Now {
            mono: self.mono + Duration::from_millis(ms),
            wall: self.wall + chrono::Duration::milliseconds(ms as i64),
        }
    }
}

fn launched(fx: &[Effect]) -> Vec<StepId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Launch(l) => Some(l.step),
            _ => None,
        })
        .collect()
}

fn stopped(fx: &[Effect]) -> Vec<StepId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Stop(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn killed(fx: &[Effect]) -> Vec<StepId> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Kill(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn exit(step: StepId, code: Option<i32>, stopped_by: Option<StopStage>) -> Input {
    Input::Exited(Box::new(Exited {
        step,
        exit: Some(Exit {
            code,
            signal: code.is_none().then_some(2),
            leaked: vec![],
            stopped_by,
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

fn started(step: StepId) -> Input {
    Input::Executor(ExecutorEvent::Started {
        step,
        pid: 1000 + step as u32,
    })
}

fn usage(tokens: u64) -> UsageUpdate {
    UsageUpdate {
        tokens: TokenCounts {
            output: tokens,
            ..TokenCounts::default()
        },
        cost_usd: 0.0,
        is_estimate: true,
        price_unknown: false,
        tool_calls_total: 0,
    }
}

const FOUR: &str = r#"
[settings]
startup_delay = "100ms"
max_parallel = 2
[jobs.a]
run = ["true"]
[jobs.b]
run = ["true"]
[jobs.c]
run = ["true"]
[jobs.d]
run = ["true"]
"#;

#[test]
fn launches_follow_max_parallel_and_the_startup_delay_as_data() {
    let f = fixture(FOUR);
    let mut core = f.core();
    let t = Clock::new();
    assert_eq!(launched(&core.handle(t.at(0), Input::Tick)), [0]);
    // The delay is not over: nothing, and the core asks to be woken when it is.
    assert!(launched(&core.handle(t.at(50), Input::Tick)).is_empty());
    assert_eq!(core.wake_at(t.at(50)), Some(t.at(100).mono));
    assert_eq!(launched(&core.handle(t.at(100), Input::Tick)), [1]);
    // Two run: no slot, however much time passes.
    assert!(launched(&core.handle(t.at(900), Input::Tick)).is_empty());
    assert_eq!(core.wake_at(t.at(900)), None);
    core.handle(t.at(901), started(0));
    assert_eq!(
        launched(&core.handle(t.at(950), exit(0, Some(0), None))),
        [2]
    );
    assert!(launched(&core.handle(t.at(960), exit(1, Some(0), None))).is_empty());
    assert_eq!(launched(&core.handle(t.at(1050), Input::Tick)), [3]);
    core.handle(t.at(1100), exit(2, Some(0), None));
    assert!(!core.is_over());
    core.handle(t.at(1200), exit(3, Some(0), None));
    assert!(core.is_over());
    assert!(core.states.iter().all(|s| *s == Status::Completed));
}

#[test]
fn a_failure_skips_its_dependents_and_fail_fast_cancels_the_rest() {
    let f = fixture(
        r#"
[settings]
startup_delay = "0s"
[jobs.a]
run = ["false"]
[jobs.b]
run = ["true"]
needs = ["a"]
[jobs.c]
run = ["true"]
"#,
    );
    let mut core = f.core();
    let t = Clock::new();
    assert_eq!(launched(&core.handle(t.at(0), Input::Tick)), [0, 2]);
    let fx = core.handle(t.at(10), exit(0, Some(1), None));
    assert_eq!(core.states[0], Status::Failed);
    assert_eq!(core.states[1], Status::Skipped);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Report(Event::StepSkipped { reason, .. }) if reason == "skipped: `a` failed"
    )));

    // The same run with fail_fast: the running step is stopped, nothing else starts.
    let f = fixture(&FOUR.replace("max_parallel = 2", "max_parallel = 2\nfail_fast = true"));
    let mut core = f.core();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(100), Input::Tick);
    core.handle(t.at(101), started(1));
    let fx = core.handle(t.at(200), exit(0, Some(1), None));
    assert_eq!(stopped(&fx), [1]);
    assert!(launched(&fx).is_empty());
    assert_eq!(core.stop, Some(CancelReason::FailFast));
    core.handle(t.at(300), exit(1, None, Some(StopStage::Int)));
    assert!(core.is_over());
    core.finish_run();
    assert_eq!(
        core.states,
        [
            Status::Failed,
            Status::Cancelled,
            Status::Cancelled,
            Status::Cancelled
        ]
    );
}

#[test]
fn a_stronger_cancel_reason_replaces_a_weaker_one_never_the_reverse() {
    assert!(CancelReason::FailFast < CancelReason::BudgetStop);
    assert!(CancelReason::BudgetStop < CancelReason::Interrupted);
    assert!(CancelReason::Interrupted < CancelReason::Killed);
    let f = fixture(&FOUR.replace("max_parallel = 2", "max_parallel = 2\nfail_fast = true"));
    let mut core = f.core();
    let t = Clock::new();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(100), Input::Tick);
    core.handle(t.at(101), started(0));
    core.handle(t.at(102), started(1));
    // An interrupt, then a failure: fail_fast does not weaken the interrupt.
    let fx = core.handle(t.at(200), Input::Signal);
    assert_eq!(stopped(&fx), [0, 1]);
    assert_eq!(core.stop, Some(CancelReason::Interrupted));
    let fx = core.handle(t.at(210), exit(0, Some(1), None));
    assert!(stopped(&fx).is_empty());
    assert_eq!(core.stop, Some(CancelReason::Interrupted));
    // A second signal kills what is left; a third leaves at once.
    let fx = core.handle(t.at(220), Input::Signal);
    assert_eq!(killed(&fx), [1]);
    assert_eq!(core.stop, Some(CancelReason::Killed));
    let fx = core.handle(t.at(230), Input::Signal);
    assert!(fx.iter().any(|e| matches!(e, Effect::Exit)));
    core.handle(t.at(240), exit(1, None, Some(StopStage::Kill)));
    assert_eq!(core.states[1], Status::Cancelled);
}

#[test]
fn a_step_whose_timeout_came_first_is_timed_out_not_cancelled() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\n[jobs.slow]\nrun = [\"sleep\", \"9\"]\ntimeout = \"1s\"\n\
         [jobs.other]\nrun = [\"sleep\", \"9\"]\n",
    );
    let mut core = f.core();
    let t = Clock::new();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(1), started(0));
    core.handle(t.at(2), started(1));
    core.handle(
        t.at(1000),
        Input::Executor(ExecutorEvent::TimedOut { step: 0 }),
    );
    // The interrupt stops both; the timed-out one is already being stopped by its executor.
    let fx = core.handle(t.at(1100), Input::Signal);
    assert_eq!(stopped(&fx), [1]);
    core.handle(t.at(1200), exit(0, None, Some(StopStage::Int)));
    core.handle(t.at(1300), exit(1, None, Some(StopStage::Int)));
    assert_eq!(core.states, [Status::TimedOut, Status::Cancelled]);
    assert!(
        core.records[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("timed out after 1s")
    );
}

#[test]
fn a_spent_budget_in_block_mode_stops_its_steps_and_blocks_the_next() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\n[budget]\nmode = \"block\"\ntokens = 1000\n\
         [jobs.spender]\nprompt = \"spend\"\n[jobs.after]\nprompt = \"after\"\nneeds = [\"spender\"]\n",
    );
    let mut core = f.core();
    let t = Clock::new();
    assert_eq!(launched(&core.handle(t.at(0), Input::Tick)), [0]);
    core.handle(t.at(1), started(0));
    let fx = core.handle(
        t.at(2),
        Input::Executor(ExecutorEvent::Usage {
            step: 0,
            update: usage(400),
        }),
    );
    assert!(stopped(&fx).is_empty());
    // The write goes to the ledger writer as data; the core never waits for it.
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Ledger(Write::Usage { step: 0, .. })))
    );
    let fx = core.handle(
        t.at(3),
        Input::Executor(ExecutorEvent::Usage {
            step: 0,
            update: usage(1200),
        }),
    );
    assert_eq!(stopped(&fx), [0]);
    core.handle(t.at(4), exit(0, Some(0), Some(StopStage::Int)));
    assert_eq!(core.states[0], Status::BudgetExceeded);
    // The run is not stopped as a whole, but the spent budget blocks what needs the step.
    assert_eq!(core.stop, None);
    assert!(core.is_over());
    assert!(matches!(core.states[1], Status::Skipped | Status::Blocked));
}

#[test]
fn a_panicking_executor_becomes_a_failed_step_and_the_run_goes_on() {
    let f = fixture(FOUR);
    let mut core = f.core();
    let t = Clock::new();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(1), started(0));
    let fx = core.handle(
        t.at(100),
        Input::Panicked {
            step: 0,
            message: "boom".into(),
        },
    );
    assert_eq!(launched(&fx), [1]);
    assert_eq!(core.states[0], Status::Failed);
    assert_eq!(
        core.records[0].reason.as_deref(),
        Some("the executor panicked: boom")
    );
    assert_eq!(core.records[0].duration, Duration::from_millis(100));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Ledger(Write::FinishStep {
            step: 0,
            status: "failed",
            ..
        })
    )));
}

/// The shell's side of a panic, for real: an executor-like task that panics inside a `JoinSet`
/// comes back as a `JoinError` whose id names the step, and the core ends the run.
#[tokio::test]
async fn a_panic_inside_the_join_set_ends_the_run_with_results() {
    let f = fixture("[jobs.only]\nrun = [\"true\"]\n");
    let mut core = f.core();
    let t = Clock::new();
    let fx = core.handle(t.at(0), Input::Tick);
    let mut tasks: tokio::task::JoinSet<Exited> = tokio::task::JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    for step in launched(&fx) {
        let id = tasks
            .spawn(async move { panic!("the fake executor of step {step} panicked") })
            .id();
        ids.insert(id, step);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let e = joined.expect_err("the task panicked");
        assert!(e.is_panic());
        let step = ids[&e.id()];
        let message = super::super::dispatcher::panic_message(e.into_panic());
        core.handle(t.at(10), Input::Panicked { step, message });
    }
    assert!(core.is_over());
    assert_eq!(core.states, [Status::Failed]);
    assert_eq!(
        core.records[0].reason.as_deref(),
        Some("the executor panicked: the fake executor of step 0 panicked")
    );
}

#[test]
fn a_stop_asked_for_while_a_step_starts_reaches_it_when_it_runs() {
    let f = fixture(FOUR);
    let mut core = f.core();
    let t = Clock::new();
    core.handle(t.at(0), Input::Tick);
    // Launched, not yet spawned: nothing to signal yet.
    let fx = core.handle(t.at(10), Input::Signal);
    assert!(stopped(&fx).is_empty());
    let fx = core.handle(t.at(20), started(0));
    assert_eq!(stopped(&fx), [0]);
    let fx = core.handle(t.at(30), Input::Signal);
    assert_eq!(killed(&fx), [0]);
}

#[test]
fn a_rejected_rate_limit_holds_agent_launches_until_it_resets_and_the_core_says_when() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\nmax_parallel = 1\n\
         [jobs.first]\nprompt = \"a\"\n[jobs.second]\nprompt = \"b\"\n[jobs.tool]\nrun = [\"true\"]\n",
    );
    let mut core = f.core();
    // Whole seconds: the reset time is epoch seconds.
    let mut t = Clock::new();
    t.wall = chrono::DateTime::from_timestamp(t.wall.timestamp(), 0).unwrap();
    assert_eq!(launched(&core.handle(t.at(0), Input::Tick)), [0]);
    core.handle(t.at(1), started(0));
    let record = RateLimitRecord {
        status: "rejected".into(),
        resets_at: Some(t.wall.timestamp() + 60),
        rate_limit_type: Some("five_hour".into()),
        utilization: None,
    };
    let fx = core.handle(
        t.at(2),
        Input::Executor(ExecutorEvent::RateLimited { step: 0, record }),
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Report(Event::LaunchesPaused { .. })))
    );
    // The process step may start; the agent may not.
    assert_eq!(
        launched(&core.handle(t.at(10), exit(0, Some(0), None))),
        [2]
    );
    core.handle(t.at(20), exit(2, Some(0), None));
    assert!(launched(&core.handle(t.at(30_000), Input::Tick)).is_empty());
    let wake = core.wake_at(t.at(30_000)).expect("woken at the reset");
    assert!(wake >= t.at(60_000).mono && wake <= t.at(60_010).mono);
    let fx = core.handle(t.at(60_001), Input::Tick);
    assert!(matches!(fx[0], Effect::Report(Event::LaunchesResumed)));
    assert_eq!(launched(&fx), [1]);
}
