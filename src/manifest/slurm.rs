//! Where steps run: the `executor` key (`"local"` or `"slurm"`) and the `[slurm]` table, at the
//! top of a manifest and per job (a job's table overrides the top one key by key).
//!
//! Owns the raw keys and their resolution into [`Slurm`]; it never talks to a cluster (the
//! runner's `slurm` module does) and never reads the environment.

use std::time::Duration;

use serde::Serialize;

use super::raw::DurationText;
use super::read::{Sp, raw_table};

raw_table! {
    /// `[slurm]`: how steps run on a Slurm cluster when `executor = "slurm"`; a job's own
    /// `[jobs.NAME.slurm]` overrides these key by key.
    pub struct RawSlurm as "[slurm]" {
        /// "per_run" (one `salloc --no-shell` sized to max_parallel, steps as `srun --exact`
        /// inside it; the default) or "per_step" (one allocation per step). Top level only.
        pub allocation: Option<Sp<String>>,
        /// The partition (`--partition`).
        pub partition: Option<String>,
        /// The account charged (`--account`).
        pub account: Option<String>,
        /// The quality of service (`--qos`).
        pub qos: Option<String>,
        /// CPUs per step (`--cpus-per-task`, default 1).
        pub cpus: Option<Sp<i64>>,
        /// Memory per step, e.g. "2G" (`--mem`).
        pub mem: Option<String>,
        /// Generic resources, e.g. "gpu:1" (`--gres`).
        pub gres: Option<String>,
        /// Slurm's time limit of a step (default: the step's timeout plus the stop ladder's graces).
        pub time: Option<Sp<DurationText>>,
        /// Node features required (`--constraint`).
        pub constraint: Option<String>,
        /// Slurm's `--nodelist`, e.g. "n[1-4]": every node listed is part of the request (per
        /// run, the allocation's; per step, the step's, so name one node to pin a step there).
        pub nodes: Option<String>,
        /// How long a step may wait for resources before it fails with Slurm's reason (default "5m").
        pub pending_timeout: Option<Sp<DurationText>>,
        /// Variables of orch's environment passed to the step by name (besides the job's `env`).
        pub pass_env: Option<Vec<String>>,
        /// The `claude` executable on the nodes (default: the one orch found locally).
        pub claude_path: Option<String>,
        /// The `orch` executable on the nodes, which runs the step wrapper (default: this orch).
        pub orch_path: Option<String>,
        /// More arguments for `srun`, as written (never a secret: they are on the command line).
        pub extra_args: Option<Vec<String>>,
    }
}

/// How a run asks Slurm for resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// One allocation for the run, steps inside it.
    #[default]
    PerRun,
    /// One allocation per step.
    PerStep,
}

/// A job's resolved Slurm settings (the top table merged with the job's own).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Slurm {
    pub allocation: Allocation,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub cpus: u32,
    pub mem: Option<String>,
    pub gres: Option<String>,
    pub time: Option<Duration>,
    pub constraint: Option<String>,
    pub nodes: Option<String>,
    pub pending_timeout: Duration,
    pub pass_env: Vec<String>,
    pub claude_path: Option<String>,
    pub orch_path: Option<String>,
    pub extra_args: Vec<String>,
}

/// How long a step may wait for resources by default.
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(300);

impl RawSlurm {
    /// This table with the keys `over` sets replaced by `over`'s.
    pub fn merged(&self, over: &RawSlurm) -> RawSlurm {
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        RawSlurm {
            allocation: pick(&over.allocation, &self.allocation),
            partition: pick(&over.partition, &self.partition),
            account: pick(&over.account, &self.account),
            qos: pick(&over.qos, &self.qos),
            cpus: pick(&over.cpus, &self.cpus),
            mem: pick(&over.mem, &self.mem),
            gres: pick(&over.gres, &self.gres),
            time: pick(&over.time, &self.time),
            constraint: pick(&over.constraint, &self.constraint),
            nodes: pick(&over.nodes, &self.nodes),
            pending_timeout: pick(&over.pending_timeout, &self.pending_timeout),
            pass_env: pick(&over.pass_env, &self.pass_env),
            claude_path: pick(&over.claude_path, &self.claude_path),
            orch_path: pick(&over.orch_path, &self.orch_path),
            extra_args: pick(&over.extra_args, &self.extra_args),
            partial: self.partial || over.partial,
        }
    }
}
