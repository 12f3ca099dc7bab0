//! Resolve: raw manifest → validated [`Manifest`]. Applies defaults and inheritance, checks every
//! value's meaning (durations, budgets, enumerations, cron, the job graph) and collects every mistake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use uuid::Uuid;

use super::diagnostic::{ManifestError, did_you_mean, span};
use super::model::*;
use super::node::Span;
use super::raw::{DurationText, RawJob, RawLimit, RawManifest, RawNeed};
use super::read::{Sp, quote_key};
use super::slurm::{Allocation, DEFAULT_PENDING_TIMEOUT, RawSlurm, Slurm};

/// The top of a manifest's Slurm keys: whether jobs run on Slurm by default, and `[slurm]`.
struct Slurmed {
    on: bool,
    table: RawSlurm,
}
use crate::duration;

/// The namespace for mapping session names to stable UUIDs (a fixed, arbitrary UUID).
const SESSION_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6368_2d73_6573_7369_6f6e_2d69_6473);

/// Maps a `session_id` to the UUID Claude Code needs: a UUID stays itself, a name maps stably.
pub fn session_uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_else(|_| Uuid::new_v5(&SESSION_NAMESPACE, id.as_bytes()))
}

/// Collects the mistakes and warnings of one manifest while it is resolved.
pub(super) struct Resolver {
    pub(super) errors: Vec<ManifestError>,
    pub(super) warnings: Vec<String>,
}

/// Resolves a raw manifest read from `path`.
pub fn resolve(raw: RawManifest, path: &Path, text: &str) -> Result<Manifest, Vec<ManifestError>> {
    // Absolute, so that logs and results name files that open from anywhere.
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = std::path::absolute(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &dir
    })
    .unwrap_or(dir);
    let join = |rel: &str| clean(&dir.join(rel));
    let mut r = Resolver {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let raw_settings = raw.settings.unwrap_or_default();
    let defaults = raw.defaults.unwrap_or_default();
    let workspace = join(raw_settings.workspace.as_deref().unwrap_or("."));
    let slurmed = Slurmed {
        on: match &raw_settings.executor {
            Some(e) => r.one_of("settings.executor", e, &["local", "slurm"]) == Some("slurm"),
            None => false,
        },
        table: raw.slurm.clone().unwrap_or_default(),
    };
    r.check_slurm("slurm", &slurmed.table);
    let settings = Settings {
        startup_delay: r
            .duration(
                "settings.startup_delay",
                raw_settings.startup_delay.as_ref(),
            )
            .unwrap_or(DEFAULT_STARTUP_DELAY),
        max_parallel: r
            .count("settings.max_parallel", raw_settings.max_parallel.as_ref())
            .map(|n| n as usize),
        timeout: r
            .duration("settings.timeout", raw_settings.timeout.as_ref())
            .unwrap_or(DEFAULT_TIMEOUT),
        fail_fast: raw_settings.fail_fast.unwrap_or(false),
        state_dir: join(raw_settings.state_dir.as_deref().unwrap_or(".orch")),
        // A bare name ("claude") is looked up on PATH; a path is relative to the manifest.
        claude_path: raw_settings.claude_path.map(|p| {
            if p.contains('/') {
                join(&p)
            } else {
                PathBuf::from(p)
            }
        }),
        disable_budget_visuals: raw_settings.disable_budget_visuals.unwrap_or(false),
        workspace,
        max_pause: r
            .duration("settings.max_pause", raw_settings.max_pause.as_ref())
            .unwrap_or(DEFAULT_MAX_PAUSE),
        throttle_quiet: r
            .duration(
                "settings.throttle_quiet",
                raw_settings.throttle_quiet.as_ref(),
            )
            .unwrap_or(DEFAULT_THROTTLE_QUIET),
    };

    let schedule = raw.schedule.unwrap_or_default();
    if let Some(cron) = &schedule.cron {
        if let Err(reason) = crate::schedule::parse_cron(&cron.value) {
            r.errors.push(ManifestError::BadCron {
                path: "schedule.cron".into(),
                reason,
                span: span(&cron.span),
            });
        }
    }
    if let Some(start) = &schedule.start_at {
        if let Err(reason) = crate::schedule::parse_start_at(&start.value) {
            r.errors.push(ManifestError::BadStartAt {
                path: "schedule.start_at".into(),
                reason,
                span: span(&start.span),
            });
        }
    }
    if let Some(tz) = &schedule.timezone {
        if crate::schedule::Zone::parse(Some(&tz.value)).is_err() {
            let help = match did_you_mean(&tz.value, crate::schedule::Zone::names()) {
                Some(name) => format!("did you mean \"{name}\"?"),
                None => "use an IANA zone name such as \"Europe/Berlin\", \"America/New_York\" \
                         or \"UTC\", or leave it out for the machine's local time"
                    .into(),
            };
            r.errors.push(ManifestError::BadTimezone {
                path: "schedule.timezone".into(),
                name: tz.value.clone(),
                span: span(&tz.span),
                help,
            });
        }
    }
    let schedule = Schedule {
        cron: schedule.cron.map(|c| c.value),
        start_at: schedule.start_at.map(|s| s.value),
        timezone: schedule.timezone.map(|t| t.value),
    };

    let raw_budget = raw.budget.unwrap_or_default();
    let budget = Budget {
        mode: match raw_budget.mode {
            None => BudgetMode::Warn,
            Some(m) => match r.one_of("budget.mode", &m, &["warn", "block"]) {
                Some("block") => BudgetMode::Block,
                _ => BudgetMode::Warn,
            },
        },
        run: r.limit("budget", raw_budget.tokens.as_ref(), raw_budget.usd.as_ref()),
        commands: raw_budget
            .commands
            .map(|m| m.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(cmd, l)| {
                let at = format!("budget.commands.{:?}", cmd.value);
                if !cmd.value.starts_with('/') {
                    r.warnings.push(format!(
                        "budget command `{}` does not start with `/`; budgets are keyed by the base slash command",
                        cmd.value
                    ));
                }
                (cmd.value, r.raw_limit(&at, &l))
            })
            .collect(),
        window: raw_budget.window.map(|w| {
            let period = match &w.period {
                Some(p) => r.duration("budget.window.period", Some(p)),
                None => {
                    r.warnings
                        .push("budget.window has no `period`; using 24h".to_string());
                    None
                }
            };
            Window {
                period: period.unwrap_or(Duration::from_secs(86_400)),
                limit: r.limit("budget.window", w.tokens.as_ref(), w.usd.as_ref()),
            }
        }),
    };

    let (jobs_span, raw_jobs) = match raw.jobs {
        Some(j) => (j.span, j.value.0),
        None => (0..0, Vec::new()),
    };
    // A jobs table that failed to read was reported already; it is not also empty.
    if raw_jobs.is_empty() && !raw.partial {
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        r.errors.push(ManifestError::Empty {
            span: span(&jobs_span),
            help: super::diagnostic::empty_help(json),
        });
    }
    let mut jobs: Vec<Job> = Vec::with_capacity(raw_jobs.len());
    let mut first_of: std::collections::HashMap<&str, &Span> =
        std::collections::HashMap::with_capacity(raw_jobs.len());
    for (name, job) in &raw_jobs {
        if let Some(first) = first_of.get(name.value.as_str()) {
            r.errors.push(ManifestError::DuplicateJob {
                name: name.value.clone(),
                first: span(first),
                second: span(&name.span),
            });
            continue;
        }
        first_of.insert(&name.value, &name.span);
        let chars = name.value.chars().count();
        if chars > super::MAX_JOB_NAME {
            r.errors.push(ManifestError::LongJobName {
                start: name.value.chars().take(20).collect(),
                chars,
                span: span(&name.span),
            });
            continue;
        }
        if let Some(resolved) = r.job(name, job, &defaults, &dir, &settings, &slurmed) {
            jobs.push(resolved);
        }
    }
    // A session is used by one job: two jobs naming it would run in it at once.
    let mut session_of: std::collections::HashMap<Uuid, (&str, &Span)> = Default::default();
    for (name, job) in &raw_jobs {
        let Some(named) = &job.session_id else {
            continue;
        };
        let id = session_uuid(&named.value);
        match session_of.get(&id) {
            Some((first_job, first)) if *first_job != name.value => {
                r.errors.push(ManifestError::SharedSession {
                    session: named.value.clone(),
                    first_job: first_job.to_string(),
                    second_job: name.value.clone(),
                    first: span(first),
                    second: span(&named.span),
                })
            }
            Some(_) => {}
            None => {
                session_of.insert(id, (&name.value, &named.span));
            }
        }
    }
    r.check_graph(&raw_jobs);
    // Templates are checked alongside the other mistakes, unless the graph has a cycle (whose
    // upstream sets mean nothing).
    if !r
        .errors
        .iter()
        .any(|e| matches!(e, ManifestError::Cycle { .. }))
    {
        let found = super::refs::check(&jobs, &raw_jobs, text, &mut r.warnings);
        r.errors.extend(found);
    }

    if r.errors.is_empty() {
        Ok(Manifest {
            name: raw.name.map(|n| n.value).unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "orch".into())
            }),
            description: raw.description,
            path: path.to_path_buf(),
            settings,
            schedule,
            budget,
            slurm: jobs
                .iter()
                .any(|j| j.slurm.is_some())
                .then(|| r.slurm("slurm", &slurmed.table, &RawSlurm::default()))
                .flatten(),
            jobs,
            warnings: r.warnings,
        })
    } else {
        Err(r.errors)
    }
}

impl Resolver {
    fn duration(&mut self, path: &str, d: Option<&Sp<DurationText>>) -> Option<Duration> {
        let d = d?;
        let parsed = match &d.value {
            DurationText::Text(t) => duration::parse(t),
            DurationText::Seconds(s) => duration::seconds_to_duration(*s),
        };
        parsed
            .map_err(|e| {
                self.errors.push(match e {
                    duration::ParseError::TooLong => ManifestError::DurationTooLong {
                        path: path.into(),
                        span: span(&d.span),
                    },
                    duration::ParseError::Invalid(reason) => ManifestError::BadDuration {
                        path: path.into(),
                        reason,
                        span: span(&d.span),
                    },
                })
            })
            .ok()
    }

    /// A token budget: a whole number above zero.
    fn tokens(&mut self, path: &str, n: Option<&Sp<i64>>) -> Option<u64> {
        let n = n?;
        if n.value > 0 {
            return Some(n.value as u64);
        }
        self.errors.push(ManifestError::BadBudget {
            path: path.into(),
            span: span(&n.span),
            help: format!("use a number of tokens of at least 1, or remove `{path}`"),
        });
        None
    }

    /// A count such as max_parallel or max_turns.
    fn count(&mut self, path: &str, n: Option<&Sp<i64>>) -> Option<u64> {
        let n = n?;
        if n.value > 0 {
            return Some(n.value as u64);
        }
        self.errors.push(ManifestError::NotPositive {
            path: path.into(),
            span: span(&n.span),
            help: format!("write 1 or more, or remove `{path}` for the default"),
        });
        None
    }

    fn usd(&mut self, path: &str, n: Option<&Sp<f64>>) -> Option<f64> {
        let n = n?;
        if n.value > 0.0 {
            return Some(n.value);
        }
        self.errors.push(ManifestError::BadBudget {
            path: path.into(),
            span: span(&n.span),
            help: format!("use an amount in dollars above zero, like 2.5, or remove `{path}`"),
        });
        None
    }

    fn limit(&mut self, at: &str, tokens: Option<&Sp<i64>>, usd: Option<&Sp<f64>>) -> Limit {
        Limit {
            tokens: self.tokens(&format!("{at}.tokens"), tokens),
            usd: self.usd(&format!("{at}.usd"), usd),
        }
    }

    fn raw_limit(&mut self, at: &str, l: &RawLimit) -> Limit {
        self.limit(at, l.tokens.as_ref(), l.usd.as_ref())
    }

    /// A job's Slurm settings: `None` when it runs locally (its `executor`, else the top one).
    fn job_slurm(&mut self, name: &Sp<String>, job: &RawJob, top: &Slurmed) -> Option<Slurm> {
        let at = format!("jobs.{}", quote_key(&name.value));
        let executor = match &job.executor {
            Some(e) => self.one_of(&format!("{at}.executor"), e, &["local", "slurm"])? == "slurm",
            None => top.on,
        };
        if let (Some(own), false) = (&job.slurm, executor) {
            self.warnings.push(format!(
                "job `{}`: its `slurm` table is ignored, the job runs locally (set `executor = \"slurm\"`)",
                name.value
            ));
            let _ = own;
        }
        if !executor {
            return None;
        }
        let own = job.slurm.clone().unwrap_or_default();
        self.check_slurm(&format!("{at}.slurm"), &own);
        if let Some(a) = &own.allocation {
            self.errors.push(ManifestError::BadValue {
                path: format!("{at}.slurm.allocation"),
                allowed: "the top `[slurm]` table only".into(),
                span: span(&a.span),
                help: "the allocation mode is the run's: set it in `[slurm]`".into(),
            });
        }
        self.slurm(&format!("{at}.slurm"), &top.table, &own)
    }

    /// The form of a `[slurm]` table's names and sizes ([`super::slurm::check`]), each table
    /// once: the top one here, a job's own where it is.
    fn check_slurm(&mut self, at: &str, t: &RawSlurm) {
        let keys = [
            ("partition", &t.partition),
            ("account", &t.account),
            ("qos", &t.qos),
            ("mem", &t.mem),
            ("gres", &t.gres),
            ("constraint", &t.constraint),
            ("nodes", &t.nodes),
        ];
        for (key, v) in keys {
            let Some(v) = v else { continue };
            if let Err((message, help)) = super::slurm::check(key, &v.value) {
                self.errors.push(ManifestError::SlurmValue {
                    path: format!("{at}.{key}"),
                    message,
                    span: span(&v.span),
                    help,
                });
            }
        }
    }

    /// One `[slurm]` table (the top one merged with `own`) resolved.
    fn slurm(&mut self, at: &str, top: &RawSlurm, own: &RawSlurm) -> Option<Slurm> {
        let raw = top.merged(own);
        let path = |key: &str| format!("{at}.{key}");
        let allocation = match &raw.allocation {
            Some(a) => match self.one_of(&path("allocation"), a, &["per_run", "per_step"])? {
                "per_step" => Allocation::PerStep,
                _ => Allocation::PerRun,
            },
            None => Allocation::PerRun,
        };
        let value = |v: Option<Sp<String>>| v.map(|v| v.value);
        Some(Slurm {
            allocation,
            partition: value(raw.partition),
            account: value(raw.account),
            qos: value(raw.qos),
            cpus: self.count(&path("cpus"), raw.cpus.as_ref()).unwrap_or(1) as u32,
            mem: value(raw.mem),
            gres: value(raw.gres),
            time: self.duration(&path("time"), raw.time.as_ref()),
            constraint: value(raw.constraint),
            nodes: value(raw.nodes),
            pending_timeout: self
                .duration(&path("pending_timeout"), raw.pending_timeout.as_ref())
                .unwrap_or(DEFAULT_PENDING_TIMEOUT),
            pass_env: raw.pass_env.unwrap_or_default(),
            claude_path: raw.claude_path,
            orch_path: raw.orch_path,
            extra_args: raw.extra_args.unwrap_or_default(),
        })
    }

    fn one_of<'a>(&mut self, path: &str, v: &Sp<String>, allowed: &[&'a str]) -> Option<&'a str> {
        if let Some(ok) = allowed.iter().find(|a| **a == v.value) {
            return Some(ok);
        }
        let help = match did_you_mean(&v.value, allowed.iter().copied()) {
            Some(s) => format!("did you mean \"{s}\"?"),
            None => format!("write one of: {}", allowed.join(", ")),
        };
        self.errors.push(ManifestError::BadValue {
            path: path.into(),
            allowed: allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", "),
            span: span(&v.span),
            help,
        });
        None
    }

    fn job(
        &mut self,
        name: &Sp<String>,
        job: &RawJob,
        defaults: &super::raw::RawDefaults,
        dir: &Path,
        settings: &Settings,
        slurm: &Slurmed,
    ) -> Option<Job> {
        let at = |key: &str| format!("jobs.{}.{key}", quote_key(&name.value));
        let given: Vec<(&str, &Span)> = [
            ("command", job.command.as_ref().map(|c| &c.span)),
            ("prompt", job.prompt.as_ref().map(|c| &c.span)),
            ("run", job.run.as_ref().map(|c| &c.span)),
            ("shell", job.shell.as_ref().map(|c| &c.span)),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        if given.is_empty() {
            if job.partial {
                return None; // its command failed to read and was reported
            }
            self.errors.push(ManifestError::NoCommand {
                job: name.value.clone(),
                span: span(&name.span),
            });
            return None;
        }
        if given.len() > 1 {
            self.errors.push(ManifestError::ConflictingCommand {
                job: name.value.clone(),
                first: given[0].0.into(),
                second: given[1].0.into(),
                first_span: span(given[0].1),
                second_span: span(given[1].1),
            });
            return None;
        }

        let timeout = self
            .duration(
                &at("timeout"),
                job.timeout.as_ref().or(defaults.timeout.as_ref()),
            )
            .unwrap_or(settings.timeout);
        let limit = self.limit(
            &format!("jobs.{}", quote_key(&name.value)),
            job.max_tokens.as_ref().or(defaults.max_tokens.as_ref()),
            job.max_usd.as_ref().or(defaults.max_usd.as_ref()),
        );
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in self.env_files(&name.value, job, defaults, dir) {
            env.retain(|(key, _)| *key != k);
            env.push((k, v));
        }
        let secrets = self.secret_names(&name.value, job, defaults);
        for (k, v) in defaults
            .env
            .iter()
            .flat_map(|m| &m.0)
            .chain(job.env.iter().flat_map(|m| &m.0))
        {
            env.retain(|(key, _)| *key != k.value);
            env.push((k.value.clone(), v.clone()));
        }
        let workspace = match job.workspace.as_ref().or(defaults.workspace.as_ref()) {
            Some(w) => clean(&dir.join(w)),
            None => settings.workspace.clone(),
        };

        let task = if let Some(run) = &job.run {
            if run.value.is_empty() {
                self.errors.push(ManifestError::WrongType {
                    path: at("run"),
                    expected: "a program and its arguments",
                    found: "an empty array",
                    span: span(&run.span),
                    help: "write the program first, e.g. run = [\"cargo\", \"test\"]".into(),
                });
                return None;
            }
            if run.value[0].value.is_empty() {
                self.errors.push(ManifestError::EmptyProgram {
                    path: format!("{}[0]", at("run")),
                    span: span(&run.value[0].span),
                });
                return None;
            }
            self.agent_keys_ignored(&name.value, job);
            Task::Exec {
                argv: run.value.iter().map(|a| a.value.clone()).collect(),
            }
        } else if let Some(shell) = &job.shell {
            self.agent_keys_ignored(&name.value, job);
            Task::Shell {
                script: shell.value.clone(),
            }
        } else {
            let prompt = job.command.as_ref().or(job.prompt.as_ref())?;
            let permission_mode = match job
                .permission_mode
                .as_ref()
                .or(defaults.permission_mode.as_ref())
            {
                Some(m) => self
                    .one_of(&at("permission_mode"), m, PERMISSION_MODES)?
                    .to_string(),
                None => DEFAULT_PERMISSION_MODE.to_string(),
            };
            if let Some(f) = job
                .output_format
                .as_ref()
                .or(defaults.output_format.as_ref())
            {
                if self.one_of(&at("output_format"), f, &["stream-json", "json"])? == "json" {
                    self.warnings.push(format!(
                        "job `{}`: output_format \"json\" is accepted for zen compatibility; orch always reads stream-json to count tokens",
                        name.value
                    ));
                }
            }
            let max_turns = self
                .count(
                    &at("max_turns"),
                    job.max_turns.as_ref().or(defaults.max_turns.as_ref()),
                )
                .map(|n| n.min(u32::MAX as u64) as u32);
            let model = job.model.clone().or_else(|| defaults.model.clone());
            let config = self.claude_config(&name.value, job, defaults, dir);
            self.unknown_models(
                &name.value,
                model.as_deref(),
                config.fallback_model.as_deref(),
            );
            let mut pre_commands = Vec::new();
            if job.clear_history == Some(true) {
                pre_commands.push("/clear".to_string());
            }
            if job.compact_history == Some(true) {
                pre_commands.push("/compact".to_string());
            }
            pre_commands.extend(job.pre_commands.iter().flatten().map(|c| c.value.clone()));
            Task::Agent(Agent {
                prompt: prompt.value.clone(),
                pre_commands,
                allowed_tools: job
                    .allowed_tools
                    .clone()
                    .or_else(|| defaults.allowed_tools.clone())
                    .unwrap_or_default(),
                permission_mode,
                model,
                max_turns,
                session_id: job.session_id.as_ref().map(|s| session_uuid(&s.value)),
                output_schema: None,
                config: Box::new(config),
                fork_session: self.fork_session(&at("session"), job),
            })
        };
        let needs = self.needs(&name.value, job);
        let fan_out = self.fan_out(&name.value, job);
        let max_parallel = self
            .count(&at("max_parallel"), job.max_parallel.as_ref())
            .map(|n| n as usize);
        let outputs = self.process_outputs(&name.value, job, &task);
        let task = match task {
            Task::Agent(mut agent) => {
                agent.output_schema = self.output_schema(&name.value, job, dir);
                Task::Agent(agent)
            }
            other => {
                if job.output_schema.is_some() {
                    self.warnings.push(format!(
                        "job `{}`: `output_schema` applies to agent jobs only and is ignored for `run`/`shell`",
                        name.value
                    ));
                }
                other
            }
        };
        Some(Job {
            name: name.value.clone(),
            description: job.description.clone(),
            task,
            needs,
            condition: job.condition.as_ref().map(|c| c.value.clone()),
            continue_on_failure: job.continue_on_failure.unwrap_or(false),
            fan_out,
            max_parallel,
            outputs,
            timeout,
            env,
            isolation: self.isolation(name, job, defaults),
            slurm: self.job_slurm(name, job, slurm),
            workspace,
            limit,
            secrets,
            retry: self.retry(
                &at("retry"),
                job.retry.as_ref().map(|r| &r.value),
                defaults.retry.as_ref().map(|r| &r.value),
            ),
        })
    }

    /// `retry`, key by key: the job's table, else `[defaults]`'s, else the default.
    fn retry(
        &mut self,
        path: &str,
        job: Option<&super::raw::RawRetry>,
        defaults: Option<&super::raw::RawRetry>,
    ) -> Retry {
        let mut out = Retry::default();
        let pick = |f: fn(&super::raw::RawRetry) -> bool| {
            job.filter(|j| f(j)).or(defaults.filter(|d| f(d)))
        };
        let at = |key: &str| format!("{path}.{key}");
        if let Some(t) = pick(|t| t.attempts.is_some()) {
            let n = t.attempts.as_ref().expect("picked for it");
            match self.count(&at("attempts"), Some(n)) {
                Some(n) if n <= 100 => out.attempts = n as u32,
                Some(_) => self.errors.push(ManifestError::WrongType {
                    path: at("attempts"),
                    expected: "at most 100",
                    found: "a larger number",
                    span: span(&n.span),
                    help: "write 100 attempts or fewer".into(),
                }),
                None => {}
            }
        }
        if let Some(t) = pick(|t| t.backoff.is_some()) {
            if let Some(d) = self.duration(&at("backoff"), t.backoff.as_ref()) {
                out.backoff = d;
            }
        }
        if let Some(t) = pick(|t| t.max_backoff.is_some()) {
            if let Some(d) = self.duration(&at("max_backoff"), t.max_backoff.as_ref()) {
                out.max_backoff = d;
            }
        }
        if let Some(t) = pick(|t| t.jitter.is_some()) {
            out.jitter = t.jitter.unwrap_or(true);
        }
        if let Some(t) = pick(|t| t.on.is_some()) {
            let names: Vec<&str> = RetryOn::ALL.iter().map(|k| k.as_str()).collect();
            let mut on = Vec::new();
            for (i, v) in t.on.iter().flatten().enumerate() {
                if let Some(name) = self.one_of(&format!("{}[{i}]", at("on")), v, &names) {
                    let kind = *RetryOn::ALL
                        .iter()
                        .find(|k| k.as_str() == name)
                        .expect("a name of ALL");
                    if !on.contains(&kind) {
                        on.push(kind);
                    }
                }
            }
            out.on = on;
        }
        if let Some(t) = pick(|t| t.prompt.is_some()) {
            let p = t.prompt.as_ref().expect("picked for it");
            if p.value.trim().is_empty() {
                self.errors.push(ManifestError::WrongType {
                    path: at("prompt"),
                    expected: "a prompt",
                    found: "a blank string",
                    span: span(&p.span),
                    help: format!("write a prompt, or remove it for \"{DEFAULT_RETRY_PROMPT}\""),
                });
            } else {
                out.prompt = p.value.clone();
            }
        }
        out
    }

    /// `isolation = "worktree"` and its keys (the job's, else `[defaults]`'s). Git is asked
    /// nothing here: `crate::worktree::check` does, once the flags are applied.
    fn isolation(
        &mut self,
        name: &Sp<String>,
        job: &RawJob,
        defaults: &super::raw::RawDefaults,
    ) -> Option<Isolation> {
        let at = |key: &str| format!("jobs.{}.{key}", quote_key(&name.value));
        let Some(kind) = job.isolation.as_ref().or(defaults.isolation.as_ref()) else {
            let given = [
                ("branch", job.branch.is_some()),
                ("base", job.base.is_some()),
                ("setup", job.setup.is_some()),
                ("commit", job.commit.is_some()),
                ("keep", job.keep.is_some()),
                ("require_clean", job.require_clean.is_some()),
            ];
            for (key, set) in given {
                if set {
                    self.warnings.push(format!(
                        "job `{}`: `{key}` applies to jobs with isolation = \"worktree\" only and is ignored",
                        name.value
                    ));
                }
            }
            return None;
        };
        // "none" lets a job opt out of `[defaults]`' isolation.
        if self.one_of(&at("isolation"), kind, &["worktree", "none"])? == "none" {
            return None;
        }
        let keep = match job.keep.as_ref().or(defaults.keep.as_ref()) {
            None => Keep::OnFailure,
            Some(k) => match self.one_of(&at("keep"), k, &["on_failure", "always", "never"])? {
                "always" => Keep::Always,
                "never" => Keep::Never,
                _ => Keep::OnFailure,
            },
        };
        let commit = job.commit.or(defaults.commit).unwrap_or(true);
        if !commit && keep == Keep::Never {
            self.warnings.push(format!(
                "job `{}`: `commit = false` with `keep = \"never\"` discards whatever the job leaves uncommitted when its worktree is removed",
                name.value
            ));
        }
        let require_clean = job
            .require_clean
            .or(defaults.require_clean)
            .unwrap_or(false);
        Some(Isolation {
            branch: job
                .branch
                .as_ref()
                .or(defaults.branch.as_ref())
                .map(|b| b.value.clone()),
            base: job
                .base
                .as_ref()
                .or(defaults.base.as_ref())
                .map(|b| b.value.clone()),
            setup: job
                .setup
                .as_ref()
                .or(defaults.setup.as_ref())
                .into_iter()
                .flatten()
                .map(|c| c.value.clone())
                .collect(),
            commit,
            keep,
            require_clean,
        })
    }

    /// `needs`: names or `{ job, when }` tables, each job once (the first entry wins).
    fn needs(&mut self, name: &str, job: &RawJob) -> Vec<Need> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, need) in job.needs.iter().flatten().enumerate() {
            let at = format!("jobs.{}.needs[{i}]", quote_key(name));
            let when = match &need.value {
                RawNeed::Name(_) => When::Success,
                RawNeed::Table(t) => {
                    if t.job.is_none() {
                        self.errors.push(ManifestError::WrongType {
                            path: at.clone(),
                            expected: "a table with `job`",
                            found: "a table without `job`",
                            span: span(&need.span),
                            help: "name the job waited for: { job = \"tests\", when = \"always\" }"
                                .into(),
                        });
                        continue;
                    }
                    match &t.when {
                        None => When::Success,
                        Some(w) => match self.one_of(
                            &format!("{at}.when"),
                            w,
                            &["success", "failure", "always"],
                        ) {
                            Some("failure") => When::Failure,
                            Some("always") => When::Always,
                            _ => When::Success,
                        },
                    }
                }
            };
            let job_name = need.value.job();
            if seen.insert(job_name.to_string()) {
                out.push(Need {
                    job: job_name.to_string(),
                    when,
                });
            }
        }
        out
    }

    /// `matrix` (expanded into its combinations here) or `for_each`.
    fn fan_out(&mut self, name: &str, job: &RawJob) -> Option<FanOut> {
        let at = |key: &str| format!("jobs.{}.{key}", quote_key(name));
        let max_items = self
            .count(&at("max_items"), job.max_items.as_ref())
            .map_or(DEFAULT_MAX_ITEMS, |n| n.min(usize::MAX as u64) as usize);
        match (&job.matrix, &job.for_each) {
            (Some(m), Some(f)) => {
                self.errors.push(ManifestError::ConflictingCommand {
                    job: name.to_string(),
                    first: "matrix".into(),
                    second: "for_each".into(),
                    first_span: span(&m.span),
                    second_span: span(&f.span),
                });
                None
            }
            (Some(m), None) => {
                let combinations = self.matrix(&at("matrix"), m, max_items)?;
                Some(FanOut::Matrix { combinations })
            }
            (None, Some(f)) => Some(FanOut::ForEach {
                source: f.value.clone(),
                max_items,
            }),
            (None, None) => {
                if let Some(n) = &job.max_items {
                    self.warnings.push(format!(
                        "job `{name}`: `max_items` applies to `matrix` and `for_each` jobs only and is ignored"
                    ));
                    let _ = n;
                }
                None
            }
        }
    }

    /// A matrix's combinations: the cartesian product of its keys in the order written, minus
    /// every combination an `exclude` entry matches, then each `include` entry: it extends the
    /// combinations it matches on their keys with its other keys, or is added as one of its own.
    fn matrix(
        &mut self,
        at: &str,
        m: &Sp<super::raw::RawMatrix>,
        max_items: usize,
    ) -> Option<Vec<Combination>> {
        type Combo = Vec<(String, serde_json::Value)>;
        let fan = |path: String, message: String, at: &Span, label: &str, help: String| {
            ManifestError::FanOut {
                path,
                message,
                span: span(at),
                label: label.into(),
                help,
            }
        };
        let mut ok = true;
        for (key, values) in &m.value.axes {
            if values.value.is_empty() {
                self.errors.push(fan(
                    format!("{at}.{}", quote_key(&key.value)),
                    "a matrix key needs at least one value".into(),
                    &values.span,
                    "no values",
                    "list the values, e.g. target = [\"frontend\", \"backend\"], or remove the key"
                        .into(),
                ));
                ok = false;
            }
        }
        if m.value.axes.is_empty() && m.value.include.is_empty() {
            self.errors.push(fan(
                at.into(),
                "the matrix has no keys".into(),
                &m.span,
                "empty matrix",
                "give it keys with lists of values, e.g. matrix = { target = [\"a\", \"b\"] }"
                    .into(),
            ));
            return None;
        }
        if !ok {
            return None;
        }
        // The product, refusing to build more than max_items combinations.
        let mut total: usize = 1;
        for (_, values) in &m.value.axes {
            total = total.saturating_mul(values.value.len());
        }
        let added = m.value.include.len();
        if total.saturating_add(added) > max_items && total > max_items {
            self.errors.push(fan(
                at.into(),
                format!("the matrix makes {total} combinations, more than max_items ({max_items})"),
                &m.span,
                "too many combinations",
                "raise `max_items` on this job, or use fewer values".into(),
            ));
            return None;
        }
        let mut combos: Vec<Combo> = vec![Vec::new()];
        for (key, values) in &m.value.axes {
            let mut next = Vec::with_capacity(combos.len() * values.value.len());
            for c in &combos {
                for v in &values.value {
                    let mut c = c.clone();
                    c.push((key.value.clone(), v.value.0.clone()));
                    next.push(c);
                }
            }
            combos = next;
        }
        if m.value.axes.is_empty() {
            combos.clear();
        }
        let axis_keys: Vec<&str> = m.value.axes.iter().map(|(k, _)| k.value.as_str()).collect();
        let matches = |c: &Combo, entry: &super::read::Map<super::read::Json>, only_axes: bool| {
            entry.0.iter().all(|(k, v)| {
                if only_axes && !axis_keys.contains(&k.value.as_str()) {
                    return true;
                }
                c.iter().any(|(ck, cv)| *ck == k.value && *cv == v.0)
            })
        };
        for (i, ex) in m.value.exclude.iter().enumerate() {
            for (k, _) in &ex.value.0 {
                if !axis_keys.contains(&k.value.as_str()) {
                    self.errors.push(fan(
                        format!("{at}.exclude[{i}].{}", quote_key(&k.value)),
                        format!("`{}` is not a key of this matrix", k.value),
                        &k.span,
                        "unknown key",
                        match did_you_mean(&k.value, axis_keys.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("the matrix keys are: {}", axis_keys.join(", ")),
                        },
                    ));
                    ok = false;
                }
            }
            let before = combos.len();
            combos.retain(|c| !matches(c, &ex.value, false));
            if combos.len() == before && ok {
                self.warnings.push(format!(
                    "`{at}.exclude[{i}]` matches no combination of the matrix"
                ));
            }
        }
        for inc in &m.value.include {
            let entry = &inc.value;
            let overlaps = entry
                .0
                .iter()
                .any(|(k, _)| axis_keys.contains(&k.value.as_str()));
            let mut extended = false;
            if overlaps {
                for c in combos.iter_mut() {
                    if matches(c, entry, true) {
                        for (k, v) in &entry.0 {
                            if !c.iter().any(|(ck, _)| *ck == k.value) {
                                c.push((k.value.clone(), v.0.clone()));
                            }
                        }
                        extended = true;
                    }
                }
            }
            if !extended {
                combos.push(
                    entry
                        .0
                        .iter()
                        .map(|(k, v)| (k.value.clone(), v.0.clone()))
                        .collect(),
                );
            }
        }
        if combos.len() > max_items {
            self.errors.push(fan(
                at.into(),
                format!(
                    "the matrix makes {} combinations, more than max_items ({max_items})",
                    combos.len()
                ),
                &m.span,
                "too many combinations",
                "raise `max_items` on this job, or use fewer values".into(),
            ));
            return None;
        }
        if !ok {
            return None;
        }
        // Each combination's key: its values of the matrix's own keys.
        let mut named: Vec<Combination> = Vec::with_capacity(combos.len());
        let mut seen = std::collections::HashSet::new();
        for values in combos {
            let axes: Vec<&serde_json::Value> = values
                .iter()
                .filter(|(k, _)| axis_keys.contains(&k.as_str()))
                .map(|(_, v)| v)
                .collect();
            let key = if axes.is_empty() {
                crate::plan::combination_key(values.iter().map(|(_, v)| v))
            } else {
                crate::plan::combination_key(axes.into_iter())
            };
            if !seen.insert(key.clone()) {
                self.errors.push(fan(
                    at.into(),
                    format!("two combinations of the matrix would both be the instance `[{key}]`"),
                    &m.span,
                    "repeated combination",
                    "make each `include` entry differ from the others and from the product of the keys".into(),
                ));
                return None;
            }
            named.push(Combination { key, values });
        }
        Some(named)
    }

    /// `outputs` and `output_limit` of a process job.
    fn process_outputs(&mut self, name: &str, job: &RawJob, task: &Task) -> ProcessOutputs {
        let at = |key: &str| format!("jobs.{}.{key}", quote_key(name));
        let agent = matches!(task, Task::Agent(_));
        if agent && (job.outputs.is_some() || job.output_limit.is_some()) {
            self.warnings.push(format!(
                "job `{name}`: `outputs` and `output_limit` apply to `run`/`shell` jobs only; an agent's outputs are its result (and `structured`, with `output_schema`)"
            ));
        }
        let json = match &job.outputs {
            Some(o) => self.one_of(&at("outputs"), o, &["text", "json"]) == Some("json"),
            None => false,
        };
        let limit = match &job.output_limit {
            None => DEFAULT_OUTPUT_LIMIT,
            Some(l) => match parse_size(&l.value.0) {
                Ok(n) => n,
                Err(reason) => {
                    self.errors.push(ManifestError::BadValue {
                        path: at("output_limit"),
                        allowed: "a size".into(),
                        span: span(&l.span),
                        help: format!(
                            "{reason}: write a number of bytes or a size like \"64KiB\", \"1MiB\" or \"10MB\""
                        ),
                    });
                    DEFAULT_OUTPUT_LIMIT
                }
            },
        };
        ProcessOutputs { json, limit }
    }

    /// An agent's `output_schema`: an inline table, or a JSON file relative to the manifest.
    fn output_schema(&mut self, name: &str, job: &RawJob, dir: &Path) -> Option<serde_json::Value> {
        let raw = job.output_schema.as_ref()?;
        let path = format!("jobs.{}.output_schema", quote_key(name));
        let bad = |message: String, label: &str, help: &str| ManifestError::OutputSchema {
            path: path.clone(),
            message,
            span: span(&raw.span),
            label: label.into(),
            help: help.into(),
        };
        let schema = match &raw.value.0 {
            serde_json::Value::String(file) => {
                let full = dir.join(file);
                let text = match std::fs::read_to_string(&full) {
                    Ok(t) => t,
                    Err(e) => {
                        self.errors.push(bad(
                            format!("cannot read {}: {e}", full.display()),
                            "this file",
                            "give the path of a JSON Schema file, relative to the manifest, or write the schema inline as a table",
                        ));
                        return None;
                    }
                };
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) => v,
                    Err(e) => {
                        self.errors.push(bad(
                            format!("{} is not JSON: {e}", full.display()),
                            "this file",
                            "a schema file holds one JSON object, e.g. {\"type\": \"object\"}",
                        ));
                        return None;
                    }
                }
            }
            v @ serde_json::Value::Object(_) => v.clone(),
            _ => {
                self.errors.push(bad(
                    "an output schema is a table (the schema inline) or a string (a file's path)".into(),
                    "neither a table nor a path",
                    "write output_schema = { type = \"object\", properties = { ... } } or output_schema = \"schemas/plan.json\"",
                ));
                return None;
            }
        };
        if let Err(why) = crate::agent::structured::check_schema(&schema) {
            self.errors.push(bad(
                format!("not a valid JSON Schema: {why}"),
                "this schema",
                "see https://json-schema.org; orch checks the answer against it",
            ));
            return None;
        }
        Some(schema)
    }

    /// `session = "continue" | "fork"`; "fork" needs a `session_id` to fork.
    fn fork_session(&mut self, path: &str, job: &RawJob) -> bool {
        let Some(v) = &job.session else {
            return false;
        };
        let fork = self.one_of(path, v, &["continue", "fork"]) == Some("fork");
        if fork && job.session_id.is_none() {
            self.errors.push(ManifestError::BadValue {
                path: path.into(),
                allowed: "\"continue\" (or \"fork\" with a session_id)".into(),
                span: span(&v.span),
                help:
                    "`session = \"fork\"` forks the job's named session: add session_id = \"NAME\""
                        .into(),
            });
        }
        fork
    }

    fn agent_keys_ignored(&mut self, name: &str, job: &RawJob) {
        let agent_keys = [
            ("pre_commands", job.pre_commands.is_some()),
            ("allowed_tools", job.allowed_tools.is_some()),
            ("permission_mode", job.permission_mode.is_some()),
            ("model", job.model.is_some()),
            ("session_id", job.session_id.is_some()),
            ("session", job.session.is_some()),
            ("clear_history", job.clear_history.is_some()),
            ("compact_history", job.compact_history.is_some()),
            ("max_turns", job.max_turns.is_some()),
            ("output_format", job.output_format.is_some()),
            ("max_tokens", job.max_tokens.is_some()),
            ("max_usd", job.max_usd.is_some()),
            ("append_system_prompt", job.append_system_prompt.is_some()),
            ("system_prompt", job.system_prompt.is_some()),
            ("disallowed_tools", job.disallowed_tools.is_some()),
            ("mcp_config", job.mcp_config.is_some()),
            ("strict_mcp_config", job.strict_mcp_config.is_some()),
            ("add_dirs", job.add_dirs.is_some()),
            ("fallback_model", job.fallback_model.is_some()),
            ("settings", job.settings.is_some()),
            ("agents", job.agents.is_some()),
            (
                "permission_prompt_tool",
                job.permission_prompt_tool.is_some(),
            ),
            ("extra_args", job.extra_args.is_some()),
        ];
        for (key, set) in agent_keys {
            if set {
                self.warnings.push(format!(
                    "job `{name}`: `{key}` applies to agent jobs only and is ignored for `run`/`shell`"
                ));
            }
        }
    }

    /// Checks `needs` against the job names, then looks for cycles and names each one in full.
    fn check_graph(&mut self, raw_jobs: &[(Sp<String>, RawJob)]) {
        let names: Vec<&str> = raw_jobs.iter().map(|(n, _)| n.value.as_str()).collect();
        let mut graph: DiGraph<usize, Span> = DiGraph::with_capacity(raw_jobs.len(), 0);
        let nodes: Vec<NodeIndex> = (0..raw_jobs.len()).map(|i| graph.add_node(i)).collect();
        let index: std::collections::HashMap<&str, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        const SUGGESTED: usize = 20;
        let mut unknown = 0;
        let mut seen = std::collections::HashSet::new();
        for (i, (name, job)) in raw_jobs.iter().enumerate() {
            seen.clear();
            for need in job.needs.iter().flatten() {
                let need_name = need.value.job();
                if need_name.is_empty() {
                    continue; // a table without `job`, reported by `needs`
                }
                match index.get(need_name) {
                    // A repeat adds no edge (`update_edge` would find that out by a scan of
                    // the job's edges, quadratic for a job with many needs).
                    Some(&j) => {
                        if seen.insert(j) {
                            graph.add_edge(nodes[i], nodes[j], need.span.clone());
                        }
                    }
                    None => {
                        unknown += 1;
                        // A suggestion compares with every name: past the first few, the cost
                        // (jobs × unknown needs) outweighs the help.
                        let suggestion = if unknown <= SUGGESTED {
                            did_you_mean(need_name, names.iter().copied())
                        } else {
                            None
                        };
                        let help = match suggestion {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("the jobs are: {}", some_names(&names)),
                        };
                        self.errors.push(ManifestError::UnknownNeed {
                            job: name.value.clone(),
                            need: need_name.to_string(),
                            span: span(&need.span),
                            help,
                        });
                    }
                }
            }
        }
        // Kosaraju's, not Tarjan's: petgraph's Tarjan recurses once per node of a path, and a
        // loop of 50,000 jobs overflowed the stack.
        let sccs = petgraph::algo::kosaraju_scc(&graph);
        // Each node's component, so that staying inside one is a lookup, not a scan of it.
        let mut component = vec![0; graph.node_count()];
        for (c, scc) in sccs.iter().enumerate() {
            for n in scc {
                component[n.index()] = c;
            }
        }
        for (c, scc) in sccs.iter().enumerate() {
            let is_cycle = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !is_cycle {
                continue;
            }
            let cycle = cycle_through(&graph, scc, |n| component[n.index()] == c);
            let mut labels = Vec::new();
            let mut path: Vec<&str> = Vec::new();
            let edges = cycle.len() - 1;
            for (i, pair) in cycle.windows(2).enumerate() {
                let (from, to) = (names[graph[pair[0]]], names[graph[pair[1]]]);
                path.push(from);
                // A long loop shows its first edges and its last: labels past a screenful help
                // nobody, and rendering each one costs a pass over the source.
                if edges > CYCLE_SHOWN && (CYCLE_SHOWN / 2..edges - CYCLE_SHOWN / 2).contains(&i) {
                    continue;
                }
                let edge = graph
                    .find_edge(pair[0], pair[1])
                    .expect("cycle edges exist");
                labels.push(miette::LabeledSpan::new_with_span(
                    Some(format!("`{from}` needs `{to}`")),
                    span(&graph[edge]),
                ));
            }
            path.push(names[graph[cycle[0]]]);
            labels.sort_by_key(|l| l.offset());
            self.errors.push(ManifestError::Cycle {
                cycle: cycle_text(&path),
                spans: labels,
            });
        }
    }
}

/// The job names for a help line: all of them, or the first 20 and how many more there are
/// (a manifest of 50,000 jobs would otherwise repeat them all under every unknown `needs`).
fn some_names(names: &[&str]) -> String {
    const SHOWN: usize = 20;
    let shown = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        format!("{shown}, … and {} more", names.len() - SHOWN)
    } else {
        shown
    }
}

/// The most edges of a cycle labelled, and of jobs named in its message.
const CYCLE_SHOWN: usize = 20;

/// "`a` → `b` → `a`"; a loop of more than [`CYCLE_SHOWN`] jobs names its first and last ones and
/// says how many are left out.
fn cycle_text(path: &[&str]) -> String {
    let quoted = |p: &[&str]| {
        p.iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    if path.len() <= CYCLE_SHOWN + 1 {
        return quoted(path);
    }
    // The tail ends with the first job again, closing the loop.
    let (head, tail) = (
        &path[..CYCLE_SHOWN / 2],
        &path[path.len() - CYCLE_SHOWN / 2 - 1..],
    );
    format!(
        "{} → … {} more … → {} ({} jobs)",
        quoted(head),
        path.len() - 1 - CYCLE_SHOWN,
        quoted(tail),
        path.len() - 1
    )
}

/// A simple cycle through the first node of a strongly connected component, closed (first ==
/// last), in time linear in the component's edges; `inside` says whether a node belongs to it.
fn cycle_through(
    graph: &DiGraph<usize, Span>,
    scc: &[NodeIndex],
    inside: impl Fn(NodeIndex) -> bool,
) -> Vec<NodeIndex> {
    let start = *scc.iter().min().expect("an SCC is never empty");
    // Breadth-first search inside the component back to `start` gives the shortest loop.
    let mut previous: std::collections::HashMap<NodeIndex, NodeIndex> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|&m| inside(m)).collect();
        next.sort();
        for m in next {
            if m == start {
                let mut path = vec![start, n];
                let mut cur = n;
                while cur != start {
                    cur = previous[&cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = previous.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}

/// A size in bytes: a whole number, or text with a unit (B, KB, KiB, MB, MiB, GB, GiB).
pub fn parse_size(v: &serde_json::Value) -> Result<usize, String> {
    let (number, unit) = match v {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(n) if n > 0 => return Ok(n.min(usize::MAX as u64) as usize),
            _ => return Err(format!("{n} is not a positive whole number")),
        },
        serde_json::Value::String(s) => {
            let s = s.trim();
            let at = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            (s[..at].to_string(), s[at..].trim().to_ascii_lowercase())
        }
        other => return Err(format!("{other} is not a size")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{v} does not start with a number"))?;
    let scale: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "kib" | "k" => 1024.0,
        "mb" => 1e6,
        "mib" | "m" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("`{other}` is not a unit of size")),
    };
    let bytes = (n * scale).round();
    if bytes < 1.0 {
        return Err(format!("{v} is less than one byte"));
    }
    Ok(bytes.min(usize::MAX as f64) as usize)
}

/// Removes `.` and resolvable `..` components without touching the file system.
pub fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}
