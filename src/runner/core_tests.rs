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

fn reports(fx: &[Effect]) -> Vec<&Event> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Report(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

fn launch_of(fx: &[Effect]) -> &Launch {
    fx.iter()
        .find_map(|e| match e {
            Effect::Launch(l) => Some(&**l),
            _ => None,
        })
        .expect("a launch")
}

/// An agent attempt that ended with Claude Code's 529 result, its session holding `cost` so far.
fn overloaded(step: StepId, cost: f64) -> Input {
    let Input::Exited(mut e) = exit(step, Some(1), None) else {
        unreachable!()
    };
    e.outcome = Some(crate::agent::accounting::Outcome {
        success: false,
        exit_code: Some(1),
        result: Some(crate::agent::accounting::ResultSummary {
            subtype: "success".into(),
            is_error: true,
            text: Some("API Error: 529 overloaded".into()),
            errors: vec![],
            api_error_status: Some(529),
            structured: None,
        }),
        usage: crate::agent::accounting::StepUsage {
            tokens: TokenCounts {
                output: 100,
                ..TokenCounts::default()
            },
            cost_usd: cost,
            ..Default::default()
        },
    });
    let mut models = std::collections::BTreeMap::new();
    if cost > 0.0 {
        models.insert("claude-opus-5-5".to_string(), Default::default());
    }
    e.session_totals = Some(SessionTotals {
        cost_usd: cost,
        models,
        basis: None,
    });
    Input::Exited(e)
}

#[test]
fn a_failed_attempt_is_relaunched_after_its_backoff_and_dependents_wait_for_the_last() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\n\
         [jobs.a]\nrun = [\"false\"]\nretry = { attempts = 3, backoff = \"1s\", jitter = false }\n\
         [jobs.b]\nrun = [\"true\"]\nneeds = [\"a\"]\n",
    );
    let mut core = f.core();
    let t = Clock::new();
    assert_eq!(launched(&core.handle(t.at(0), Input::Tick)), [0]);
    core.handle(t.at(1), started(0));
    let fx = core.handle(t.at(10), exit(0, Some(1), None));
    assert!(launched(&fx).is_empty(), "b waits for a's last attempt");
    let retrying = reports(&fx)
        .into_iter()
        .find_map(|e| match e {
            Event::StepRetrying {
                attempt,
                kind,
                delay,
                counted,
                ..
            } => Some((*attempt, *kind, *delay, *counted)),
            _ => None,
        })
        .expect("a retry");
    assert_eq!(retrying, (2, RetryOn::Exit, Duration::from_secs(1), true));
    assert!(!core.is_over());
    assert_eq!(core.wake_at(t.at(10)), Some(t.at(1010).mono));
    assert!(launched(&core.handle(t.at(1009), Input::Tick)).is_empty());
    let fx = core.handle(t.at(1010), Input::Tick);
    assert_eq!(launched(&fx), [0]);
    assert!(launch_of(&fx).log.ends_with("001-a.a2.log"));
    // Twice the backoff before the third.
    core.handle(t.at(1011), started(0));
    core.handle(t.at(1100), exit(0, Some(1), None));
    assert_eq!(core.wake_at(t.at(1100)), Some(t.at(3100).mono));
    assert_eq!(launched(&core.handle(t.at(3100), Input::Tick)), [0]);
    core.handle(t.at(3101), started(0));
    // The third attempt is the last: its failure is final and skips b.
    let fx = core.handle(t.at(3200), exit(0, Some(1), None));
    assert!(launched(&fx).is_empty());
    assert_eq!(core.states, [Status::Failed, Status::Skipped]);
    let numbers: Vec<u32> = core.records[0].attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(core.is_over());
}

#[test]
fn an_agent_retry_continues_a_session_with_turns_and_starts_afresh_without() {
    let toml = "[settings]\nstartup_delay = \"0s\"\n\
         [jobs.a]\nprompt = \"do it\"\nretry = { attempts = 2, backoff = \"1s\", jitter = false }\n";
    for (cost, resumes) in [(0.02, true), (0.0, false)] {
        let f = fixture(toml);
        let mut core = f.core();
        let t = Clock::new();
        core.handle(t.at(0), Input::Tick);
        core.handle(t.at(1), started(0));
        core.handle(t.at(10), overloaded(0, cost));
        let fx = core.handle(t.at(1010), Input::Tick);
        let launch = launch_of(&fx);
        let argv = &launch.argv;
        assert_eq!(argv.contains(&"--resume".to_string()), resumes, "{argv:?}");
        assert_eq!(
            argv.contains(&"--session-id".to_string()),
            !resumes,
            "{argv:?}"
        );
        let prompt = if resumes {
            "Continue where you left off."
        } else {
            "do it"
        };
        assert_eq!(argv.last().map(String::as_str), Some(prompt));
        // A resumed attempt's accounting starts from the session's totals.
        assert_eq!(
            launch
                .agent
                .as_ref()
                .map(|p| p.as_ref().map(|t| t.cost_usd)),
            Some(resumes.then_some(cost))
        );
        assert_eq!(core.records[0].attempts[0].kind, Some(RetryOn::Overloaded));
    }
}

#[test]
fn a_rate_limit_is_waited_out_free_and_one_beyond_max_pause_ends_the_run() {
    let toml = |max_pause: &str| {
        format!(
            "[settings]\nstartup_delay = \"0s\"\nmax_pause = \"{max_pause}\"\n\
             [jobs.a]\nprompt = \"a\"\n[jobs.b]\nprompt = \"b\"\nneeds = [\"a\"]\n"
        )
    };
    let rejected = |t: &Clock, secs: i64| {
        Input::Executor(ExecutorEvent::RateLimited {
            step: 0,
            record: RateLimitRecord {
                status: "rejected".into(),
                resets_at: Some(t.wall.timestamp() + secs),
                rate_limit_type: None,
                utilization: None,
            },
        })
    };
    let mut t = Clock::new();
    t.wall = chrono::DateTime::from_timestamp(t.wall.timestamp(), 0).unwrap();
    // Within max_pause: retried at the reset without spending an attempt (no `retry` at all).
    let f = fixture(&toml("1h"));
    let mut core = f.core();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(1), started(0));
    core.handle(t.at(2), rejected(&t, 60));
    let fx = core.handle(t.at(10), overloaded(0, 0.01));
    assert!(reports(&fx).iter().any(|e| matches!(
        e,
        Event::StepRetrying {
            kind: RetryOn::RateLimit,
            counted: false,
            resume: true,
            ..
        }
    )));
    assert!(launched(&core.handle(t.at(59_000), Input::Tick)).is_empty());
    let wake = core.wake_at(t.at(59_000)).expect("woken at the reset");
    assert!(wake >= t.at(60_000).mono && wake <= t.at(60_010).mono);
    assert_eq!(launched(&core.handle(t.at(60_001), Input::Tick)), [0]);
    // Beyond it: the run stops launching and ends as rate limited.
    let f = fixture(&toml("10s"));
    let mut core = f.core();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(1), started(0));
    let fx = core.handle(t.at(2), rejected(&t, 3600));
    assert!(
        reports(&fx)
            .iter()
            .any(|e| matches!(e, Event::PauseTooLong { .. }))
    );
    assert!(stopped(&fx).is_empty(), "what runs may end on its own");
    core.handle(t.at(10), overloaded(0, 0.01));
    assert!(core.is_over());
    core.finish_run();
    assert_eq!(core.states, [Status::Failed, Status::Cancelled]);
    assert_eq!(core.stop, Some(CancelReason::RateLimited));
}

#[test]
fn throttling_halves_the_agents_that_may_run_and_a_quiet_period_restores_them() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\nthrottle_quiet = \"10s\"\nmax_parallel = 4\n\
         [jobs.a]\nprompt = \"a\"\n[jobs.b]\nprompt = \"b\"\n[jobs.c]\nprompt = \"c\"\n\
         [jobs.d]\nprompt = \"d\"\n[jobs.e]\nprompt = \"e\"\n[jobs.f]\nprompt = \"f\"\n\
         [jobs.tool]\nrun = [\"true\"]\nneeds = [\"a\"]\n",
    );
    let mut core = f.core();
    let t = Clock::new();
    // Four of six agents run when the API throttles.
    assert_eq!(launched(&core.handle(t.at(0), Input::Tick)), [0, 1, 2, 3]);
    let seen = super::retry::ApiRetrySeen {
        attempt: 1,
        status: Some(529),
        error: Some("overloaded".into()),
    };
    let fx = core.handle(
        t.at(5),
        Input::Executor(ExecutorEvent::ApiRetried { step: 1, seen }),
    );
    assert!(
        reports(&fx)
            .iter()
            .any(|e| matches!(e, Event::ConcurrencyChanged { limit: Some(2), .. }))
    );
    // Two end: four slots but a limit of two agents, two still running.
    assert!(launched(&core.handle(t.at(100), exit(2, Some(0), None))).is_empty());
    assert!(launched(&core.handle(t.at(110), exit(3, Some(0), None))).is_empty());
    // a ends: one agent runs, so one more may start, and the process step a gates.
    assert_eq!(
        launched(&core.handle(t.at(120), exit(0, Some(0), None))),
        [4, 6]
    );
    let fx = core.handle(t.at(130), exit(1, Some(0), None));
    assert_eq!(launched(&fx), [5]);
    // After the quiet period the limit rises; the core wakes for it.
    assert_eq!(core.wake_at(t.at(200)), Some(t.at(10_005).mono));
    let fx = core.handle(t.at(10_005), Input::Tick);
    assert!(
        reports(&fx)
            .iter()
            .any(|e| matches!(e, Event::ConcurrencyChanged { limit: Some(3), .. }))
    );
}

#[test]
fn an_interrupt_while_a_retry_waits_cancels_it_with_what_it_spent() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\n\
         [jobs.a]\nprompt = \"a\"\nretry = { attempts = 3, backoff = \"10s\" }\n",
    );
    let mut core = f.core();
    let t = Clock::new();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(1), started(0));
    core.handle(t.at(10), overloaded(0, 0.02));
    assert!(!core.is_over(), "the retry waits");
    core.handle(t.at(20), Input::Signal);
    assert!(core.is_over());
    assert_eq!(core.wake_at(t.at(20)), None);
    core.finish_run();
    assert_eq!(core.states, [Status::Cancelled]);
    let usage = core.records[0]
        .usage
        .as_ref()
        .expect("the first attempt's spend");
    assert_eq!(usage.tokens.output, 100);
    assert_eq!(core.records[0].attempts.len(), 1);
}

#[test]
fn a_chained_step_that_failed_before_its_first_turn_runs_its_own_command_again() {
    let f = fixture(
        "[settings]\nstartup_delay = \"0s\"\n\
         [jobs.a]\npre_commands = [\"/first\"]\nprompt = \"second\"\n\
         retry = { attempts = 2, backoff = \"1s\", jitter = false }\n",
    );
    let mut core = f.core();
    let t = Clock::new();
    core.handle(t.at(0), Input::Tick);
    core.handle(t.at(1), started(0));
    // The first step completes with turns in the session.
    let Input::Exited(mut first) = overloaded(0, 0.02) else {
        unreachable!()
    };
    first.outcome = None;
    first.exit.as_mut().unwrap().code = Some(0);
    assert_eq!(launched(&core.handle(t.at(10), Input::Exited(first))), [1]);
    core.handle(t.at(11), started(1));
    // The second fails with the session's totals unchanged: it never got a turn.
    core.handle(t.at(20), overloaded(1, 0.02));
    let fx = core.handle(t.at(1020), Input::Tick);
    let argv = &launch_of(&fx).argv;
    assert!(argv.contains(&"--resume".to_string()), "{argv:?}");
    assert_eq!(argv.last().map(String::as_str), Some("second"));
}
