//! The executor's view of one step on Slurm: it turns the step's spawn into `srun` running the
//! wrapper, takes the wrapper's placement and trailer lines out of the step's output (the node
//! goes to the dispatcher, the trailer becomes the exit), and fails a step that waits for
//! resources longer than `pending_timeout` with Slurm's reason.
//!
//! It never signals (the stopper does, through `scancel`) and never decides the step's status.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::executor::{ExecutorEvent, Launch, Sent};
use super::slurm::{self, Cluster, SlurmStep};
use crate::manifest::slurm::Allocation;
use crate::plan::StepId;
use crate::process::relay::{self, Placement, Relayed, Trailer};
use crate::process::{Exit, Line, SpawnSpec, Stream, scancel};

/// One running Slurm step, as the executor tracks it.
#[derive(Debug)]
pub struct Remote {
    cluster: Arc<Cluster>,
    /// What the stopper signals through.
    pub target: Arc<scancel::Remote>,
    name: String,
    placed: Option<Placement>,
    trailer: Option<Trailer>,
    pending_timeout: Duration,
    /// Set when the step was given up while pending.
    pending_error: Option<String>,
    stderr_log: PathBuf,
}

impl Remote {
    /// Rewrites `spec` to run the launch through `srun` and the wrapper.
    pub fn on(
        cluster: Arc<Cluster>,
        step: &SlurmStep,
        launch: &Launch,
        spec: &mut SpawnSpec,
    ) -> Remote {
        let limit = launch.timeout + launch.ladder.grace_int + launch.ladder.grace_term;
        let argv = cluster.srun(
            step,
            &launch.argv,
            &launch.cwd,
            &launch.env,
            limit,
            launch.agent.is_some(),
        );
        spec.program = PathBuf::from(&argv[0]);
        spec.args = argv[1..].iter().map(OsString::from).collect();
        // The step's folder is the nodes' business (the wrapper checks it there); `srun` itself
        // runs in the run's folder, which exists here.
        if let Some(dir) = launch.log.parent() {
            spec.cwd = dir.to_path_buf();
        }
        let own_job =
            cluster.allocation.is_none() || step.settings.allocation == Allocation::PerStep;
        if own_job {
            cluster.hold(&step.name);
        }
        Remote {
            target: scancel::Remote::new(step.name.clone(), own_job),
            cluster,
            name: step.name.clone(),
            placed: None,
            trailer: None,
            pending_timeout: step.settings.pending_timeout,
            pending_error: None,
            stderr_log: launch.stderr_log.clone(),
        }
    }

    pub fn pending_timeout(&self) -> Duration {
        self.pending_timeout
    }

    /// True until the wrapper said where it runs.
    pub fn unplaced(&self) -> bool {
        self.placed.is_none() && self.trailer.is_none() && self.pending_error.is_none()
    }

    /// Takes a wrapper line; true when `line` was one (it is then not the step's output).
    pub async fn relayed(&mut self, step: StepId, line: &Line, tx: &mpsc::Sender<Sent>) -> bool {
        if line.stream != Stream::Stderr {
            return false;
        }
        match relay::parse(&line.bytes) {
            Some(Relayed::Placed(p)) => {
                self.target.placed(p.job_step());
                let event = ExecutorEvent::Placed {
                    step,
                    node: p.node.clone(),
                    job_step: p.job_step(),
                };
                let _ = tx.send(event.into()).await;
                self.placed = Some(p);
                true
            }
            Some(Relayed::Exited(t)) => {
                self.trailer = Some(t);
                true
            }
            None => false,
        }
    }

    /// The step waited too long for resources: remember Slurm's reason (the stopper kills it).
    pub async fn pending_too_long(&mut self) {
        let why = slurm::pending_reason(&self.name)
            .await
            .unwrap_or_else(|| "Slurm gave no reason".into());
        self.pending_error = Some(format!(
            "pending on Slurm for more than {} ({why}): no node can take the request now; \
             check `partition`, `cpus`, `mem`, `gres`, `constraint` and `nodes` against `sinfo`",
            crate::duration::format(self.pending_timeout)
        ));
    }

    /// The step ended: its exit is the wrapper's trailer when there is one, the stderr log
    /// loses the wrapper's lines. Returns why the step did not run, if it did not.
    pub fn finish(self, exit: &mut Exit) -> Option<String> {
        if let Err(err) = relay::strip_log(&self.stderr_log) {
            tracing::warn!("cannot clean {}: {err}", self.stderr_log.display());
        }
        if self.target.own_job {
            self.cluster.forget(&self.name);
        }
        if let Some(error) = self.pending_error {
            return Some(error);
        }
        let trailer = self.trailer?;
        exit.code = trailer.code;
        exit.signal = trailer.signal;
        exit.leaked = trailer.leaked;
        trailer.error
    }
}
