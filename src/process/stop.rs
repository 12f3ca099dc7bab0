//! Stopping a group: the shared [`Group`] handle every signal goes through, the [`Stopper`] the
//! runner holds, and the SIGINT → SIGTERM → SIGKILL ladder.
//!
//! Owns the rule that makes group signals safe: no signal is sent once the leader is reaped,
//! because only the unreaped leader (or a live member) keeps the pgid from being reused by an
//! unrelated process. Signals and the "reaped" mark are serialised by one mutex.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use nix::sys::signal::Signal;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::timeout;

use super::group::signal_group;
use super::{StopLadder, StopStage};

/// The state of one spawned group, shared by the child, its stoppers and its monitor task.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) pgid: u32,
    /// True once the monitor is about to reap the leader; no signal may follow.
    reaped: Mutex<bool>,
    /// The highest rung sent: 0 none, else `StopStage as u8 + 1`.
    stage: AtomicU8,
    stopping: AtomicBool,
    /// Turns true when the leader has exited (it may not be reaped yet).
    pub(crate) exited: watch::Sender<bool>,
    runtime: Handle,
}

impl Group {
    pub(crate) fn new(pgid: u32, runtime: Handle) -> Self {
        Group {
            pgid,
            reaped: Mutex::new(false),
            stage: AtomicU8::new(0),
            stopping: AtomicBool::new(false),
            exited: watch::Sender::new(false),
            runtime,
        }
    }

    /// Signals the whole group unless the leader is already reaped.
    pub(crate) fn signal(&self, sig: Signal) {
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            if let Err(err) = signal_group(self.pgid, sig) {
                tracing::warn!(pgid = self.pgid, ?sig, %err, "signalling a process group failed");
            }
        }
    }

    /// Marks the leader as about to be reaped; from now on signals are dropped.
    pub(crate) fn mark_reaped(&self) {
        *self.reaped.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    /// Records that `stage` was reached (rungs only go up).
    pub(crate) fn escalate(&self, stage: StopStage) {
        self.stage.fetch_max(stage as u8 + 1, Ordering::SeqCst);
    }

    /// The highest rung sent so far.
    pub(crate) fn stage(&self) -> Option<StopStage> {
        match self.stage.load(Ordering::SeqCst) {
            1 => Some(StopStage::Int),
            2 => Some(StopStage::Term),
            3 => Some(StopStage::Kill),
            _ => None,
        }
    }
}

impl Drop for Group {
    // Reached without a reap only when the monitor task was dropped (runtime shutting down).
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// A cheap handle that stops one child; clone it into timeouts, budget checks, Ctrl-C handlers.
#[derive(Debug, Clone)]
pub struct Stopper {
    pub(crate) group: std::sync::Arc<Group>,
    /// Set for a step on Slurm: the ladder then goes through `scancel` (see `scancel`).
    pub(crate) remote: Option<std::sync::Arc<super::scancel::Remote>>,
}

impl Stopper {
    /// Starts the stop ladder in the background and returns at once; later calls do nothing.
    pub fn stop(&self, ladder: StopLadder) {
        if self.group.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let group = self.group.clone();
        match &self.remote {
            Some(remote) => {
                let remote = remote.clone();
                self.group
                    .runtime
                    .spawn(super::scancel::run_ladder(group, remote, ladder));
            }
            None => {
                self.group.runtime.spawn(run_ladder(group, ladder));
            }
        }
    }

    /// This stopper, stopping through Slurm (`remote`) instead of signalling the group.
    pub fn through(mut self, remote: std::sync::Arc<super::scancel::Remote>) -> Stopper {
        self.remote = Some(remote);
        self
    }

    /// SIGKILLs the whole group now (a second Ctrl-C); safe to call at any time.
    pub fn kill(&self) {
        if let Some(remote) = &self.remote {
            let (group, remote) = (self.group.clone(), remote.clone());
            self.group.runtime.spawn(async move {
                super::scancel::kill(&group, &remote).await;
            });
            return;
        }
        self.group.escalate(StopStage::Kill);
        self.group.signal(Signal::SIGKILL);
    }

    /// The pid of the leader, which is also the pgid of the group.
    pub fn pid(&self) -> u32 {
        self.group.pgid
    }
}

async fn run_ladder(group: std::sync::Arc<Group>, ladder: StopLadder) {
    let mut exited = group.exited.subscribe();
    let rungs = [
        (StopStage::Int, Signal::SIGINT, Some(ladder.grace_int)),
        (StopStage::Term, Signal::SIGTERM, Some(ladder.grace_term)),
        (StopStage::Kill, Signal::SIGKILL, None),
    ];
    for (stage, sig, grace) in rungs {
        if *exited.borrow() {
            return;
        }
        // Record before signalling, so the monitor never sees an exit without its cause.
        group.escalate(stage);
        group.signal(sig);
        if let Some(grace) = grace {
            if timeout(grace, exited.wait_for(|exited| *exited))
                .await
                .is_ok()
            {
                return;
            }
        }
    }
}
