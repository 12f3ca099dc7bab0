//! The results file: a superset of zen's results schema, written atomically at the end of every
//! run, interrupted or not.
//!
//! zen's keys (`total_instances`, `completed`, `failed`, `instances.<name>.{status, duration,
//! total_tokens, input_tokens, output_tokens, cached_tokens, cache_read_tokens,
//! cache_creation_tokens, tool_calls, total_cost_usd, model}`, `metadata.{start_datetime,
//! generated_filename, agents, token_usage.{total_tokens, cached_tokens, total_tool_calls,
//! cache_hit_rate}}`) keep zen's meaning: `cached_tokens` is cache reads plus cache creation (so
//! `total = input + output + cached`) and `failed` counts blocked jobs. orch adds finer fields
//! beside them: `skipped`, `blocked`, each job's steps, exit codes, logs, and whether a cost is an
//! estimate.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::agent::stream::TokenCounts;
use crate::events::Status;
use crate::ledger::Nanos;
use crate::ledger::budget::ScopeKind;
use crate::runner::{RunContext, RunOutcome};

#[derive(Debug, Serialize)]
pub struct Results {
    pub total_instances: usize,
    pub completed: usize,
    /// Jobs that failed, timed out, went over budget or were blocked (zen counted a blocked
    /// instance as failed).
    pub failed: usize,
    /// Jobs that never ran and were not blocked: skipped after a failure, cancelled, pending.
    pub skipped: usize,
    /// Of `failed`, the jobs a budget kept from starting.
    pub blocked: usize,
    /// Jobs by name, in manifest order; a fan-out's instances (`job[key]`) in its place.
    pub instances: indexmap_like::Ordered<Instance>,
    /// Jobs with `matrix` or `for_each`, by name: their instances and outputs as lists.
    #[serde(skip_serializing_if = "indexmap_like::Ordered::is_empty")]
    pub fan_outs: indexmap_like::Ordered<FanOutResult>,
    /// Every budget scope: its limits, what it spent, and how far past a limit it went.
    pub budgets: Vec<BudgetResult>,
    /// What the run could not write (log output, the results file itself, ledger rows), empty
    /// when nothing was lost.
    pub faults: Vec<Fault>,
    pub metadata: Metadata,
}

/// Something a run could not write, and what that cost.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    /// `log`, `results` or `ledger`.
    pub kind: &'static str,
    /// The step whose log it is.
    pub step: Option<String>,
    pub path: Option<PathBuf>,
    /// The error, as the OS or SQLite put it.
    pub error: String,
    /// Log bytes read from the step but not written.
    pub bytes_lost: Option<u64>,
    /// Where the results file was written instead.
    pub written_to: Option<PathBuf>,
    /// The fault in one sentence, as the summary shows it.
    pub message: String,
}

impl Fault {
    /// Output of `step` that did not reach its log.
    pub fn log(step: &str, fault: &crate::process::LogFault) -> Fault {
        let resumed = if fault.resumed {
            "; writing resumed later"
        } else {
            ""
        };
        let stream = match fault.stream {
            crate::process::Stream::Stdout => "stdout",
            crate::process::Stream::Stderr => "stderr",
        };
        Fault {
            kind: "log",
            step: Some(step.to_string()),
            path: Some(fault.path.clone()),
            error: fault.error.clone(),
            bytes_lost: Some(fault.bytes_lost),
            written_to: None,
            message: format!(
                "log of `{step}` ({stream}): {} not written ({}){resumed}",
                human_bytes(fault.bytes_lost),
                fault.error
            ),
        }
    }

    /// Ledger writes that failed during the run (`failures` of them, the last with `error`).
    pub fn ledger(not_landed: usize, rejected: usize, error: &str) -> Fault {
        let mut what = Vec::new();
        if not_landed > 0 {
            what.push(format!(
                "{not_landed} write(s) did not land (the next orch start reconciles them from the step logs)"
            ));
        }
        if rejected > 0 {
            what.push(format!("{rejected} write(s) refused"));
        }
        Fault {
            kind: "ledger",
            step: None,
            path: None,
            error: error.to_string(),
            bytes_lost: None,
            written_to: None,
            message: format!(
                "ledger: {} ({error}); this run's figures here are complete",
                what.join(", ")
            ),
        }
    }
}

/// `12.3 MB`, `4.0 KB`, `17 bytes`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} KB", n as f64 / 1e3),
        n => format!("{n} bytes"),
    }
}

#[derive(Debug, Serialize)]
pub struct BudgetResult {
    pub scope: String,
    /// The rolling window's period in seconds, for the window scope only (null for the others).
    pub period_seconds: Option<u64>,
    pub tokens_limit: Option<u64>,
    pub usd_limit: Option<f64>,
    pub tokens_used: u64,
    pub usd_used: f64,
    pub overshoot_tokens: u64,
    pub overshoot_usd: f64,
}

#[derive(Debug, Serialize)]
pub struct Instance {
    pub status: Status,
    /// zen's format: seconds with two decimals and an "s".
    pub duration: String,
    pub duration_seconds: f64,
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// zen's meaning: cache reads plus cache creation, so total = input + output + cached.
    pub cached_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub tool_calls: u32,
    pub total_cost_usd: Option<f64>,
    /// True when some of the cost is orch's estimate (a step ended without Claude Code's result).
    pub cost_is_estimate: bool,
    /// True when such an estimate met a model without a price: `total_cost_usd` lacks its cost.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub price_unknown: bool,
    pub model: Option<String>,
    pub description: Option<String>,
    /// What the job produced, once it ended (see "Passing results between jobs" in the book).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<serde_json::Value>,
    pub steps: Vec<StepResult>,
}

/// A job with `matrix` or `for_each`.
#[derive(Debug, Serialize)]
pub struct FanOutResult {
    /// Completed when every instance did (and none when there were none).
    pub status: Status,
    /// `matrix` or `for_each`.
    pub kind: &'static str,
    /// Its instances' names, in order.
    pub instances: Vec<String>,
    /// Why it did not complete (for `for_each`: why it could not expand), if it did not.
    pub reason: Option<String>,
    /// Each output key with the list of the instances' values, in instance order.
    pub outputs: serde_json::Value,
    pub description: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StepResult {
    pub label: String,
    pub status: Status,
    pub argv: Vec<String>,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_seconds: f64,
    pub started: Option<chrono::DateTime<chrono::Utc>>,
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
    pub reason: Option<String>,
    pub leaked_pids: Vec<u32>,
    /// The Slurm node the step ran on, for a step run on Slurm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub log: Option<PathBuf>,
    pub stderr_log: Option<PathBuf>,
    pub usage: Option<crate::agent::accounting::StepUsage>,
    pub result: Option<crate::agent::accounting::ResultSummary>,
    pub output_tail: Vec<String>,
    /// Each attempt of a step that was tried more than once, the last included (number, status,
    /// the kind of failure that earned the next one, its spend, its log); absent for a step
    /// of one attempt. `usage` above is the sum over the attempts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<crate::runner::retry::AttemptRecord>,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    /// zen's key: the name of the zen-style results file this run wrote (the `--output` file,
    /// or the auto-named `claude_instances_results_...json`); `None` when it wrote neither.
    pub generated_filename: Option<String>,
    /// zen's key: the names of the jobs (zen's instances), in manifest order.
    pub agents: Vec<String>,
    pub run_id: String,
    pub name: String,
    pub manifest: PathBuf,
    pub orch_version: &'static str,
    pub start_datetime: String,
    pub end_datetime: String,
    pub duration_seconds: f64,
    pub interrupted: bool,
    pub stop_cause: Option<crate::events::StopCause>,
    pub exit_code: u8,
    pub run_dir: PathBuf,
    /// CPU time orch itself used (user + system, its children excluded), for overhead budgets.
    pub orch_cpu_seconds: f64,
    pub token_usage: TokenUsage,
    /// Ledger writes that could not land by the run's end ("N ledger writes did not land: the
    /// next orch start reconciles them from the step logs"); absent when all landed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_writes_not_landed: Option<String>,
    /// The run this one resumes (`orch resume`); absent for a fresh run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenUsage {
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// zen's meaning: cache reads plus cache creation.
    pub cached_tokens: u64,
    /// zen's key: tool calls of every job.
    pub total_tool_calls: u64,
    /// Cache reads as a percentage of all input-side tokens.
    pub cache_hit_rate: f64,
    pub total_cost_usd: f64,
    pub cost_is_estimate: bool,
}

/// A map that serializes in insertion order (jobs in manifest order).
pub mod indexmap_like {
    use serde::{Serialize, Serializer, ser::SerializeMap};

    #[derive(Debug, Default)]
    pub struct Ordered<T>(pub Vec<(String, T)>);

    impl<T> Ordered<T> {
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    impl<T: Serialize> Serialize for Ordered<T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
}

/// Builds the results of a finished run.
pub fn build(ctx: &RunContext, out: &RunOutcome, exit_code: u8) -> Results {
    let plan = &out.plan;
    let mut instances = Vec::with_capacity(plan.instances.len());
    let mut fan_outs = Vec::new();
    let mut all = TokenCounts::default();
    // Dollars are summed as the ledger sums them, in integer nano-dollars, so results.json and
    // the ledger agree to the last digit; they become floats only in the file.
    let mut all_cost = Nanos::ZERO;
    let mut any_estimate = false;
    let (mut completed, mut failed, mut skipped, mut blocked) = (0, 0, 0, 0);
    let mut all_tool_calls: u64 = 0;
    let mut faults = Vec::new();
    // Manifest order, a fan-out's instances in its place.
    let mut order = Vec::with_capacity(plan.instances.len());
    for &top in &plan.of_job {
        order.push(top);
        if let crate::plan::Fan::Group { members, .. } = &plan.instances[top].fan {
            order.extend(members.iter().copied());
        }
    }
    for i in order {
        let inst = &plan.instances[i];
        let job = &ctx.manifest.jobs[inst.job];
        let status = plan.instance_status(&out.states, i);
        if let crate::plan::Fan::Group { members, expand } = &inst.fan {
            fan_outs.push((
                inst.name.clone(),
                FanOutResult {
                    status,
                    kind: if expand.is_some() {
                        "for_each"
                    } else {
                        "matrix"
                    },
                    instances: members
                        .iter()
                        .map(|&m| plan.instances[m].name.clone())
                        .collect(),
                    reason: expand.and_then(|e| out.records[e].reason.clone()),
                    outputs: crate::runner::outputs::of_group(plan, &ctx.manifest, &out.outputs, i),
                    description: job.description.clone(),
                },
            ));
            // A fan-out with instances is counted through them; one without (no items, or an
            // expansion that failed or was skipped) is a job of its own.
            if !members.is_empty() {
                continue;
            }
        }
        match status {
            Status::Completed => completed += 1,
            Status::Blocked => {
                failed += 1;
                blocked += 1;
            }
            Status::Skipped | Status::Cancelled | Status::Pending => skipped += 1,
            _ => failed += 1,
        }
        let mut tokens = TokenCounts::default();
        let mut cost: Option<Nanos> = None;
        let mut estimate = false;
        let mut price_unknown = false;
        let mut tool_calls = 0;
        let mut model = None;
        let mut seconds = 0.0;
        let mut steps = Vec::new();
        for &s in &inst.steps {
            let r = &out.records[s];
            for fault in &r.log_faults {
                faults.push(Fault::log(&plan.steps[s].label(), fault));
            }
            let ran = r.started.is_some() && !r.log.as_os_str().is_empty();
            if let Some(u) = &r.usage {
                tokens.add(&u.tokens);
                let c = cost.get_or_insert(Nanos::ZERO);
                *c = c.saturating_add(Nanos::from_usd(u.cost_usd).non_negative());
                estimate |= u.is_estimate;
                price_unknown |= u.price_unknown;
                tool_calls += u.tool_calls_total;
                model = model.or_else(|| u.model.clone());
            }
            seconds += r.duration.as_secs_f64();
            steps.push(StepResult {
                label: plan.steps[s].label(),
                status: out.states[s],
                // As spawned, with its templates rendered; as planned when it never ran.
                argv: if r.argv.is_empty() {
                    plan.steps[s].argv.clone()
                } else {
                    r.argv.clone()
                },
                pid: r.pid,
                exit_code: r.exit_code,
                signal: r.signal,
                duration_seconds: round3(r.duration.as_secs_f64()),
                started: r.started,
                finished: r.finished,
                reason: r.reason.clone(),
                leaked_pids: r.leaked.clone(),
                node: r.node.clone(),
                log: ran.then(|| r.log.clone()),
                stderr_log: ran.then(|| r.stderr_log.clone()),
                usage: r.usage.clone(),
                result: r.result.clone(),
                output_tail: r.tail.clone(),
                attempts: r.attempts.clone(),
            });
        }
        all.add(&tokens);
        all_tool_calls += u64::from(tool_calls);
        all_cost = all_cost.saturating_add(cost.unwrap_or(Nanos::ZERO));
        any_estimate |= estimate;
        instances.push((
            inst.name.clone(),
            Instance {
                status,
                duration: format!("{seconds:.2}s"),
                duration_seconds: round3(seconds),
                total_tokens: tokens.total(),
                input_tokens: tokens.input,
                output_tokens: tokens.output,
                cached_tokens: tokens.cache_read + tokens.cache_creation,
                cache_read_tokens: tokens.cache_read,
                cache_creation_tokens: tokens.cache_creation,
                tool_calls,
                total_cost_usd: cost.map(Nanos::dollars),
                cost_is_estimate: estimate,
                price_unknown,
                model,
                description: job.description.clone(),
                outputs: out.outputs[i].clone(),
                steps,
            },
        ));
    }
    let input_side = all.input + all.cache_read + all.cache_creation;
    let cache_hit_rate = if input_side == 0 {
        0.0
    } else {
        round3(100.0 * all.cache_read as f64 / input_side as f64)
    };
    let agents = instances.iter().map(|(name, _)| name.clone()).collect();
    Results {
        total_instances: instances.len(),
        completed,
        failed,
        skipped,
        blocked,
        instances: indexmap_like::Ordered(instances),
        fan_outs: indexmap_like::Ordered(fan_outs),
        budgets: out
            .scopes
            .iter()
            .filter(|s| s.limit.is_set())
            .map(|s| {
                let over = s.overshoot();
                BudgetResult {
                    scope: s.name.clone(),
                    period_seconds: (s.kind == ScopeKind::Window)
                        .then_some(ctx.manifest.budget.window.as_ref())
                        .flatten()
                        .map(|w| w.period.as_secs()),
                    tokens_limit: s.limit.tokens,
                    usd_limit: s.limit.usd,
                    tokens_used: s.used.tokens,
                    usd_used: s.used.usd.dollars(),
                    overshoot_tokens: over.tokens,
                    overshoot_usd: over.usd.dollars(),
                }
            })
            .collect(),
        faults,
        metadata: Metadata {
            generated_filename: None,
            agents,
            run_id: ctx.run_id.clone(),
            name: ctx.manifest.name.clone(),
            manifest: ctx.manifest.path.clone(),
            orch_version: env!("CARGO_PKG_VERSION"),
            start_datetime: out.started.to_rfc3339(),
            end_datetime: out.finished.to_rfc3339(),
            duration_seconds: round3(
                (out.finished - out.started).num_milliseconds() as f64 / 1000.0,
            ),
            interrupted: out.stop == Some(crate::events::StopCause::Interrupted),
            stop_cause: out.stop,
            exit_code,
            run_dir: ctx.run_dir.clone(),
            orch_cpu_seconds: round3(crate::process::own_cpu_time().as_secs_f64()),
            token_usage: TokenUsage {
                total_tokens: all.total(),
                input_tokens: all.input,
                output_tokens: all.output,
                cache_read_tokens: all.cache_read,
                cache_creation_tokens: all.cache_creation,
                cached_tokens: all.cache_read + all.cache_creation,
                total_tool_calls: all_tool_calls,
                cache_hit_rate,
                total_cost_usd: all_cost.dollars(),
                cost_is_estimate: any_estimate,
            },
            ledger_writes_not_landed: (out.ledger.not_landed > 0)
                .then(|| crate::runner::not_landed_message(out.ledger.not_landed)),
            resumed_from: ctx.carried.resumed_from.clone(),
        },
    }
}

/// zen's name for a results file: `claude_instances_results_<YYYYMMDD_HHMMSS>_<names>.json`,
/// the time in local time, the names those of the first three jobs with everything but letters
/// and digits dropped ("test-creator" → "testcreator"), each cut to 20 characters.
pub fn zen_file_name(started: chrono::DateTime<chrono::Local>, jobs: &[String]) -> String {
    let names: Vec<String> = jobs
        .iter()
        .take(3)
        .map(|n| {
            n.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .collect();
    let mut name = format!(
        "claude_instances_results_{}",
        started.format("%Y%m%d_%H%M%S")
    );
    for n in names {
        name.push('_');
        name.push_str(&n);
    }
    name.push_str(".json");
    name
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes `results` to `path` atomically: a temporary file beside it, synced, then renamed. A
/// failed write leaves no temporary file behind (on a full disk it would hold on to the space).
pub fn write(results: &Results, path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        // Secret values are masked in the text, JSON-escaped forms included.
        let text = crate::secrets::mask_owned(serde_json::to_string_pretty(results)?);
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// How many times writing the results file is tried before falling back, and the pause between
/// tries (space freed by another process, a transient error).
const WRITE_TRIES: u32 = 3;
const WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Where the results file went.
#[derive(Debug)]
pub struct Written {
    /// Where the results file is: `path`, or the fallback; `None` when neither could be written.
    pub at: Option<PathBuf>,
    /// The error that kept it from `path`, if one did.
    pub error: Option<String>,
}

/// Writes `results` to `path`, tried [`WRITE_TRIES`] times; failing that, records the fault in
/// `results` and writes them to `fallback` instead (a folder on another file system, such as the
/// temporary folder), as `<file name>` there.
pub fn write_or_fall_back(results: &mut Results, path: &Path, fallback: &Path) -> Written {
    let mut last = None;
    for attempt in 0..WRITE_TRIES {
        if attempt > 0 {
            std::thread::sleep(WRITE_PAUSE);
        }
        match write(results, path) {
            Ok(()) => {
                return Written {
                    at: Some(path.to_path_buf()),
                    error: None,
                };
            }
            Err(e) => last = Some(e),
        }
    }
    let error = last.map(|e| e.to_string()).unwrap_or_default();
    let name = format!(
        "orch-results-{}.json",
        results.metadata.run_id.replace(['/', '\\'], "-")
    );
    let other = fallback.join(name);
    let mut fault = Fault {
        kind: "results",
        step: None,
        path: Some(path.to_path_buf()),
        error: error.clone(),
        bytes_lost: None,
        written_to: Some(other.clone()),
        message: format!(
            "results: could not write {} ({error}); written to {} instead",
            path.display(),
            other.display()
        ),
    };
    results.faults.push(fault.clone());
    let at = match write(results, &other) {
        Ok(()) => Some(other),
        Err(e) => {
            fault.written_to = None;
            fault.message = format!(
                "results: could not write {} ({error}) nor {} ({e})",
                path.display(),
                other.display()
            );
            results.faults.pop();
            results.faults.push(fault);
            None
        }
    };
    Written {
        at,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn zens_file_name_has_the_time_and_three_cleaned_names() {
        let at = chrono::Local
            .with_ymd_and_hms(2024, 9, 17, 14, 23, 45)
            .single()
            .expect("an unambiguous local time");
        let names = ["test-creator", "ssot_gardener", "/x y", "fourth"].map(String::from);
        assert_eq!(
            super::zen_file_name(at, &names),
            "claude_instances_results_20240917_142345_testcreator_ssotgardener_xy.json"
        );
        let long = ["a".repeat(30)];
        assert_eq!(
            super::zen_file_name(at, &long),
            format!(
                "claude_instances_results_20240917_142345_{}.json",
                "a".repeat(20)
            )
        );
    }
}
