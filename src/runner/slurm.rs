//! The Slurm side of a run: the run's allocation (`salloc --no-shell`, released at the end and by
//! the guardian if orch dies) and the `srun` command line of each step, which runs orch's step
//! wrapper (`__slurm_step`) on the node.
//!
//! It never signals anything (stops go through `process::scancel`) and never decides a step's
//! status; it only builds commands and asks Slurm for resources.

use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::slurm::{Allocation, Slurm};
use crate::process::Guardian;

/// Variables every step gets besides its job's `env`, orch's own `ORCH_*` and `pass_env`.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"];

/// One run's use of the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The run's allocation, in per-run mode.
    pub allocation: Option<String>,
    /// The orch executable on the nodes, which runs the step wrapper.
    pub orch: PathBuf,
    guardian: std::sync::Arc<Guardian>,
}

/// A Slurm step as the executor needs it: the job's settings and the step's Slurm name.
#[derive(Debug, Clone)]
pub struct SlurmStep {
    pub settings: Slurm,
    /// `orch-<run>-<step>-<attempt>`: the step's `-J`.
    pub name: String,
}

/// A name Slurm and the guardian protocol take as it is.
pub fn job_name(run_id: &str, label: &str, attempt: u32) -> String {
    let clean: String = format!("orch-{run_id}-{label}-{attempt}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(200).collect()
}

impl Cluster {
    /// Asks for the run's allocation when the manifest wants one: `tasks` slots of
    /// `settings.cpus` CPUs, spread over as many nodes as Slurm allows.
    pub async fn start(
        run_id: &str,
        settings: &Slurm,
        tasks: usize,
        guardian: std::sync::Arc<Guardian>,
    ) -> std::io::Result<Cluster> {
        let orch = match &settings.orch_path {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?,
        };
        let mut cluster = Cluster {
            allocation: None,
            orch,
            guardian,
        };
        if settings.allocation == Allocation::PerRun {
            let mut args: Vec<String> = vec![
                "--no-shell".into(),
                format!("--job-name=orch-{run_id}"),
                format!("--ntasks={}", tasks.max(1)),
                format!("--cpus-per-task={}", settings.cpus),
                "--spread-job".into(),
                format!("--immediate={}", settings.pending_timeout.as_secs().max(1)),
            ];
            args.extend(resources(settings));
            if let Some(nodes) = &settings.nodes {
                args.push(format!("--nodelist={nodes}"));
            }
            if let Some(time) = settings.time {
                args.push(format!("--time={}", minutes(time)));
            }
            let out = tokio::process::Command::new("salloc")
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| std::io::Error::other(format!("cannot run salloc: {e}")))?;
            let text = String::from_utf8_lossy(&out.stderr);
            let id = text
                .lines()
                .find_map(|l| l.split("Granted job allocation ").nth(1))
                .map(|id| id.trim().to_string());
            let Some(id) = id else {
                return Err(std::io::Error::other(format!(
                    "Slurm gave no allocation for the run (salloc {}): {}",
                    args.join(" "),
                    text.trim()
                )));
            };
            cluster.guardian.hold_job(&id)?;
            cluster.allocation = Some(id);
        }
        Ok(cluster)
    }

    /// Releases the run's allocation (every step has ended by now).
    pub async fn release(&self) {
        if let Some(id) = &self.allocation {
            let _ = tokio::process::Command::new("scancel")
                .args(["-Q", id])
                .status()
                .await;
            let _ = self.guardian.release_job(id);
        }
    }

    /// The guardian cancels the job `name` (a per-step allocation) if orch dies.
    pub fn hold(&self, name: &str) {
        let _ = self.guardian.hold_job(name);
    }

    /// The step's job ended; the guardian forgets it.
    pub fn forget(&self, name: &str) {
        let _ = self.guardian.release_job(name);
    }

    /// The `srun` argv that runs `argv` in `cwd` on a node, and the names it exports (their
    /// values come from `srun`'s environment, never from its command line).
    pub fn srun(
        &self,
        step: &SlurmStep,
        argv: &[String],
        cwd: &std::path::Path,
        env: &[(String, String)],
        timeout: Duration,
        is_agent: bool,
    ) -> Vec<String> {
        let s = &step.settings;
        let mut names: Vec<String> = BASE_ENV.iter().map(|n| n.to_string()).collect();
        names.push(crate::process::TOKEN_ENV.into());
        names.extend(
            std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .filter(|k| k.starts_with("ORCH_")),
        );
        names.extend(env.iter().map(|(k, _)| k.clone()));
        names.extend(s.pass_env.iter().cloned());
        // srun refuses a name that is set nowhere only quietly; keep the list short and unique.
        names.sort();
        names.dedup();
        let mut srun: Vec<String> = vec![
            "srun".into(),
            "-Q".into(),
            "--input=none".into(),
            format!("--job-name={}", step.name),
            "--nodes=1".into(),
            "--ntasks=1".into(),
            format!("--cpus-per-task={}", s.cpus),
            format!("--export={}", names.join(",")),
            format!("--time={}", minutes(s.time.unwrap_or(timeout))),
        ];
        match &self.allocation {
            Some(id) => {
                srun.push(format!("--jobid={id}"));
                srun.push("--exact".into());
            }
            None => {
                srun.extend(resources(s));
                if let Some(nodes) = &s.nodes {
                    srun.push(format!("--nodelist={nodes}"));
                }
            }
        }
        if self.allocation.is_some() {
            if let Some(mem) = &s.mem {
                srun.push(format!("--mem={mem}"));
            }
        }
        srun.extend(s.extra_args.iter().cloned());
        srun.push("--".into());
        srun.push(self.orch.to_string_lossy().into_owned());
        srun.push("__slurm_step".into());
        srun.push(format!("--cwd={}", cwd.display()));
        srun.push("--".into());
        let mut argv = argv.to_vec();
        // The `claude` on the nodes, unless orch's simulated agent stands in for it.
        if let (true, Some(claude)) = (is_agent, &s.claude_path) {
            if argv.get(1).is_none_or(|a| a != "agent-sim") {
                argv[0].clone_from(claude);
            }
        }
        srun.extend(argv);
        srun
    }
}

/// The request keys shared by `salloc` and a per-step `srun`.
fn resources(s: &Slurm) -> Vec<String> {
    let mut args = Vec::new();
    let mut push = |flag: &str, v: &Option<String>| {
        if let Some(v) = v {
            args.push(format!("--{flag}={v}"));
        }
    };
    push("partition", &s.partition);
    push("account", &s.account);
    push("qos", &s.qos);
    push("mem", &s.mem);
    push("gres", &s.gres);
    push("constraint", &s.constraint);
    args
}

/// A duration as Slurm's `minutes:seconds`, rounded up to whole seconds.
fn minutes(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// Why a step is still pending, as `squeue` says (`Resources`, `BeginTime`, ...).
pub async fn pending_reason(name: &str) -> Option<String> {
    let out = tokio::process::Command::new("squeue")
        .args(["-h", "-o", "%T %R", &format!("--name={name}")])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times_are_what_slurm_takes() {
        assert_eq!(job_name("r1", "a b/c", 2), "orch-r1-a_b_c-2");
        assert_eq!(minutes(Duration::from_millis(61_500)), "1:02");
        assert_eq!(minutes(Duration::from_secs(3600)), "60:00");
    }
}
