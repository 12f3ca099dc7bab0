//! The executor: one task per step attempt. Spawns the step's process, reads its lines, keeps the
//! accounting of an agent step, enforces the step's timeout, and reports back to the dispatcher.
//!
//! It never decides a step's final status (the dispatcher does, knowing why a stop was asked for)
//! and never prints; it only sends [`ExecutorEvent`]s and returns how the attempt [`Exited`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::agent::accounting::{Accounting, Outcome, RateLimitRecord, SessionTotals, UsageUpdate};
use crate::agent::stream::{self, StreamEvent};
use crate::plan::StepId;
use crate::process::{self, Exit, Guardian, SpawnSpec, StopLadder, Stopper, Stream};

use super::slurm::Cluster;
use super::slurm_step::Remote;

/// Longest line kept whole in memory; Claude Code's tool results can be many megabytes.
const MAX_LINE_BYTES: usize = 64 << 20;
/// Lines kept in memory per step, for the results file and error reports.
const TAIL_LINES: usize = 20;
const TAIL_LINE_CHARS: usize = 400;
/// Most bytes of one line turned into display text (the whole line stays in the log).
const DISPLAY_LINE_BYTES: usize = 64 << 10;
/// Least time between two output events of one step.
const OUTPUT_EVERY: Duration = Duration::from_millis(200);

/// Everything an executor needs to run one step.
#[derive(Debug)]
pub struct Launch {
    pub step: StepId,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub stderr_log: PathBuf,
    pub timeout: Duration,
    pub ladder: StopLadder,
    /// The job's name (only the test hook that panics an executor reads it).
    pub job: String,
    /// Keep this many bytes of the end of stdout as the step's `stdout` output (process jobs).
    pub capture: Option<usize>,
    /// For agent steps: the session's totals after the previous step of its chain.
    pub agent: Option<Option<SessionTotals>>,
    /// Set when the step runs on Slurm.
    pub slurm: Option<super::slurm::SlurmStep>,
}

/// What an executor tells the dispatcher while its step runs: plain data, which the dispatcher
/// hands to the core as it is ([`super::core::Input::Executor`]).
#[derive(Debug)]
pub enum ExecutorEvent {
    /// The process runs.
    Started {
        step: StepId,
        pid: u32,
    },
    Output {
        step: StepId,
        line: String,
    },
    Usage {
        step: StepId,
        update: UsageUpdate,
    },
    RateLimited {
        step: StepId,
        record: RateLimitRecord,
    },
    /// Claude Code said which model it runs (its `init` line).
    Model {
        step: StepId,
        model: String,
    },
    /// The step's timeout fired and the executor is stopping it.
    TimedOut {
        step: StepId,
    },
    /// A usage figure of the step was capped or rejected by the stream parser.
    UsageAnomaly {
        step: StepId,
        anomaly: crate::agent::stream::Anomaly,
    },
    /// Writing the step's log began to fail (the pipe is drained on regardless).
    LogWriteFailed {
        step: StepId,
        fault: process::LogFault,
    },
    /// Claude Code retried a failed API call itself (a `system/api_retry` line).
    ApiRetried {
        step: StepId,
        seen: super::retry::ApiRetrySeen,
    },
    /// Slurm placed the step on a node (its wrapper started there).
    Placed {
        step: StepId,
        node: String,
        /// Slurm's `JOB.STEP`.
        job_step: String,
    },
}

/// An executor event on the channel to the dispatcher. `Started` brings the step's stopper,
/// which the dispatcher keeps: the core decides on plain data and never holds a handle.
pub struct Sent {
    pub event: ExecutorEvent,
    pub stopper: Option<Stopper>,
}

impl From<ExecutorEvent> for Sent {
    fn from(event: ExecutorEvent) -> Sent {
        Sent {
            event,
            stopper: None,
        }
    }
}

/// How a step attempt ended, as far as the executor knows.
#[derive(Debug)]
pub struct Exited {
    pub step: StepId,
    /// `None` when the process could not be spawned.
    pub exit: Option<Exit>,
    pub spawn_error: Option<String>,
    pub timed_out: bool,
    pub duration: Duration,
    /// The accounting's verdict, for agent steps.
    pub outcome: Option<Outcome>,
    pub session_totals: Option<SessionTotals>,
    /// The last lines of output.
    pub tail: Vec<String>,
    /// The end of stdout, when the launch asked for it.
    pub stdout: Option<super::outputs::Captured>,
}

impl Exited {
    /// The end of an executor that panicked: the step failed, with the panic's message.
    pub fn panicked(step: StepId, message: String) -> Exited {
        Exited {
            step,
            exit: None,
            spawn_error: Some(format!("the executor panicked: {message}")),
            timed_out: false,
            duration: Duration::ZERO,
            outcome: None,
            session_totals: None,
            tail: Vec::new(),
            stdout: None,
        }
    }
}

/// Runs one step to its end and says how it ended. Never panics on bad output. Every event it
/// sent is in the channel before it returns.
pub async fn execute(
    launch: Launch,
    guardian: Arc<Guardian>,
    cluster: Option<Arc<Cluster>>,
    tx: mpsc::Sender<Sent>,
) -> Exited {
    let started = Instant::now();
    let step = launch.step;
    let mut spec = SpawnSpec {
        program: PathBuf::from(&launch.argv[0]),
        args: launch.argv[1..].iter().map(OsString::from).collect(),
        cwd: launch.cwd.clone(),
        env: launch
            .env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
        stdout_log: launch.log.clone(),
        stderr_log: launch.stderr_log.clone(),
        max_line_bytes: MAX_LINE_BYTES,
    };
    let mut remote = match (&launch.slurm, &cluster) {
        (Some(slurm), Some(cluster)) => {
            Some(Remote::on(cluster.clone(), slurm, &launch, &mut spec))
        }
        _ => None,
    };
    let mut child = match process::spawn(&spec, Some(&guardian)).await {
        Ok(child) => child,
        Err(e) => {
            let error = format!("cannot start `{}`: {e}", launch.argv[0]);
            return Exited {
                step,
                exit: None,
                spawn_error: Some(error),
                timed_out: false,
                duration: started.elapsed(),
                outcome: None,
                session_totals: None,
                tail: Vec::new(),
                stdout: None,
            };
        }
    };
    let stopper = match &remote {
        Some(r) => child.stopper().through(r.target.clone()),
        None => child.stopper(),
    };
    let _ = tx
        .send(Sent {
            event: ExecutorEvent::Started {
                step,
                pid: child.pid(),
            },
            stopper: Some(stopper.clone()),
        })
        .await;
    panic_if_asked(&launch.job);

    let mut lines = child.take_lines();
    let mut log_faults = child.take_log_faults();
    let mut faults_open = true;
    let mut accounting = launch.agent.clone().map(Accounting::new);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut shown = Instant::now() - OUTPUT_EVERY;
    // The last line shown in the tail but not yet sent as output; empty when none. One buffer,
    // handed on at most once per OUTPUT_EVERY: no allocation per line.
    let mut unshown = String::new();
    let deadline = tokio::time::sleep(launch.timeout);
    tokio::pin!(deadline);
    let mut timed_out = false;
    let pending = tokio::time::sleep(
        remote
            .as_ref()
            .map_or(launch.timeout, Remote::pending_timeout),
    );
    tokio::pin!(pending);
    // The exit is awaited together with the lines: a child may close its pipes and keep running,
    // and its timeout must still reach it.
    let wait = child.wait();
    tokio::pin!(wait);
    let mut exit = None;
    let mut lines_open = true;
    while lines_open || exit.is_none() {
        tokio::select! {
            batch = lines.recv_batch(), if lines_open => {
                let Some(batch) = batch else {
                    lines_open = false;
                    continue;
                };
                // The figures are running totals: the batch's last is all the dispatcher needs.
                let mut usage = None;
                for line in batch {
                    if let Some(r) = remote.as_mut() {
                        if r.relayed(step, &line, &tx).await {
                            continue;
                        }
                    }
                    let display = match (&mut accounting, line.stream) {
                        (Some(acc), Stream::Stdout) => {
                            agent_line(step, acc, &line, &mut usage, &tx).await
                        }
                        // Not the whole line: a copy of a 64 MiB line would double its memory.
                        _ => Some(line.display_text(DISPLAY_LINE_BYTES).into()),
                    };
                    if let Some(text) = display {
                        let text = text.trim_end();
                        if text.is_empty() {
                            continue;
                        }
                        remember(&mut tail, text);
                        unshown.clear();
                        unshown.push_str(text);
                    }
                }
                if let Some(update) = usage {
                    let _ = tx.send(ExecutorEvent::Usage { step, update }.into()).await;
                }
                if shown.elapsed() >= OUTPUT_EVERY && !unshown.is_empty() {
                    shown = Instant::now();
                    let line = std::mem::take(&mut unshown);
                    let _ = tx.send(ExecutorEvent::Output { step, line }.into()).await;
                }
            }
            fault = log_faults.recv(), if faults_open => match fault {
                Some(fault) => {
                    let _ = tx.send(ExecutorEvent::LogWriteFailed { step, fault }.into()).await;
                }
                None => faults_open = false,
            },
            done = &mut wait, if exit.is_none() => exit = Some(done),
            () = &mut pending, if remote.as_ref().is_some_and(Remote::unplaced) && exit.is_none() => {
                if let Some(r) = remote.as_mut() {
                    r.pending_too_long().await;
                }
                stopper.kill();
            }
            () = &mut deadline, if !timed_out && exit.is_none() => {
                timed_out = true;
                let _ = tx.send(ExecutorEvent::TimedOut { step }.into()).await;
                stopper.stop(launch.ladder);
            }
        }
    }
    let mut exit = exit.expect("the loop ends once the exit is known");
    let refused = remote.and_then(|r| r.finish(&mut exit));
    if !unshown.is_empty() {
        let line = unshown;
        let _ = tx.send(ExecutorEvent::Output { step, line }.into()).await;
    }
    let outcome = accounting.as_mut().map(|a| a.finish(exit.code));
    let session_totals = accounting.as_ref().and_then(Accounting::session_totals);
    let stdout = launch.capture.map(|limit| capture(&launch.log, limit));
    Exited {
        step,
        exit: Some(exit),
        spawn_error: refused,
        timed_out,
        duration: started.elapsed(),
        outcome,
        session_totals,
        tail: tail.into(),
        stdout,
    }
}

/// The last `limit` bytes of a step's stdout, read back from its log (which holds stdout exactly
/// as the step wrote it). A log that cannot be read gives what could be read, and nothing cut.
fn capture(log: &std::path::Path, limit: usize) -> super::outputs::Captured {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(log) else {
        return super::outputs::Captured::default();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let cut = len.saturating_sub(limit as u64);
    let mut bytes = Vec::with_capacity((len - cut) as usize);
    if file.seek(SeekFrom::Start(cut)).is_ok() {
        let _ = file.take(limit as u64).read_to_end(&mut bytes);
    }
    super::outputs::Captured {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        cut,
    }
}

/// A test hook, only in debug builds: `ORCH_TEST_PANIC_STEP=<job>` panics that job's executor
/// once its process runs, to prove a panicking executor neither hangs the run nor leaks it.
fn panic_if_asked(job: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("ORCH_TEST_PANIC_STEP").is_some_and(|j| j == job) {
        panic!("ORCH_TEST_PANIC_STEP asked the executor of `{job}` to panic");
    }
    let _ = job;
}

/// Feeds one stdout line of Claude Code to the accounting, leaving its new running totals in
/// `usage` (sent once per read batch); returns the text worth showing.
async fn agent_line<'l>(
    step: StepId,
    acc: &mut Accounting,
    line: &'l process::Line,
    usage: &mut Option<UsageUpdate>,
    tx: &mpsc::Sender<Sent>,
) -> Option<Cow<'l, str>> {
    // A truncated line is not valid JSON; its usage (if any) is lost to the estimate only, since
    // the `result` line, which is short, stays authoritative.
    if line.truncated || floor() {
        return None;
    }
    let event = stream::parse_line(&line.bytes)?;
    if let Some(update) = acc.observe(&event) {
        *usage = Some(update);
    }
    for anomaly in acc.take_anomalies() {
        let _ = tx
            .send(ExecutorEvent::UsageAnomaly { step, anomaly }.into())
            .await;
    }
    match event {
        StreamEvent::Init {
            model: Some(model), ..
        } => {
            let _ = tx.send(ExecutorEvent::Model { step, model }.into()).await;
            None
        }
        StreamEvent::Assistant {
            text, tool_uses, ..
        } => text.or_else(|| {
            (!tool_uses.is_empty()).then(|| format!("[tool] {}", tool_uses.join(", ")).into())
        }),
        StreamEvent::RateLimit { ref status, .. } => {
            let line = format!("[rate limit] {status}");
            if let Some(record) = RateLimitRecord::of(&event) {
                let _ = tx
                    .send(ExecutorEvent::RateLimited { step, record }.into())
                    .await;
            }
            Some(line.into())
        }
        StreamEvent::ApiRetry {
            attempt,
            error,
            error_status,
            ..
        } => {
            let seen = super::retry::ApiRetrySeen {
                attempt,
                status: error_status,
                error: error.clone(),
            };
            let _ = tx
                .send(ExecutorEvent::ApiRetried { step, seen }.into())
                .await;
            Some(format!("[api retry {attempt}] {}", error.unwrap_or_default()).into())
        }
        StreamEvent::Result {
            result_text,
            subtype,
            ..
        } => Some(result_text.unwrap_or(subtype).into()),
        _ => None,
    }
}

/// A bench-only switch, `ORCH_BENCH_FLOOR=1`: agent steps' stdout is drained into the logs and
/// framed into lines as always, but never parsed or accounted, so `benches/zen.sh` can measure the
/// floor of stream accounting. No spend is recorded with it on: never set it outside a bench.
fn floor() -> bool {
    static FLOOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLOOR.get_or_init(|| std::env::var_os("ORCH_BENCH_FLOOR").is_some_and(|v| v == "1"))
}

fn remember(tail: &mut VecDeque<String>, line: &str) {
    // The oldest line's buffer holds the newest: no allocation once the tail is full.
    let mut kept = if tail.len() == TAIL_LINES {
        tail.pop_front().unwrap_or_default()
    } else {
        String::new()
    };
    kept.clear();
    let end = line
        .char_indices()
        .nth(TAIL_LINE_CHARS)
        .map_or(line.len(), |(i, _)| i);
    kept.push_str(&line[..end]);
    if end < line.len() {
        kept.push('…');
    }
    tail.push_back(kept);
}
