//! The pipeline check: every `${{ }}` template and `if` condition of a manifest, against the jobs.
//!
//! A reference must name a job upstream of the one that holds it (through `needs`, transitively)
//! and an output that job has; a path into a `structured` output must be one its schema allows;
//! `matrix.KEY` and `item` only exist in jobs that fan out. Every mistake is reported at once, at
//! its span inside the string that holds it.

use std::collections::HashMap;

use super::diagnostic::{ManifestError, did_you_mean, span};
use super::model::{FanOut, Job, Task};
use super::node::Span;
use super::raw::RawJob;
use super::read::{Sp, quote_key};
use crate::condition::{self, Type};
use crate::template::{self, PathSeg, Reference};

/// Where a template sits, and how it renders.
struct Field<'a> {
    /// "jobs.x.prompt"
    path: String,
    text: &'a str,
    /// The span of the string in the manifest, or of its key when the value has none.
    at: Span,
    /// Whether `at` is the string itself (so offsets inside it can be mapped).
    exact: bool,
    shell: bool,
}

/// Checks every template and condition of `jobs` (resolved, in the order of `raw`). `text` is the
/// manifest's source, to place errors inside strings.
pub fn check(
    jobs: &[Job],
    raw: &[(Sp<String>, RawJob)],
    text: &str,
    warnings: &mut Vec<String>,
) -> Vec<ManifestError> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.as_str(), i))
        .collect();
    let mut errors = Vec::new();
    let raw_names: std::collections::HashSet<&str> =
        raw.iter().map(|(n, _)| n.value.as_str()).collect();
    let raw_of: HashMap<&str, &RawJob> = raw.iter().map(|(n, j)| (n.value.as_str(), j)).collect();
    // Each name's first span, looked up once per job: a scan of `raw` per job was quadratic.
    let mut name_spans: HashMap<&str, &std::ops::Range<usize>> = HashMap::with_capacity(raw.len());
    for (n, _) in raw {
        name_spans.entry(n.value.as_str()).or_insert(&n.span);
    }
    for (j, job) in jobs.iter().enumerate() {
        let Some(raw_job) = raw_of.get(job.name.as_str()) else {
            continue;
        };
        let name_span = name_spans
            .get(job.name.as_str())
            .map_or(0..0, |span| (*span).clone());
        let has_refs = raw_job.condition.is_some()
            || raw_job.for_each.is_some()
            || !fields(job, raw_job, &name_span).is_empty();
        if !has_refs {
            continue;
        }
        let upstream = ancestors(jobs, &index, j);
        let checker = Checker {
            jobs,
            index: &index,
            raw_names: &raw_names,
            upstream: &upstream,
            job,
            text,
        };
        for field in fields(job, raw_job, &name_span) {
            match template::parse(field.text) {
                Err(found) => {
                    for e in found {
                        errors.push(checker.template_error(&field, &e));
                    }
                }
                Ok(t) => {
                    for (r, at) in t.references() {
                        match checker.reference_at(r, &at) {
                            Err(Some(e)) => errors.push(checker.template_error(&field, &e)),
                            Err(None) => {}
                            Ok(())
                                if field.shell
                                    && template::quoted_context(field.text, at.start) =>
                            {
                                warnings.push(format!(
                                    "`{}`: `${{{{ {r} }}}}` is inside quotes; orch quotes each value for the shell itself, so write it unquoted",
                                    field.path
                                ));
                            }
                            Ok(()) => {}
                        }
                    }
                }
            }
        }
        if let (Some(FanOut::ForEach { source, .. }), Some(raw_src)) =
            (&job.fan_out, &raw_job.for_each)
        {
            let field = Field {
                path: format!("jobs.{}.for_each", quote_key(&job.name)),
                text: source,
                at: raw_src.span.clone(),
                exact: true,
                shell: false,
            };
            if let Ok(t) = template::parse(source) {
                match t.single() {
                    Some(r @ Reference::Output { .. }) => {
                        let at = t
                            .references()
                            .next()
                            .map_or(0..source.len(), |(_, at)| at);
                        if let Err(Some(e)) = checker.reference_at(r, &at) {
                            errors.push(checker.template_error(&field, &e));
                        }
                    }
                    _ => errors.push(checker.template_error(
                        &field,
                        &template::Error {
                            message: "for_each takes one reference to an upstream output, and nothing around it".into(),
                            span: 0..source.len(),
                            help: "write for_each = \"${{ jobs.plan.outputs.structured.tasks }}\"".into(),
                        },
                    )),
                }
            }
        }
        if let (Some(cond), Some(raw_cond)) = (&job.condition, &raw_job.condition) {
            let field = Field {
                path: format!("jobs.{}.if", quote_key(&job.name)),
                text: cond,
                at: raw_cond.span.clone(),
                exact: true,
                shell: false,
            };
            match condition::parse(cond) {
                Err(found) => {
                    for e in found {
                        errors.push(checker.condition_error(&field, &e));
                    }
                }
                Ok(c) => {
                    let mut bad = false;
                    for (r, at) in c.references() {
                        if let Err(e) = checker.reference_at(r, &at) {
                            bad = true;
                            if let Some(e) = e {
                                errors.push(checker.condition_error(&field, &e));
                            }
                        }
                    }
                    if !bad {
                        for e in condition::check(&c, &|r| checker.type_of(r)) {
                            errors.push(checker.condition_error(&field, &e));
                        }
                    }
                }
            }
        }
    }
    errors
}

/// A job's transitive `needs`, as a set of job indexes: a walk up the graph, made only for jobs
/// that hold references (a manifest of 50,000 jobs without templates pays nothing). The graph was
/// checked for cycles first; `seen` guards the walk regardless.
fn ancestors(jobs: &[Job], index: &HashMap<&str, usize>, of: usize) -> Vec<bool> {
    let mut seen = vec![false; jobs.len()];
    let mut stack = vec![of];
    while let Some(j) = stack.pop() {
        for need in jobs[j].need_names() {
            if let Some(&k) = index.get(need) {
                if !seen[k] {
                    seen[k] = true;
                    stack.push(k);
                }
            }
        }
    }
    seen
}

/// The templated strings of a job.
fn fields<'a>(job: &'a Job, raw: &'a RawJob, name_span: &Span) -> Vec<Field<'a>> {
    let at = |key: &str| format!("jobs.{}.{key}", quote_key(&job.name));
    let mut out = Vec::new();
    let mut push = |path: String, text: &'a str, sp: Option<&Span>, shell: bool| {
        if text.contains("${{") {
            out.push(Field {
                path,
                text,
                at: sp.cloned().unwrap_or_else(|| name_span.clone()),
                exact: sp.is_some(),
                shell,
            });
        }
    };
    if let Some(c) = raw.command.as_ref().or(raw.prompt.as_ref()) {
        let key = if raw.command.is_some() {
            "command"
        } else {
            "prompt"
        };
        push(at(key), &c.value, Some(&c.span), false);
    }
    for (i, c) in raw.pre_commands.iter().flatten().enumerate() {
        push(
            format!("{}[{i}]", at("pre_commands")),
            &c.value,
            Some(&c.span),
            false,
        );
    }
    if let Some(run) = &raw.run {
        for (i, a) in run.value.iter().enumerate() {
            push(
                format!("{}[{i}]", at("run")),
                &a.value,
                Some(&a.span),
                false,
            );
        }
    }
    if let Some(s) = &raw.shell {
        push(at("shell"), &s.value, Some(&s.span), true);
    }
    for (k, v) in raw.env.iter().flat_map(|m| &m.0) {
        push(
            format!("{}.{}", at("env"), quote_key(&k.value)),
            v,
            Some(&k.span),
            false,
        );
    }
    let _ = &job.env;
    if let Some(w) = &raw.workspace {
        push(at("workspace"), w, None, false);
    }
    // A worktree's branch and base, the job's own (with their spans) or `[defaults]`'.
    if let Some(iso) = &job.isolation {
        for (key, value, own) in [
            ("branch", &iso.branch, &raw.branch),
            ("base", &iso.base, &raw.base),
        ] {
            if let Some(v) = value {
                push(at(key), v, own.as_ref().map(|o| &o.span), false);
            }
        }
    }
    out
}

struct Checker<'a> {
    jobs: &'a [Job],
    index: &'a HashMap<&'a str, usize>,
    /// Every job name written, those that did not resolve (reported already) among them.
    raw_names: &'a std::collections::HashSet<&'a str>,
    upstream: &'a [bool],
    job: &'a Job,
    text: &'a str,
}

impl Checker<'_> {
    /// Checks one reference; the error is (message, help).
    fn reference(&self, r: &Reference) -> Result<(), (String, String)> {
        match r {
            Reference::Output { job, key, path } => {
                let up = self.upstream_job(job)?;
                let keys = up.output_keys();
                if !keys.contains(&key.as_str()) {
                    let all = match &up.task {
                        Task::Agent(_) => super::model::AGENT_OUTPUTS,
                        _ => super::model::PROCESS_OUTPUTS,
                    };
                    let help = if key == "structured" {
                        format!("give `{job}` an `output_schema` to have a `structured` output")
                    } else if key == "json" && all.contains(&"json") {
                        format!("set outputs = \"json\" on `{job}` to have a `json` output")
                    } else {
                        match did_you_mean(key, keys.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("the outputs of `{job}` are: {}", keys.join(", ")),
                        }
                    };
                    return Err((format!("`{job}` has no output `{key}`"), help));
                }
                let mut path = path.as_slice();
                if up.fan_out.is_some() {
                    match path.first() {
                        None => return Ok(()),
                        Some(PathSeg::Index(_)) => path = &path[1..],
                        Some(PathSeg::Key(k)) => {
                            return Err((
                                format!(
                                    "`{job}` fans out, so its `{key}` is a list, one item per instance"
                                ),
                                format!("index it first, e.g. jobs.{job}.outputs.{key}[0].{k}"),
                            ));
                        }
                    }
                }
                if path.is_empty() {
                    return Ok(());
                }
                match (key.as_str(), &up.task) {
                    ("structured", Task::Agent(a)) => {
                        if let Some(schema) = &a.output_schema {
                            template::schema_allows(schema, path).map_err(|why| {
                                (
                                    format!("the output schema of `{job}` cannot have this: {why}"),
                                    "check the path against the job's output_schema".to_string(),
                                )
                            })?;
                        }
                        Ok(())
                    }
                    ("json", _) => Ok(()),
                    _ => Err((
                        format!(
                            "`{key}` of `{job}` is a {}, it has no fields or items",
                            scalar(key)
                        ),
                        format!("write jobs.{job}.outputs.{key} without a path"),
                    )),
                }
            }
            Reference::Status { job } => self.upstream_job(job).map(|_| ()),
            Reference::Matrix { key } => match &self.job.fan_out {
                Some(FanOut::Matrix { combinations }) => {
                    let known: Vec<&str> = {
                        let mut k: Vec<&str> = Vec::new();
                        for c in combinations {
                            for (name, _) in &c.values {
                                if !k.contains(&name.as_str()) {
                                    k.push(name);
                                }
                            }
                        }
                        k
                    };
                    if known.contains(&key.as_str()) {
                        Ok(())
                    } else {
                        Err((
                            format!("the matrix of `{}` has no key `{key}`", self.job.name),
                            match did_you_mean(key, known.iter().copied()) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!("its keys are: {}", known.join(", ")),
                            },
                        ))
                    }
                }
                _ => Err((
                    format!(
                        "`{}` has no matrix, so `matrix.{key}` has no value",
                        self.job.name
                    ),
                    "give the job a `matrix`, or remove the reference".into(),
                )),
            },
            Reference::Item { path } => match &self.job.fan_out {
                Some(FanOut::ForEach { source, .. }) => self.item_path(source, path),
                _ => Err((
                    format!(
                        "`{}` has no for_each, so `item` has no value",
                        self.job.name
                    ),
                    "`item` is the current element in a job with for_each = \"${{ ... }}\"".into(),
                )),
            },
            Reference::Env { .. } | Reference::RunId | Reference::RunStartedAt => Ok(()),
        }
    }

    /// An `item` path, checked against the schema of the `for_each` source when it comes from a
    /// `structured` output: the item is one element of that array.
    fn item_path(&self, source: &str, path: &[PathSeg]) -> Result<(), (String, String)> {
        let Ok(t) = template::parse(source) else {
            return Ok(());
        };
        let Some(Reference::Output {
            job,
            key,
            path: from,
        }) = t.single()
        else {
            return Ok(());
        };
        let Some(up) = self.index.get(job.as_str()).map(|&k| &self.jobs[k]) else {
            return Ok(());
        };
        let (Task::Agent(a), "structured", None) = (&up.task, key.as_str(), &up.fan_out) else {
            return Ok(());
        };
        let Some(schema) = &a.output_schema else {
            return Ok(());
        };
        let mut full = from.clone();
        full.push(PathSeg::Index(0));
        full.extend(path.iter().cloned());
        template::schema_allows(schema, &full).map_err(|why| {
            (
                format!("the items of for_each ({source}) cannot have this: {why}"),
                format!("check the path against the output_schema of `{job}`"),
            )
        })
    }

    /// Checks a reference found at bytes `at` of its text: its mistake, or `Err(None)` when it
    /// names a job whose own mistakes were reported already (nothing more to say).
    fn reference_at(
        &self,
        r: &Reference,
        at: &std::ops::Range<usize>,
    ) -> Result<(), Option<template::Error>> {
        self.reference(r).map_err(|(message, help)| {
            (!message.is_empty()).then(|| template::Error {
                message,
                span: at.clone(),
                help,
            })
        })
    }

    /// The job a reference names, if it is upstream of this one.
    fn upstream_job(&self, name: &str) -> Result<&Job, (String, String)> {
        let Some(&k) = self.index.get(name) else {
            if self.raw_names.contains(name) {
                // A job with mistakes of its own, already reported: no second error here.
                return Err((String::new(), String::new()));
            }
            let names = self.jobs.iter().map(|j| j.name.as_str());
            let help = match did_you_mean(name, names) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "name a job of this manifest".into(),
            };
            return Err((format!("there is no job `{name}`"), help));
        };
        if k == self.index[self.job.name.as_str()] {
            return Err((
                format!("`{name}` refers to its own outputs, which do not exist until it ends"),
                "refer to a job it needs instead".into(),
            ));
        }
        if !self.upstream[k] {
            return Err((
                format!(
                    "`{name}` is not upstream of `{}`, so its outputs may not exist yet",
                    self.job.name
                ),
                format!("add `{name}` to needs"),
            ));
        }
        Ok(&self.jobs[k])
    }

    /// What a reference yields, for the condition's type check.
    fn type_of(&self, r: &Reference) -> Type {
        match r {
            Reference::Status { job } if self.fanned(job) => Type::Status,
            Reference::Status { .. } => Type::Status,
            Reference::Output { job, path, .. } if self.fanned(job) && path.is_empty() => {
                Type::Array
            }
            Reference::Output { key, path, .. } if path.is_empty() || self.is_index_only(path) => {
                match key.as_str() {
                    "result" | "session_id" | "stdout" => Type::String,
                    "cost_usd" | "tokens" | "exit_code" => Type::Number,
                    _ => Type::Any,
                }
            }
            Reference::Env { .. } | Reference::RunId | Reference::RunStartedAt => Type::String,
            _ => Type::Any,
        }
    }

    fn is_index_only(&self, path: &[PathSeg]) -> bool {
        path.len() == 1 && matches!(path[0], PathSeg::Index(_))
    }

    fn fanned(&self, job: &str) -> bool {
        self.index
            .get(job)
            .is_some_and(|&k| self.jobs[k].fan_out.is_some())
    }

    fn template_error(&self, field: &Field, e: &template::Error) -> ManifestError {
        ManifestError::Template {
            path: field.path.clone(),
            message: e.message.clone(),
            span: span(&self.place(field, &e.span)),
            label: "here".into(),
            help: e.help.clone(),
        }
    }

    fn condition_error(&self, field: &Field, e: &template::Error) -> ManifestError {
        ManifestError::Condition {
            path: field.path.clone(),
            message: e.message.clone(),
            span: span(&self.place(field, &e.span)),
            label: "here".into(),
            help: e.help.clone(),
        }
    }

    /// The span in the manifest of bytes `inner` of a field's string: exact for strings without
    /// escapes before that point, and inside the string's span always.
    fn place(&self, field: &Field, inner: &std::ops::Range<usize>) -> Span {
        if !field.exact {
            return field.at.clone();
        }
        let lit = self.text.get(field.at.clone()).unwrap_or("");
        let mut open = if lit.starts_with("\"\"\"") || lit.starts_with("'''") {
            3
        } else if lit.starts_with('"') || lit.starts_with('\'') {
            1
        } else {
            0
        };
        if open == 3 && lit[3..].starts_with('\n') {
            open += 1;
        } else if open == 3 && lit[3..].starts_with("\r\n") {
            open += 2;
        }
        let start = (field.at.start + open + inner.start).min(field.at.end);
        let end = (field.at.start + open + inner.end).clamp(start, field.at.end);
        start..end
    }
}

fn scalar(key: &str) -> &'static str {
    match key {
        "cost_usd" | "tokens" | "exit_code" => "number",
        _ => "string",
    }
}
