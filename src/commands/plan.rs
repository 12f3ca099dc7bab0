//! `orch plan` (and zen's `--dry-run`): what a run would do, without starting anything.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cli::PlanFormat;
use crate::config::{Chosen, ManifestConfig, When};
use crate::errors::Error;
use crate::manifest::{Limit, Manifest, Task};
use crate::plan::{Action, Plan, PlanOptions};
use crate::report::display_path;
pub use crate::report::plan::{Forecast, PlanView, ScheduleView, StepView};

/// The schedule as `orch plan` shows it at `now`: the next five fire times (one with `once`)
/// and the start time, from the start time and cron schedule in force (already parsed).
fn schedule_view(c: &Chosen, once: bool, now: DateTime<Utc>) -> ScheduleView {
    let zone = c.zone;
    let starts = c.start_instant(now);
    // With a start time, the cron service begins then.
    let from = match &starts {
        Some(Ok(t)) => *t,
        _ => now,
    };
    let next = c
        .cron
        .as_ref()
        .map(|(_, cron)| zone.next_fires(cron, from, if once { 1 } else { 5 }))
        .unwrap_or_default();
    let first = next.first().map(|t| t.with_timezone(&Utc));
    let begins = match &starts {
        Some(Ok(t)) => first.or(Some(*t)),
        _ => first,
    };
    let wait_ms = begins.map(|t| (t - now).to_std().unwrap_or_default().as_millis());
    ScheduleView {
        cron: c.cron.as_ref().map(|(text, _)| text.clone()),
        start_at: c.start.as_ref().map(|(text, _, _)| text.clone()),
        timezone: zone.name(),
        starts: starts.clone().and_then(Result::ok).map(|t| zone.fixed(t)),
        start_error: starts.and_then(Result::err),
        next,
        wait_ms,
        once,
    }
}

/// `orch plan`: prints the plan in the chosen format.
pub fn run(
    config: &ManifestConfig,
    format: PlanFormat,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    run_checked(config, format, false, &When::default(), now)
}

/// `orch plan`, with `strict` making an unknown slash command an error, and the start time and
/// schedule of `when` (`--start-at`, `--schedule`, `--once`) over the manifest's.
pub fn run_checked(
    config: &ManifestConfig,
    format: PlanFormat,
    strict: bool,
    when: &When,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let manifest = super::load(config)?;
    // The same precedence as `orch run` (commands::service::Timing): flags over the manifest.
    let chosen = when.choose(&manifest.schedule)?;

    let mut warnings = manifest.warnings.clone();
    let agent = match super::agent_program(config, &manifest) {
        Ok(program) => program,
        Err(Error::ClaudeNotFound { .. }) if super::has_agents(&manifest) => {
            warnings.push(
                "Claude Code (`claude`) was not found: `orch run` would stop before starting; \
                 pass --claude-path or rehearse with --simulate"
                    .into(),
            );
            crate::agent::AgentProgram::by_name()
        }
        Err(Error::ClaudeNotFound { .. }) => crate::agent::AgentProgram::by_name(),
        Err(e) => return Err(e),
    };
    let options = PlanOptions {
        agent,
        run_id: Uuid::new_v4(),
    };
    // As `orch run` would start it: a named session the ledger knows is continued (`--resume`).
    let plan = match super::resume::prepare(&manifest, &options, None) {
        Ok((plan, _)) => plan,
        Err(e) => {
            warnings.push(format!(
                "the ledger could not be read, so sessions are shown as new: {e}"
            ));
            Plan::build(&manifest, &options)
        }
    };
    warnings.extend(budget_warnings(&manifest));
    let (unknown, notes) = slash_warnings(&manifest, &|ws| crate::slash::roots_from_env(ws));
    if strict && !unknown.is_empty() {
        return Err(Error::UnknownCommand { unknown });
    }
    warnings.extend(unknown.into_iter().chain(notes));
    if running_as_root() && std::env::var_os("IS_SANDBOX").is_none() {
        for job in &manifest.jobs {
            if let Task::Agent(a) = &job.task {
                if a.permission_mode == "bypassPermissions" && !config.simulate {
                    warnings.push(format!(
                        "job `{}`: Claude Code refuses bypassPermissions when run as root unless IS_SANDBOX=1 is set",
                        job.name
                    ));
                }
            }
        }
    }
    let mut view = view(&manifest, &plan, now, warnings);
    view.schedule = schedule_view(&chosen, when.once, now);
    add_history(&mut view, &manifest, &plan, now);
    Ok(crate::report::plan::render(&view, format))
}

/// Builds the view of a plan.
pub fn view(m: &Manifest, plan: &Plan, now: DateTime<Utc>, warnings: Vec<String>) -> PlanView {
    let offsets = plan.launch_offsets(m.settings.startup_delay);
    let steps = plan
        .order
        .iter()
        .map(|&id| {
            let step = &plan.steps[id];
            let job = &m.jobs[step.job];
            let mut edges: Vec<(usize, crate::manifest::When)> = plan
                .graph
                .edges_directed(
                    petgraph::graph::NodeIndex::new(id),
                    petgraph::Direction::Incoming,
                )
                .map(|e| {
                    use petgraph::visit::EdgeRef;
                    (e.source().index(), *e.weight())
                })
                .collect();
            edges.sort_unstable_by_key(|e| e.0);
            let (needs, when) = edges.into_iter().unzip();
            let (references, reads_from) = references(m, plan, id);
            StepView {
                id,
                label: step.label(),
                job: step.job_name.clone(),
                index: step.index,
                of: step.of,
                action: step.action.clone(),
                argv: step.argv.clone(),
                needs,
                when,
                references,
                reads_from,
                condition: if step.index == 1 && !matches!(step.action, Action::Expand { .. }) {
                    job.condition.clone()
                } else {
                    None
                },
                fan_out: fan_out_text(m, plan, id),
                retry: (job.retry.attempts > 1).then(|| {
                    let r = &job.retry;
                    let on: Vec<&str> = r.on.iter().map(|o| o.as_str()).collect();
                    format!(
                        "up to {} attempts, backoff {} doubling to {}{}, on {}",
                        r.attempts,
                        crate::duration::format(r.backoff),
                        crate::duration::format(r.max_backoff),
                        if r.jitter { " with jitter" } else { "" },
                        on.join(", ")
                    )
                }),
                offset_ms: offsets[id].as_millis(),
                timeout_ms: job.timeout.as_millis(),
                limit: (step.is_main() && job.limit.is_set()).then_some(job.limit),
                forecast: None,
                worktree: worktree_view(m, step),
            }
        })
        .collect();
    PlanView {
        name: m.name.clone(),
        manifest: display_path(&m.path),
        workspace: display_path(&m.settings.workspace),
        startup_delay_ms: m.settings.startup_delay.as_millis(),
        max_parallel: m.settings.max_parallel,
        timeout_ms: m.settings.timeout.as_millis(),
        fail_fast: m.settings.fail_fast,
        state_dir: display_path(&m.settings.state_dir),
        // The manifest's own schedule (checked when it loaded); `run_checked` puts the flags' over it.
        schedule: match When::default().choose(&m.schedule) {
            Ok(chosen) => schedule_view(&chosen, false, now),
            Err(_) => schedule_view(&Chosen::default(), false, now),
        },
        budget: m.budget.clone(),
        window_spent: None,
        steps,
        warnings,
    }
}

/// The references a step's templates read (its argv's templated elements, its job's env values
/// and workspace, its `if` on the first step, a `for_each` source on the expansion step), each
/// once as written, and the exit steps of the jobs they read from.
/// An isolated job's worktree, on its first step.
fn worktree_view(
    m: &Manifest,
    step: &crate::plan::Step,
) -> Option<crate::report::plan::WorktreeView> {
    let job = &m.jobs[step.job];
    let iso = job.isolation.as_ref()?;
    if step.index != 1 || matches!(step.action, Action::Expand { .. }) {
        return None;
    }
    let name = crate::worktree::branch_component(&step.job_name);
    let written = iso.base.as_deref().unwrap_or("HEAD");
    let base = match crate::worktree::short_commit(&job.workspace, written) {
        Some(commit) if !written.contains("${{") => format!("{written} ({commit})"),
        _ => written.to_string(),
    };
    Some(crate::report::plan::WorktreeView {
        dir: display_path(
            &m.settings
                .state_dir
                .join("worktrees")
                .join("<run>")
                .join(&name),
        ),
        branch: iso
            .branch
            .clone()
            .unwrap_or_else(|| format!("orch/<run>/{name}")),
        base,
        setup: iso.setup.clone(),
        commit: iso.commit,
        keep: iso.keep,
    })
}

fn references(m: &Manifest, plan: &Plan, id: usize) -> (Vec<String>, Vec<usize>) {
    use crate::template::Reference;
    let step = &plan.steps[id];
    let job = &m.jobs[step.job];
    let mut texts: Vec<&str> = Vec::new();
    match &step.action {
        Action::Agent { .. } => texts.extend(step.argv.last().map(String::as_str)),
        Action::Expand { source } => texts.push(source),
        _ => texts.extend(step.argv.iter().map(String::as_str)),
    }
    texts.extend(job.env.iter().map(|(_, v)| v.as_str()));
    let workspace = job.workspace.to_string_lossy();
    texts.push(&workspace);
    if let (Some(iso), 1) = (&job.isolation, step.index) {
        texts.extend(iso.branch.iter().chain(&iso.base).map(String::as_str));
    }
    let mut refs: Vec<Reference> = Vec::new();
    for t in texts {
        if let Ok(t) = crate::template::parse(t) {
            refs.extend(t.references().map(|(r, _)| r.clone()));
        }
    }
    if step.index == 1 && !matches!(step.action, Action::Expand { .. }) {
        if let Some(c) = job
            .condition
            .as_deref()
            .and_then(|c| crate::condition::parse(c).ok())
        {
            refs.extend(c.references().into_iter().map(|(r, _)| r.clone()));
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut from: Vec<usize> = Vec::new();
    for r in &refs {
        let text = r.to_string();
        if !out.contains(&text) {
            out.push(text);
        }
        let source = match r {
            Reference::Output { job, .. } | Reference::Status { job } => Some(job),
            _ => None,
        };
        if let Some(k) = source.and_then(|name| m.jobs.iter().position(|j| &j.name == name)) {
            for exit in plan.exits(plan.of_job[k]) {
                if !from.contains(&exit) {
                    from.push(exit);
                }
            }
        }
    }
    from.sort_unstable();
    (out, from)
}

/// Where a step sits in a fan-out, in words.
fn fan_out_text(m: &Manifest, plan: &Plan, id: usize) -> Option<String> {
    use crate::plan::Fan;
    let step = &plan.steps[id];
    if let Action::Expand { source } = &step.action {
        let max = match &m.jobs[step.job].fan_out {
            Some(crate::manifest::FanOut::ForEach { max_items, .. }) => *max_items,
            _ => 0,
        };
        return Some(format!(
            "expands from {} when it exists: one instance per item, at most {max}",
            source.trim()
        ));
    }
    match &plan.instances[step.instance].fan {
        Fan::Member { group, index, .. } => {
            let Fan::Group { members, .. } = &plan.instances[*group].fan else {
                return None;
            };
            Some(format!(
                "instance {} of {} of `{}` (matrix)",
                index + 1,
                members.len(),
                plan.instances[*group].name
            ))
        }
        _ => None,
    }
}

/// Adds what the ledger knows, when there is one: the window's spend and each agent job's
/// forecast. A missing ledger is not created; the plan then says there is no history.
fn add_history(view: &mut PlanView, m: &Manifest, plan: &Plan, now: DateTime<Utc>) {
    let path = crate::ledger::path(&m.settings.state_dir);
    // A ledger that exists but cannot be read (too few open files, not a database) is said
    // once, as a warning: the plan itself does not need it.
    let mut failed: Option<String> = None;
    let mut note = |e: rusqlite::Error| {
        failed.get_or_insert_with(|| e.to_string());
    };
    let ledger = if path.exists() {
        crate::ledger::Ledger::open(&path).map_err(&mut note).ok()
    } else {
        None
    };
    if let (Some(l), Some(w)) = (&ledger, &m.budget.window) {
        let since = crate::duration::before(now, w.period);
        view.window_spent = l.spent_since(since).map_err(&mut note).ok();
    }
    // Every job's past costs in one read of the ledger, once there is an agent step to forecast.
    let mut job_costs: Option<std::collections::HashMap<String, Vec<f64>>> = None;
    for s in &mut view.steps {
        let step = &plan.steps[s.id];
        if !step.is_main() || !step.is_agent() {
            continue;
        }
        let all = job_costs.get_or_insert_with(|| {
            ledger
                .as_ref()
                .and_then(|l| l.job_costs(&m.name).map_err(&mut note).ok())
                .unwrap_or_default()
        });
        let mut costs = all.get(&step.job_name).cloned().unwrap_or_default();
        costs.sort_by(f64::total_cmp);
        let median = match costs.len() {
            0 => None,
            n if n % 2 == 1 => Some(costs[n / 2]),
            n => Some((costs[n / 2 - 1] + costs[n / 2]) / 2.0),
        };
        s.forecast = Some(Forecast {
            median_usd: median,
            runs: costs.len(),
        });
    }
    if let Some(e) = failed {
        view.warnings.push(format!(
            "cannot read the ledger {}: {e}; window spend and forecasts are not shown",
            display_path(&path)
        ));
    }
}

/// Jobs whose own limit can never fit inside a scope they belong to.
fn budget_warnings(m: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for job in &m.jobs {
        let command = match &job.task {
            Task::Agent(a) => crate::manifest::Agent::base_command(&a.prompt),
            _ => None,
        };
        let mut scopes: Vec<(String, Limit)> = vec![("the run budget".into(), m.budget.run)];
        if let Some(cmd) = command {
            scopes.extend(
                m.budget
                    .commands
                    .iter()
                    .filter(|(c, _)| c == cmd)
                    .map(|(c, l)| (format!("the {c} budget"), *l)),
            );
        }
        if let Some(w) = &m.budget.window {
            scopes.push((
                format!("the {} window", crate::duration::format(w.period)),
                w.limit,
            ));
        }
        for (scope, limit) in scopes {
            if let (Some(mine), Some(cap)) = (job.limit.tokens, limit.tokens) {
                if mine > cap {
                    out.push(format!(
                        "job `{}`: max_tokens {mine} can never fit {scope} of {cap} tokens",
                        job.name
                    ));
                }
            }
            if let (Some(mine), Some(cap)) = (job.limit.usd, limit.usd) {
                if mine > cap {
                    out.push(format!(
                        "job `{}`: max_usd ${mine} can never fit {scope} of ${cap}",
                        job.name
                    ));
                }
            }
        }
    }
    out
}

// ---- Slash commands (DESIGN.md section 9) ----

/// Every slash command a job would run (pre-commands included), checked against what Claude
/// Code would find in the job's workspace: unknown commands with "did you mean", then problems
/// with the files of the commands that are used (broken frontmatter, conflicts).
pub fn slash_warnings(
    m: &Manifest,
    roots: &dyn Fn(&std::path::Path) -> crate::slash::Roots,
) -> (Vec<String>, Vec<String>) {
    use crate::slash::{Catalog, Found};
    let mut catalogs: std::collections::HashMap<&std::path::Path, Catalog> = Default::default();
    let (mut unknown, mut notes) = (Vec::new(), Vec::new());
    for job in &m.jobs {
        let Task::Agent(a) = &job.task else { continue };
        let catalog = catalogs
            .entry(job.workspace.as_path())
            .or_insert_with(|| crate::slash::discover(&roots(&job.workspace)));
        for prompt in a.pre_commands.iter().chain(std::iter::once(&a.prompt)) {
            let Some(cmd) = crate::slash::command_name(prompt) else {
                continue;
            };
            match catalog.find(cmd) {
                None => unknown.push(format!(
                    "job `{}`: unknown slash command `{cmd}`{}",
                    job.name,
                    catalog
                        .suggest(cmd)
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_else(|| " (`orch commands` lists the known ones)".into())
                )),
                Some(Found::Discovered(c)) => {
                    let path = c.path.as_deref().unwrap_or(std::path::Path::new(""));
                    for p in catalog.problems_of(path) {
                        notes.push(format!("job `{}`: {cmd}: {}", job.name, p.message));
                    }
                }
                Some(Found::BuiltIn(_)) => {}
            }
        }
    }
    (unknown, notes)
}

fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
