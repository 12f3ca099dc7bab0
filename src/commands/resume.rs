//! `orch resume [RUN_ID|latest]`: a new run that continues an earlier one. The steps that
//! completed there (and whose definition did not change) are not run again: they count as
//! completed, their outputs are read back from the original run folder, and their sessions are
//! continued with `--resume`. Everything else runs: failed, timed out, cancelled, budget-stopped,
//! blocked, skipped and never-started steps.
//!
//! Also owns what every run takes over from the ledger before it starts ([`prepare`]): the
//! sessions Claude Code already has, so a job naming a `session_id` continues its conversation
//! from one run to the next. It never runs a step itself (`super::run` does) and never writes the
//! ledger (the runner does).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::agent::accounting::SessionTotals;
use crate::config::{ManifestConfig, ResumeConfig, Source};
use crate::errors::{Error, ExitCode};
use crate::ledger::resume::{RunInfo, StepInfo, definition_hash};
use crate::ledger::{self, Ledger};
use crate::manifest::Manifest;
use crate::plan::{Action, Plan, PlanOptions, SessionChoice, StepId};
use crate::runner::{Carried, StepRecord};

/// What `orch resume` read about the run it continues.
#[derive(Clone, Debug)]
pub struct Resumption {
    pub original: RunInfo,
    /// The original's step rows (a step that never launched has none).
    pub steps: Vec<StepInfo>,
    /// The original's step definition hashes, by step label.
    pub definitions: HashMap<String, String>,
    /// The run folders of the original and of the runs it resumed, newest first: a step the
    /// original reused has its outputs in an earlier one.
    pub run_dirs: Vec<RunFolder>,
    /// `--force`: completed steps whose definition changed run again instead of a refusal.
    pub force: bool,
}

/// A run folder of the chain, read once: its results file, if it wrote one, and the last line
/// of each job in its outputs file (`None`: it has none).
#[derive(Clone, Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    pub results: Option<Value>,
    pub outputs: Option<HashMap<String, Value>>,
}

impl RunFolder {
    pub fn read(dir: PathBuf) -> Self {
        RunFolder {
            results: read_results(&dir),
            outputs: crate::runner::read_outputs(&dir),
            dir,
        }
    }
}

/// Which steps of the new plan are reused and which run, and why.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Reused steps, in plan order.
    pub reused: Vec<StepId>,
    /// Labels of completed steps whose definition changed.
    pub changed: Vec<String>,
    /// Per job instance that is reused whole, its outputs.
    pub outputs: Vec<(usize, Value)>,
    /// Completed steps of a `for_each` job's instances, by label, with the outputs of each
    /// instance whose main step it is: reused when the job expands again into the same
    /// instances (its source was reused and its definition is unchanged).
    pub dynamic: Vec<(String, Option<Value>)>,
}

/// `orch resume`: finds the run, decides what to run again, and runs it (or, with --dry-run,
/// shows what would run).
pub fn resume(config: &ResumeConfig) -> Result<ExitCode, Error> {
    super::check_open_files()?;
    let run = &config.run;
    if run.when.start_at.is_some() || run.when.schedule.is_some() || run.when.once {
        return Err(Error::Resume {
            message: "orch resume starts now: --start-at, --schedule and --once do not apply"
                .into(),
            help: "drop them, or wait and resume later".into(),
        });
    }
    let state_dir = state_dir_of(config)?;
    let path = ledger::path(&state_dir);
    if !path.exists() {
        return Err(Error::Resume {
            message: format!("no ledger at {}: no run to resume", path.display()),
            help: "run `orch resume` where the run was started, or pass --state-dir (or the \
                   manifest) of that run"
                .into(),
        });
    }
    let ledger = open(&path)?;
    ledger::reconcile(&ledger, Utc::now()).map_err(|e| sql(&path, e))?;
    let original = find_run(&ledger, config.run_id.as_deref())?;
    if original.status == "running" || original.status == "reconciling" {
        return Err(Error::Resume {
            message: format!("run {} is still running", original.id),
            help: "wait for it to end (or stop it with Ctrl-C), then resume it".into(),
        });
    }
    // The manifest the original ran, unless one is named on the command line.
    let mut manifest_config: ManifestConfig = run.manifest.clone();
    if !manifest_config.named {
        manifest_config.source = Source::File {
            zen_config: crate::config::is_json_config(&original.manifest),
            path: original.manifest.clone(),
            positional: false,
        };
    }
    // The new run lives beside the original: same ledger, same simulated sessions.
    let (manifest, agent) = super::run::setup(run, &manifest_config, Some(&state_dir))?;
    let (steps, dirs) = chain_steps(&ledger, &original).map_err(|e| sql(&path, e))?;
    let resumption = Resumption {
        steps,
        run_dirs: dirs.into_iter().map(RunFolder::read).collect(),
        definitions: ledger
            .definitions(&original.id)
            .map_err(|e| sql(&path, e))?,
        force: config.force,
        original,
    };
    drop(ledger);
    let plan = Plan::build(
        &manifest,
        &PlanOptions {
            agent: agent.clone(),
            run_id: Uuid::nil(),
        },
    );
    let decision = decide(&manifest, &plan, &resumption);
    if !decision.changed.is_empty() && !config.force {
        return Err(Error::Resume {
            message: format!(
                "run {} cannot be resumed: {} completed step{} changed since it ran: {}",
                resumption.original.id,
                decision.changed.len(),
                if decision.changed.len() == 1 { "" } else { "s" },
                decision.changed.join(", ")
            ),
            help: "undo the change to reuse what they produced, or pass --force to run them \
                   (and the steps that depend on them) again"
                .into(),
        });
    }
    if run.dry_run {
        crate::report::emit(&describe(&plan, &decision, &resumption));
        return Ok(ExitCode::Ok);
    }
    if decision.reused.len() == plan.steps.len() {
        crate::report::emit(&format!(
            "run {} completed every step: nothing to resume\n",
            resumption.original.id
        ));
        return Ok(ExitCode::Ok);
    }
    for warning in &run.manifest.warnings {
        crate::report::print_warning(warning);
    }
    super::run::execute(run, &manifest, &agent, None, Some(&resumption))
}

/// The plan of a run that is starting and what it carries (see [`Carried`]): the sessions the
/// ledger knows (a chain whose session exists is continued, not created again), and with
/// `resume`, the original's reused steps, their outputs and what it spent.
pub fn prepare(
    manifest: &Manifest,
    options: &PlanOptions,
    resume: Option<&Resumption>,
) -> Result<(Plan, Carried), Error> {
    let path = ledger::path(&manifest.settings.state_dir);
    let mut carried = Carried::default();
    let mut choice = SessionChoice::default();
    let ledger = if path.exists() {
        Some(open(&path)?)
    } else {
        None
    };
    if let Some(l) = &ledger {
        for (id, totals) in l.sessions().map_err(|e| sql(&path, e))? {
            let (Ok(id), Ok(totals)) = (
                Uuid::parse_str(&id),
                serde_json::from_str::<SessionTotals>(&totals),
            ) else {
                continue;
            };
            choice.known.insert(id);
            carried.sessions.insert(id, totals);
        }
    }
    let Some(resume) = resume else {
        let plan = Plan::build_with(manifest, options, choice);
        seed_forks(&plan, &mut carried);
        return Ok((plan, carried));
    };
    // The plan's labels and definitions do not depend on sessions: decide on a first build,
    // then build again with the sessions the reused chains continue.
    let first = Plan::build_with(manifest, options, choice.clone());
    let decision = decide(manifest, &first, resume);
    let changed: HashSet<&str> = decision
        .changed
        .iter()
        .filter_map(|label| resume.steps.iter().find(|s| &s.label == label))
        .map(|s| s.job.as_str())
        .collect();
    for s in &resume.steps {
        let Some(id) = s
            .session_id
            .as_deref()
            .and_then(|i| Uuid::parse_str(i).ok())
        else {
            continue;
        };
        if choice.known.contains(&id) && !changed.contains(s.job.as_str()) {
            choice.inherited.entry(s.job.clone()).or_insert(id);
        }
    }
    let plan = Plan::build_with(manifest, options, choice);
    seed_forks(&plan, &mut carried);
    let from = &resume.original.id;
    for &id in &decision.reused {
        let label = plan.steps[id].label();
        let info = resume.steps.iter().find(|s| s.label == label);
        carried.done.push((id, reused_record(from, info)));
    }
    carried.outputs = decision.outputs;
    for (label, outputs) in decision.dynamic {
        let info = resume.steps.iter().find(|s| s.label == label);
        carried
            .dynamic
            .insert(label, (reused_record(from, info), outputs));
    }
    carried.resumed_from = Some(from.clone());
    let mut origin = from.clone();
    if let Some(l) = &ledger {
        let mut seen = HashSet::new();
        while seen.insert(origin.clone()) {
            match l.run_info(&origin).map_err(|e| sql(&path, e))? {
                Some(RunInfo {
                    resumed_from: Some(up),
                    ..
                }) => origin = up,
                _ => break,
            }
        }
    }
    carried.origin = Some(origin);
    if let Some(l) = &ledger {
        carried.spent = l.chain_spend(from).map_err(|e| sql(&path, e))?;
    }
    Ok((plan, carried))
}

/// A forked session starts as a copy of the named one: its first step is charged against the
/// named session's totals (the CLI's figures after `--fork-session` are read as cumulative or
/// not like any other, see `CostBasis`).
fn seed_forks(plan: &Plan, carried: &mut Carried) {
    for step in &plan.steps {
        // Claude Code's options end at `--`; the prompt after it is the user's text.
        let end = step
            .argv
            .iter()
            .position(|a| a == "--")
            .unwrap_or(step.argv.len());
        let argv = &step.argv[..end];
        if !argv.iter().any(|a| a == "--fork-session") {
            continue;
        }
        let after = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .and_then(|i| argv.get(i + 1))
                .and_then(|id| Uuid::parse_str(id).ok())
        };
        if let (Some(named), Some(copy)) = (after("--resume"), after("--session-id")) {
            if let Some(totals) = carried.sessions.get(&named).cloned() {
                carried.sessions.insert(copy, totals);
            }
        }
    }
}

/// Which steps of `plan` the resumed run reuses: those that completed in the original, whose
/// definition hash is unchanged, and all of whose dependencies are reused too (a step after one
/// that runs again may read its new outputs). A job's last step is reused only with its outputs.
/// A `for_each` expansion always runs again (it spawns nothing) from its reused source.
pub fn decide(manifest: &Manifest, plan: &Plan, resume: &Resumption) -> Decision {
    let completed: HashMap<&str, &StepInfo> = resume
        .steps
        .iter()
        .filter(|s| s.status == "completed")
        .map(|s| (s.label.as_str(), s))
        .collect();
    let mut decision = Decision::default();
    let mut reused = vec![false; plan.steps.len()];
    for &id in &plan.order {
        let step = &plan.steps[id];
        if matches!(step.action, Action::Expand { .. }) {
            // The expansion runs again, from its (reused) source; the instances it makes are
            // reused when the job is unchanged and everything it reads was reused.
            let label = step.label();
            let hash = definition_hash(step, &manifest.jobs[step.job]);
            let same = resume.definitions.get(&label) == Some(&hash);
            if same && plan.dependencies(id).all(|d| reused[d]) {
                let prefix = format!("{label}[");
                for info in resume.steps.iter().filter(|s| s.status == "completed") {
                    if !info.label.starts_with(&prefix) {
                        continue;
                    }
                    // `job[key]` is the main step's label when the chain has one step;
                    // `job[key] [i/n]` otherwise.
                    let main = info.label.rsplit_once(" [").is_none_or(|(_, tail)| {
                        tail.strip_suffix(']')
                            .and_then(|t| t.split_once('/'))
                            .is_some_and(|(i, n)| i == n)
                    });
                    let outputs = if main {
                        match original_outputs(resume, usize::MAX - 1, &info.job) {
                            Some(o) => Some(o),
                            None => continue,
                        }
                    } else {
                        None
                    };
                    decision.dynamic.push((info.label.clone(), outputs));
                }
            }
            continue;
        }
        let label = step.label();
        if !completed.contains_key(label.as_str()) {
            continue;
        }
        let hash = definition_hash(step, &manifest.jobs[step.job]);
        if resume.definitions.get(&label) != Some(&hash) {
            decision.changed.push(label);
            continue;
        }
        if !plan.dependencies(id).all(|d| reused[d]) {
            continue;
        }
        if step.is_main() {
            let name = &plan.instances[step.instance].name;
            match original_outputs(resume, step.instance, name) {
                Some(outputs) => decision.outputs.push((step.instance, outputs)),
                None => continue,
            }
        }
        reused[id] = true;
        decision.reused.push(id);
    }
    // An isolated job runs in its worktree from its first step: it is reused whole or not at
    // all (a chain resumed in the middle would run its later steps in the main checkout).
    for (i, inst) in plan.instances.iter().enumerate() {
        if manifest.jobs[inst.job].isolation.is_none() || inst.steps.is_empty() {
            continue;
        }
        if inst.steps.iter().all(|&s| reused[s]) {
            continue;
        }
        decision.reused.retain(|s| !inst.steps.contains(s));
        decision.outputs.retain(|(instance, _)| *instance != i);
    }
    decision
}

/// The record a reused step shows in the new run's results: when it ran, its log, and where.
fn reused_record(from: &str, info: Option<&StepInfo>) -> StepRecord {
    let time = |t: Option<&String>| {
        t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let started = time(info.and_then(|i| i.started_at.as_ref()));
    let finished = time(info.and_then(|i| i.finished_at.as_ref()));
    StepRecord {
        started,
        finished,
        duration: match (started, finished) {
            (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
            _ => Default::default(),
        },
        exit_code: Some(0),
        reason: Some(format!("reused: completed in run {from}")),
        log: info.and_then(|i| i.log.clone()).unwrap_or_default(),
        ..StepRecord::default()
    }
}

/// The steps of a run as far as the ledger knows them, through the runs it resumed: a step the
/// run reused has no row of its own, so its row in the run it was reused from stands (the newest
/// row of a label wins). With the run folders of the chain, newest first.
fn chain_steps(ledger: &Ledger, run: &RunInfo) -> rusqlite::Result<(Vec<StepInfo>, Vec<PathBuf>)> {
    let mut steps: Vec<StepInfo> = Vec::new();
    let mut dirs = Vec::new();
    let mut next = Some(run.clone());
    while let Some(r) = next.take() {
        if dirs.contains(&r.run_dir) {
            break;
        }
        for s in ledger.run_steps(&r.id)? {
            if !steps.iter().any(|t| t.label == s.label) {
                steps.push(s);
            }
        }
        dirs.push(r.run_dir.clone());
        next = match &r.resumed_from {
            Some(from) => ledger.run_info(from)?,
            None => None,
        };
    }
    Ok((steps, dirs))
}

/// A job instance's outputs in the original run (or the run it reused them from): from a
/// results file, else from the run folder's `outputs.ndjson` (a killed run wrote no results).
fn original_outputs(resume: &Resumption, instance: usize, name: &str) -> Option<Value> {
    resume
        .run_dirs
        .iter()
        .find_map(|folder| outputs_in(folder, instance, name))
}

/// A job instance's outputs in one run folder.
fn outputs_in(folder: &RunFolder, instance: usize, name: &str) -> Option<Value> {
    if let Some(v) = folder
        .results
        .as_ref()
        .and_then(|r| r.get("instances"))
        .and_then(|i| i.get(name))
        .and_then(|i| i.get("outputs"))
        .filter(|v| !v.is_null())
    {
        return Some(v.clone());
    }
    match &folder.outputs {
        Some(lines) => lines.get(name).filter(|v| !v.is_null()).cloned(),
        None => legacy_outputs_in(&folder.dir, instance, name),
    }
}

/// A job instance's outputs in a run folder from before `outputs.ndjson`, which has a file per
/// job instead: `outputs/NNN-<job>.json`.
fn legacy_outputs_in(run_dir: &Path, instance: usize, name: &str) -> Option<Value> {
    let dir = run_dir.join("outputs");
    let slug = crate::runner::slug(name);
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let (number, rest) = file.strip_suffix(".json")?.split_once('-')?;
            (rest == slug).then(|| (number.parse().unwrap_or(0), e.path()))
        })
        .collect();
    // Two jobs whose names make the same file name: the one at the same place in the plan.
    found.sort_by_key(|(n, _)| *n != instance + 1);
    let (_, path) = found.first()?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What `orch resume --dry-run` shows: each step, reused or run, and why it runs.
fn describe(plan: &Plan, decision: &Decision, resume: &Resumption) -> String {
    let reused: HashSet<StepId> = decision.reused.iter().copied().collect();
    let mut out = format!(
        "resume run {} ({}): {} step{} reused, {} to run\n",
        resume.original.id,
        resume.original.status,
        reused.len(),
        if reused.len() == 1 { "" } else { "s" },
        plan.steps.len() - reused.len()
    );
    for &id in &plan.order {
        let label = plan.steps[id].label();
        if reused.contains(&id) {
            out.push_str(&format!("  reuse  {label}\n"));
            continue;
        }
        let why = match resume.steps.iter().find(|s| s.label == label) {
            _ if decision.changed.contains(&label) => {
                "completed, but its definition changed".to_string()
            }
            Some(s) if s.status == "completed" => {
                "completed, but what it needs runs again".to_string()
            }
            Some(s) if s.status == "killed" => "orch was killed while it ran".to_string(),
            Some(s) => format!("{} in the original", s.status),
            None => "never started in the original".to_string(),
        };
        out.push_str(&format!("  run    {label}  ({why})\n"));
    }
    out
}

/// The run `orch resume` continues: the one named, or the newest that ended.
fn find_run(ledger: &Ledger, wanted: Option<&str>) -> Result<RunInfo, Error> {
    let path = &ledger.path;
    let found = match wanted {
        None | Some("latest") => ledger.latest_run(),
        Some(id) => ledger.run_info(id),
    }
    .map_err(|e| sql(path, e))?;
    found.ok_or_else(|| {
        let recent = ledger.recent_runs(5).unwrap_or_default();
        Error::Resume {
            message: match wanted {
                None | Some("latest") => format!("no finished run in {}", path.display()),
                Some(id) => format!("no run {id} in {}", path.display()),
            },
            help: if recent.is_empty() {
                "no run has been recorded there yet".into()
            } else {
                format!("the newest runs: {}", recent.join(", "))
            },
        }
    })
}

/// The state folder holding the run: `--state-dir`, the named manifest's, `./orch.toml`'s, or
/// `./.orch`.
fn state_dir_of(config: &ResumeConfig) -> Result<PathBuf, Error> {
    if let Some(dir) = &config.run.state_dir {
        return Ok(dir.clone());
    }
    let mc = &config.run.manifest;
    let dir = if mc.named {
        super::load(mc)?.settings.state_dir
    } else {
        match crate::manifest::load(Path::new(crate::manifest::DEFAULT_MANIFEST)) {
            Ok(m) => m.settings.state_dir,
            Err(_) => PathBuf::from(".orch"),
        }
    };
    crate::config::absolute_state_dir(&dir)
}

/// The original's results file, if it wrote a readable one.
fn read_results(run_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(run_dir.join("results.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn open(path: &Path) -> Result<Ledger, Error> {
    Ledger::open(path).map_err(|e| sql(path, e))
}

fn sql(path: &Path, e: rusqlite::Error) -> Error {
    Error::io(
        format!("ledger {}", path.display()),
        std::io::Error::other(e),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentProgram;

    const TEXT: &str = "[jobs.a]\nrun = [\"echo\", \"a\"]\n\
        [jobs.b]\nrun = [\"echo\", \"b\"]\nneeds = [\"a\"]\n\
        [jobs.c]\nprompt = \"c\"\npre_commands = [\"/clear\"]\nneeds = [\"b\"]\n";

    fn plan_of(text: &str) -> (Manifest, Plan) {
        let m = crate::manifest::load_str(Path::new("/w/orch.toml"), text.into()).unwrap();
        let options = PlanOptions {
            agent: AgentProgram {
                program: "claude".into(),
                prefix: vec![],
            },
            run_id: Uuid::from_u128(1),
        };
        let plan = Plan::build(&m, &options);
        (m, plan)
    }

    /// The original run of `text`: each label with its status, outputs for each completed job.
    fn original(text: &str, statuses: &[(&str, &str)], dir: &Path) -> Resumption {
        let (m, plan) = plan_of(text);
        let definitions = plan
            .steps
            .iter()
            .map(|s| (s.label(), definition_hash(s, &m.jobs[s.job])))
            .collect();
        let steps = statuses
            .iter()
            .enumerate()
            .map(|(i, (label, status))| StepInfo {
                step: i,
                job: label.split(' ').next().unwrap().to_string(),
                label: label.to_string(),
                status: status.to_string(),
                session_id: None,
                log: None,
                started_at: None,
                finished_at: None,
            })
            .collect();
        let instances: serde_json::Map<String, Value> = ["a", "b", "c"]
            .iter()
            .map(|j| {
                (
                    j.to_string(),
                    serde_json::json!({ "outputs": { "stdout": *j } }),
                )
            })
            .collect();
        Resumption {
            original: RunInfo {
                id: "r1".into(),
                manifest: "/w/orch.toml".into(),
                run_dir: dir.into(),
                status: "failed".into(),
                resumed_from: None,
            },
            steps,
            definitions,
            run_dirs: vec![RunFolder {
                dir: dir.into(),
                results: Some(serde_json::json!({ "instances": instances })),
                outputs: None,
            }],
            force: false,
        }
    }

    fn labels(plan: &Plan, ids: &[StepId]) -> Vec<String> {
        ids.iter().map(|&id| plan.steps[id].label()).collect()
    }

    #[test]
    fn completed_unchanged_steps_are_reused_in_order_and_the_rest_runs() {
        let dir = tempfile::tempdir().unwrap();
        let r = original(
            TEXT,
            &[
                ("a", "completed"),
                ("b", "completed"),
                ("c [1/2]", "completed"),
                ("c [2/2]", "cancelled"),
            ],
            dir.path(),
        );
        let (m, plan) = plan_of(TEXT);
        let d = decide(&m, &plan, &r);
        assert_eq!(labels(&plan, &d.reused), ["a", "b", "c [1/2]"]);
        assert!(d.changed.is_empty());
        // Outputs of the jobs whose last step is reused.
        let with_outputs: Vec<&str> = d
            .outputs
            .iter()
            .map(|(i, _)| plan.instances[*i].name.as_str())
            .collect();
        assert_eq!(with_outputs, ["a", "b"]);
    }

    #[test]
    fn a_changed_step_is_named_and_what_follows_it_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let r = original(
            TEXT,
            &[
                ("a", "completed"),
                ("b", "completed"),
                ("c [1/2]", "failed"),
            ],
            dir.path(),
        );
        let changed = TEXT.replace("[\"echo\", \"a\"]", "[\"echo\", \"A\"]");
        let (m, plan) = plan_of(&changed);
        let d = decide(&m, &plan, &r);
        assert_eq!(d.changed, ["a"]);
        assert!(d.reused.is_empty(), "b needs a, which runs again");
        // A raised budget or a new timeout is not a change.
        let budget = TEXT.replace(
            "prompt = \"c\"",
            "prompt = \"c\"\nmax_usd = 9.0\ntimeout = \"1h\"",
        );
        let r = original(
            TEXT,
            &[
                ("a", "completed"),
                ("b", "completed"),
                ("c [1/2]", "completed"),
            ],
            dir.path(),
        );
        let (m, plan) = plan_of(&budget);
        let d = decide(&m, &plan, &r);
        assert!(d.changed.is_empty(), "{:?}", d.changed);
        assert_eq!(labels(&plan, &d.reused), ["a", "b", "c [1/2]"]);
    }

    #[test]
    fn a_last_step_without_outputs_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = original(TEXT, &[("a", "completed"), ("b", "completed")], dir.path());
        // No results file and no outputs file: nothing to give b's dependents.
        r.run_dirs = vec![RunFolder::read(dir.path().into())];
        let (m, plan) = plan_of(TEXT);
        assert!(decide(&m, &plan, &r).reused.is_empty());
        // The outputs file of the killed run is enough: the last whole line of a job counts (a
        // line cut short by the kill does not), and another job's line is not a's.
        let lines = concat!(
            r#"{"job":"a","outputs":{"stdout":"old"}}"#,
            "\n",
            r#"{"job":"a","outputs":{"stdout":"a"}}"#,
            "\n",
            r#"{"job":"ab","outputs":{"stdout":"ab"}}"#,
            "\n",
            r#"{"job":"a","outputs":{"std"#,
        );
        std::fs::write(dir.path().join("outputs.ndjson"), lines).unwrap();
        r.run_dirs = vec![RunFolder::read(dir.path().into())];
        let d = decide(&m, &plan, &r);
        assert_eq!(labels(&plan, &d.reused), ["a"]);
        assert_eq!(d.outputs[0].1["stdout"], "a");
    }

    #[test]
    fn a_run_folder_with_a_file_per_job_still_gives_its_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = original(TEXT, &[("a", "completed"), ("b", "completed")], dir.path());
        std::fs::create_dir_all(dir.path().join("outputs")).unwrap();
        std::fs::write(dir.path().join("outputs/001-a.json"), "{\"stdout\":\"a\"}").unwrap();
        r.run_dirs = vec![RunFolder::read(dir.path().into())];
        let (m, plan) = plan_of(TEXT);
        let d = decide(&m, &plan, &r);
        assert_eq!(labels(&plan, &d.reused), ["a"]);
        assert_eq!(d.outputs[0].1["stdout"], "a");
    }
}
