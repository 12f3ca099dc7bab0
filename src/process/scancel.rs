//! Stopping a step that runs on Slurm: every rung of the ladder goes through `scancel --signal`
//! to the step's processes on its node, never as a signal to the local `srun` (a SIGINT to `srun`
//! only prints its status, two or a SIGTERM kill the step at once with nothing catchable, so
//! Claude Code would write no result). SIGKILL to `srun`'s group is the last rung only, after
//! `scancel --signal=KILL` and `scancel`.
//!
//! Owns the [`Remote`] target (known once the wrapper said where the step runs) and the remote
//! ladder; it never decides when to stop.

use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::Signal;
use tokio::time::timeout;

use super::stop::Group;
use super::{StopLadder, StopStage};

/// The Slurm side of one step: its job name and, once placed, its `JOB.STEP`.
#[derive(Debug)]
pub struct Remote {
    /// The `-J` name; with a per-step allocation it names the step's own job.
    pub name: String,
    /// Whether the step is a job of its own (per-step allocation): then it can be cancelled by
    /// name before it is placed.
    pub own_job: bool,
    target: Mutex<Option<String>>,
}

impl Remote {
    pub fn new(name: String, own_job: bool) -> Arc<Remote> {
        Arc::new(Remote {
            name,
            own_job,
            target: Mutex::new(None),
        })
    }

    /// The step runs as `job_step` (`JOB.STEP`, from the wrapper's placement line).
    pub fn placed(&self, job_step: String) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = Some(job_step);
    }

    fn target(&self) -> Option<String> {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Delivers `sig` to every process of the step through Slurm. A step not yet placed has no
    /// process to signal: a pending job of its own is cancelled instead.
    pub(crate) async fn signal(&self, sig: Signal) {
        let name = sig.as_str().trim_start_matches("SIG");
        match self.target() {
            Some(step) => {
                scancel(&[&format!("--signal={name}"), &step]).await;
                if sig == Signal::SIGKILL {
                    scancel(&[&step]).await;
                }
            }
            None if self.own_job => scancel(&[&format!("--name={}", self.name)]).await,
            None => {}
        }
    }
}

async fn scancel(args: &[&str]) {
    let run = tokio::process::Command::new("scancel")
        .arg("-Q")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(err) = run.await {
        tracing::warn!(?args, %err, "scancel failed");
    }
}

/// The stop ladder of a Slurm step: SIGINT and SIGTERM through `scancel`, then SIGKILL through
/// `scancel`, and SIGKILL to the local `srun` group last.
pub(crate) async fn run_ladder(group: Arc<Group>, remote: Arc<Remote>, ladder: StopLadder) {
    let mut exited = group.exited.subscribe();
    for (stage, sig, grace) in [
        (StopStage::Int, Signal::SIGINT, ladder.grace_int),
        (StopStage::Term, Signal::SIGTERM, ladder.grace_term),
    ] {
        if *exited.borrow() {
            return;
        }
        group.escalate(stage);
        remote.signal(sig).await;
        if timeout(grace, exited.wait_for(|e| *e)).await.is_ok() {
            return;
        }
    }
    if !*exited.borrow() {
        kill(&group, &remote).await;
    }
}

/// The last rung, at once: SIGKILL through Slurm, cancel, then SIGKILL `srun` itself.
pub(crate) async fn kill(group: &Group, remote: &Remote) {
    group.escalate(StopStage::Kill);
    remote.signal(Signal::SIGKILL).await;
    group.signal(Signal::SIGKILL);
}
