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
        pub partition: Option<Sp<String>>,
        /// The account charged (`--account`).
        pub account: Option<Sp<String>>,
        /// The quality of service (`--qos`).
        pub qos: Option<Sp<String>>,
        /// CPUs per step (`--cpus-per-task`, default 1).
        pub cpus: Option<Sp<i64>>,
        /// Memory per step, e.g. "2G" (`--mem`).
        pub mem: Option<Sp<String>>,
        /// Generic resources, e.g. "gpu:1" (`--gres`).
        pub gres: Option<Sp<String>>,
        /// Slurm's time limit of a step (default: the step's timeout plus the stop ladder's graces).
        pub time: Option<Sp<DurationText>>,
        /// Node features required (`--constraint`).
        pub constraint: Option<Sp<String>>,
        /// Slurm's `--nodelist`, e.g. "n[1-4]": every node listed is part of the request (per
        /// run, the allocation's; per step, the step's, so name one node to pin a step there).
        pub nodes: Option<Sp<String>>,
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

/// Why a value of `[slurm]` `key` is not one Slurm takes, and what to write instead: checked
/// when the manifest loads, so a mistake points at its line rather than failing `srun` later.
/// The checks are on the form only (no cluster is asked whether a partition exists).
pub fn check(key: &str, value: &str) -> Result<(), (String, String)> {
    let name = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    let bad = |what: &str, help: &str| Err((what.to_string(), help.to_string()));
    if value.trim().is_empty() {
        return bad("it is empty", "remove the key, or give a value");
    }
    if value.starts_with('-') {
        return bad(
            "it starts with `-`, as an option would",
            "give the value alone; more `srun` options go in `extra_args`",
        );
    }
    match key {
        "mem" => {
            let digits = value.trim_end_matches(|c: char| "KMGTkmgt".contains(c));
            let unit = value.len() - digits.len();
            if digits.is_empty() || unit > 1 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return bad(
                    "it is not a size",
                    "write a number of megabytes or one with a unit: \"4096\", \"2G\", \"512M\"",
                );
            }
        }
        "gres" => {
            let item_ok = |item: &str| {
                let mut parts = item.split(':');
                parts
                    .next()
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| name(c) || c == '/'))
                    && parts.all(|p| !p.is_empty() && p.chars().all(name))
            };
            if !value.split(',').all(item_ok) {
                return bad(
                    "it is not a list of generic resources",
                    "write NAME[:TYPE][:COUNT], comma-separated: \"gpu:1\", \"gpu:a100:2,mps:50\"",
                );
            }
        }
        "constraint" => {
            if !value.chars().all(|c| name(c) || "&|,*[]()".contains(c)) {
                return bad(
                    "it is not a feature expression",
                    "write node features joined by & (and), | (or) or ,: \"intel&ib\", \"[rack1|rack2]\"",
                );
            }
        }
        "nodes" => {
            if !value.chars().all(|c| name(c) || "[],".contains(c)) {
                return bad(
                    "it is not a list of node names",
                    "write node names or ranges, comma-separated: \"n1,n3\", \"n[1-4]\"",
                );
            }
        }
        // partition, account, qos: names, a partition or qos also a comma-separated list.
        _ => {
            if !value
                .split(',')
                .all(|n| !n.is_empty() && n.chars().all(name))
            {
                return bad(
                    "it is not a name",
                    "write the name Slurm knows (`sinfo -s` lists partitions), without spaces",
                );
            }
        }
    }
    Ok(())
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
