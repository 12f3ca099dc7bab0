//! The simulated agent, `orch agent-sim <claude argv...>`: a stand-in for `claude -p
//! --output-format stream-json --verbose` that writes realistic stream-json (modelled on the
//! Claude Code 2.1.331 fixtures) so orch's tests never need the real CLI or the network.
//!
//! Owns the driver: argv and environment in, lines out with delays, signals, the grandchild and
//! the session state file. It must never talk to the network or to orch, and never decide
//! anything orch should decide; it only behaves like the CLI, including its odd corners (one
//! API response as two `assistant` lines sharing a `message.id` with a placeholder
//! `output_tokens: 1`; cumulative `total_cost_usd`/`modelUsage` across `--resume`; no result
//! after SIGTERM; a result with the cost so far after SIGINT).
//!
//! Knobs, all environment variables:
//! - `ORCH_SIM_TURNS=N`: API responses per run (default 2). Each but the last is a text line and
//!   a `tool_use` line sharing one message id, then a `user` tool result; the last is a text line.
//! - `ORCH_SIM_DELAY_MS=N`: sleep between lines (default 20).
//! - `ORCH_SIM_EXIT=N`: exit code after the result (default 0, or 1 when the result is an error).
//! - `ORCH_SIM_IS_ERROR=1`: the result has `is_error: true` although its subtype is `success`.
//! - `ORCH_SIM_HUGE_LINE_MB=N`: the first text line carries N MB of text.
//! - `ORCH_SIM_GARBAGE=1`: non-JSON, non-UTF-8, truncated and blank lines between real ones.
//! - `ORCH_SIM_IGNORE_SIGTERM=1`: SIGTERM is ignored (for the SIGKILL end of the stop ladder).
//! - `ORCH_SIM_GRANDCHILD=1`: spawn `sleep 1000` inheriting stdout, never waited for; its pid
//!   goes to stderr as `grandchild pid N`.
//! - `ORCH_SIM_NO_RESULT=1`: never write a result (exit 0, or `ORCH_SIM_EXIT`).
//! - `ORCH_SIM_TOKENS_PER_TURN=N`: usage scale (default 1000), for overspending tests.
//! - `ORCH_SIM_STREAM_MB=N`: N MB of assistant lines of the first message, without delay, for
//!   throughput benchmarks.
//! - `ORCH_SIM_HANG=1`: sleep forever after the init line, for timeout tests.
//! - `ORCH_SIM_ITEMS=N`: items in each array of the structured output that `--json-schema` asks
//!   for (default 3; 0 allowed; arrays inside array items get at most 3), within the schema's
//!   `minItems`/`maxItems`. See [`Synth`] for how the rest of the value is made.
//! - `ORCH_SIM_STRUCTURED=valid|missing|invalid|exhausted`: how a run with `--json-schema`
//!   answers (default `valid`: a `StructuredOutput` tool call with the synthesised value, then a
//!   result carrying it as `structured_output`); see [`Structured`].
//! - `ORCH_SIM_FAIL=overloaded|api_retry|usage_limit|rate_limit`: the first
//!   `ORCH_SIM_FAIL_ATTEMPTS=N` (default 1) invocations of each session fail this way (see
//!   [`Failure`]), after `ORCH_SIM_FAIL_AFTER_TURNS=K` normal responses (default 0); a rate or
//!   usage limit resets `ORCH_SIM_RESETS_IN_S=N` seconds later (default 2). Invocations are
//!   counted per session id in `<state dir>/invocations/`, so a retry in a new process sees
//!   the count of the attempts before it.
//! - `ORCH_SIM_WRITE=FILE`: write the prompt and a newline to FILE (relative to the working
//!   folder) before the first line, as an edit of the agent would; for worktree tests.
//! - `ORCH_SIM_STATE_DIR=DIR`: session totals. `orch run --simulate` sets it to
//!   `<state folder>/agent-sim` (see [`session_env`]) unless it is set already, so runs with
//!   different state folders never share or collide on sessions; run by hand, the default is
//!   `.orch/agent-sim` under the working folder, never a shared folder under `/tmp`.
//!
//! Limits follow the CLI: `--max-turns N` stops after N responses with `error_max_turns`;
//! `--max-budget-usd U` stops after the response that crosses U with `error_max_budget_usd`;
//! both exit 1. SIGINT writes a `user` interruption line and an `error_during_execution` result
//! with the cost so far, then exits 0. SIGTERM exits 143 without a result.

mod args;
mod script;
mod state;
mod synth;

pub use args::{ArgError, Failure, Knobs, SessionArg, SimArgs, Structured};
pub use script::{Emit, STRUCTURED_OUTPUT_TOOL, Script, response_usage};
pub use state::SessionState;
pub use synth::{MAX_DEPTH, NESTED_ITEMS, Synth};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::ffi::{OsString, c_int};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The variable that tells the simulated agent where its session files live.
pub const STATE_DIR_ENV: &str = "ORCH_SIM_STATE_DIR";

/// The file the simulated agent waits for after its first line (see `main`).
pub const WAIT_FOR_ENV: &str = "ORCH_SIM_WAIT_FOR";

/// What `orch run --simulate` adds to each job's environment: [`STATE_DIR_ENV`] set to
/// `<state_dir>/agent-sim` (made absolute, as steps run in their own working folders); `None`
/// when `inherited` (orch's own environment) or the job already set it, which wins.
pub fn session_env(
    state_dir: &std::path::Path,
    inherited: Option<&std::ffi::OsStr>,
    job_env: &[(String, String)],
) -> Option<(String, String)> {
    if inherited.is_some() || job_env.iter().any(|(key, _)| key == STATE_DIR_ENV) {
        return None;
    }
    let dir = std::path::absolute(state_dir.join("agent-sim"))
        .unwrap_or_else(|_| state_dir.join("agent-sim"));
    Some((
        STATE_DIR_ENV.to_string(),
        dir.to_string_lossy().into_owned(),
    ))
}

static SIGINT_SEEN: AtomicBool = AtomicBool::new(false);
static SIGTERM_SEEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: c_int) {
    // Only an atomic store: anything else is not async-signal-safe.
    if signal == Signal::SIGINT as c_int {
        SIGINT_SEEN.store(true, Ordering::SeqCst);
    } else {
        SIGTERM_SEEN.store(true, Ordering::SeqCst);
    }
}

fn install_signal_handlers(ignore_sigterm: bool) -> nix::Result<()> {
    let flag = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to atomics, which is async-signal-safe.
    unsafe {
        sigaction(Signal::SIGINT, &flag)?;
        sigaction(
            Signal::SIGTERM,
            if ignore_sigterm { &ignore } else { &flag },
        )?;
    }
    Ok(())
}

/// Entry point of `orch agent-sim ARGS...`: behaves like `claude -p ... --output-format
/// stream-json --verbose` with `ARGS` as its argv.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match SimArgs::parse(&args) {
        Ok(args) => args,
        Err(e) => return fail(&e.message, e.exit_code),
    };
    let mut knobs = match Knobs::from_lookup(|key| std::env::var(key).ok()) {
        Ok(knobs) => knobs,
        Err(e) => return fail(&format!("orch agent-sim: {e}"), 2),
    };
    if let Err(e) = install_signal_handlers(knobs.ignore_sigterm) {
        return fail(
            &format!("orch agent-sim: cannot install signal handlers: {e}"),
            1,
        );
    }
    let (session_id, prior) = match &args.session {
        SessionArg::New(id) => {
            let id = id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            (id, SessionState::default())
        }
        SessionArg::Resume(id) => match state::load(&knobs.state_dir, id) {
            Ok(Some(state)) => (id.clone(), state),
            Ok(None) => return fail(&format!("No conversation found with session ID: {id}"), 1),
            Err(e) => return fail(&format!("orch agent-sim: cannot read session {id}: {e}"), 1),
        },
        SessionArg::Fork { from, to } => match state::load(&knobs.state_dir, from) {
            // The copy starts with the conversation (and the totals) of the session it forks.
            Ok(Some(state)) => (
                to.clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                state,
            ),
            Ok(None) => {
                return fail(&format!("No conversation found with session ID: {from}"), 1);
            }
            Err(e) => {
                return fail(
                    &format!("orch agent-sim: cannot read session {from}: {e}"),
                    1,
                );
            }
        },
    };
    if knobs.fail.is_some() {
        match state::count_invocation(&knobs.state_dir, &session_id) {
            Ok(n) if n <= knobs.fail_attempts => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                knobs.failing = Some((now + knobs.resets_in_s) as i64);
            }
            Ok(_) => {}
            Err(e) => {
                return fail(
                    &format!("orch agent-sim: cannot count invocations of {session_id}: {e}"),
                    1,
                );
            }
        }
    }
    if let Ok(file) = std::env::var("ORCH_SIM_WRITE") {
        if let Err(e) = std::fs::write(&file, format!("{}\n", args.prompt)) {
            return fail(&format!("orch agent-sim: cannot write {file}: {e}"), 1);
        }
    }
    // Before our handlers exist, so the grandchild does not inherit an ignored SIGTERM.
    if knobs.grandchild {
        spawn_grandchild();
    }
    if let Err(e) = install_signal_handlers(knobs.ignore_sigterm) {
        return fail(
            &format!("orch agent-sim: cannot install signal handlers: {e}"),
            1,
        );
    }
    let state_dir = knobs.state_dir.clone();
    let delay = Duration::from_millis(knobs.delay_ms);
    let mut script = Script::new(args, knobs, session_id.clone(), prior);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let persist = |script: &mut Script| {
        if let Some(state) = script.take_dirty_state()
            && let Err(e) = state::save(&state_dir, &session_id, &state)
        {
            eprintln!("orch agent-sim: cannot save session {session_id}: {e}");
        }
    };
    // `ORCH_SIM_WAIT_FOR=FILE`: after the first line, the step keeps running until FILE exists
    // (tests that follow a running step end it when they have seen what they wait for).
    let mut wait_for = std::env::var_os(WAIT_FOR_ENV).map(std::path::PathBuf::from);
    let mut lines_out = 0u64;
    loop {
        persist(&mut script);
        if lines_out > 0
            && let Some(file) = wait_for.take()
        {
            while !file.exists() && !signalled() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if SIGTERM_SEEN.load(Ordering::SeqCst) {
            return ExitCode::from(143);
        }
        if SIGINT_SEEN.load(Ordering::SeqCst) {
            let lines = script.interrupt();
            persist(&mut script);
            let written = lines
                .iter()
                .try_for_each(|l| out.write_all(l))
                .and_then(|()| out.flush());
            return if written.is_ok() {
                ExitCode::from(script.exit_code())
            } else {
                ExitCode::from(1)
            };
        }
        let written = match script.next_emit() {
            None => break,
            Some(Emit::Line(line)) => out.write_all(&line).and_then(|()| out.flush()).map(|()| {
                lines_out += 1;
                sleep_unless_signalled(delay);
            }),
            Some(Emit::Repeat { line, count }) => (0..count)
                .try_for_each(|_| out.write_all(&line))
                .and_then(|()| out.flush()),
            Some(Emit::Hang) => {
                while !signalled() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            }
        };
        if written.is_err() {
            // The reader went away (EPIPE): nothing left to tell anyone.
            return ExitCode::from(1);
        }
    }
    persist(&mut script);
    ExitCode::from(script.exit_code())
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

fn signalled() -> bool {
    SIGINT_SEEN.load(Ordering::SeqCst) || SIGTERM_SEEN.load(Ordering::SeqCst)
}

/// Sleeps `total` in short slices so a signal is acted on promptly.
fn sleep_unless_signalled(total: Duration) {
    let slice = Duration::from_millis(5);
    let mut left = total;
    while !left.is_zero() && !signalled() {
        let step = left.min(slice);
        std::thread::sleep(step);
        left -= step;
    }
}

/// A grandchild that keeps our stdout open after we exit, for leak-detection tests.
fn spawn_grandchild() {
    match std::process::Command::new("sleep")
        .arg("1000")
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        // Dropping the handle neither waits for nor kills the child: that is the point.
        Ok(child) => eprintln!("grandchild pid {}", child.id()),
        Err(e) => eprintln!("orch agent-sim: cannot spawn grandchild: {e}"),
    }
}

/// A whole run without I/O, for tests: the bytes the simulator would write, the session state
/// after it, and the exit code. `Hang` is skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// The session's cumulative state afterwards.
    pub state: SessionState,
    /// The exit code.
    pub exit_code: u8,
}

/// Runs a script to the end (or, with `interrupt_after = Some(n)`, delivers SIGINT after `n`
/// emits) and collects its output.
pub fn transcript(
    args: SimArgs,
    knobs: Knobs,
    session_id: &str,
    prior: SessionState,
    interrupt_after: Option<usize>,
) -> Transcript {
    let mut script = Script::new(args, knobs, session_id.to_owned(), prior);
    let mut stdout = Vec::new();
    let mut emitted = 0;
    loop {
        if interrupt_after == Some(emitted) {
            script
                .interrupt()
                .iter()
                .for_each(|l| stdout.extend_from_slice(l));
            break;
        }
        match script.next_emit() {
            None => break,
            Some(Emit::Line(line)) => stdout.extend_from_slice(&line),
            Some(Emit::Repeat { line, count }) => {
                (0..count).for_each(|_| stdout.extend_from_slice(&line))
            }
            Some(Emit::Hang) => {}
        }
        emitted += 1;
    }
    Transcript {
        stdout,
        state: script.state().clone(),
        exit_code: script.exit_code(),
    }
}

#[cfg(test)]
mod tests;
