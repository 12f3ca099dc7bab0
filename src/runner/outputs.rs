//! A job's outputs, and the values `${{ }}` templates and `if` conditions read when a step of a
//! run becomes ready.
//!
//! An agent job's outputs are `result` (its last step's final text), `session_id`, `cost_usd`,
//! `tokens` and, with an `output_schema`, `structured`; a process job's are `stdout` (the end of
//! it, `output_limit` bytes at most), `exit_code` and, with `outputs = "json"`, `json`. A fan-out's
//! outputs are its instances', key by key, as lists in instance order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::StepRecord;
use crate::events::Status;
use crate::manifest::Manifest;
use crate::plan::{Fan, Plan};
use crate::template::{self, Reference};

/// The end of a process job's stdout, as the executor read it from the step's log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Captured {
    /// The kept bytes, as text (invalid UTF-8 replaced).
    pub text: String,
    /// Bytes cut from the front to keep the limit.
    pub cut: u64,
}

/// An agent instance's outputs from its steps' records.
pub fn of_agent(
    records: &[&StepRecord],
    session_id: Option<String>,
    structured: Option<Value>,
) -> Value {
    let last = records.last();
    let result = last
        .and_then(|r| r.result.as_ref())
        .and_then(|r| r.text.clone());
    let (mut cost, mut tokens) = (0.0, 0u64);
    for r in records {
        if let Some(u) = &r.usage {
            cost += u.cost_usd;
            tokens = tokens.saturating_add(u.tokens.total());
        }
    }
    let mut out = Map::new();
    out.insert("result".into(), result.map_or(Value::Null, Value::String));
    out.insert(
        "session_id".into(),
        session_id.map_or(Value::Null, Value::String),
    );
    out.insert("cost_usd".into(), json!((cost * 1e6).round() / 1e6));
    out.insert("tokens".into(), json!(tokens));
    if let Some(s) = structured {
        out.insert("structured".into(), s);
    }
    Value::Object(out)
}

/// A process instance's outputs; `json` is the parsed stdout when the job asks for it.
pub fn of_process(stdout: &Captured, exit_code: Option<i32>, json: Option<Value>) -> Value {
    let mut out = Map::new();
    out.insert("stdout".into(), Value::String(stdout.text.clone()));
    out.insert(
        "exit_code".into(),
        exit_code.map_or(Value::Null, Value::from),
    );
    if let Some(j) = json {
        out.insert("json".into(), j);
    }
    Value::Object(out)
}

/// Parses stdout for `outputs = "json"`; the error says where it is not JSON.
pub fn parse_json(stdout: &Captured) -> Result<Value, String> {
    if stdout.cut > 0 {
        return Err(format!(
            "its stdout is not JSON that orch can read whole: {} bytes were cut to keep `output_limit`; raise it",
            stdout.cut
        ));
    }
    serde_json::from_str(&stdout.text).map_err(|e| {
        format!(
            "its stdout is not JSON (outputs = \"json\"): {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// A fan-out's outputs: each output key of its job with the list of its instances' values (null
/// for an instance without that output), in instance order.
pub fn of_group(
    plan: &Plan,
    manifest: &Manifest,
    outputs: &[Option<Value>],
    group: usize,
) -> Value {
    let inst = &plan.instances[group];
    let Fan::Group { members, .. } = &inst.fan else {
        return outputs[group].clone().unwrap_or(Value::Null);
    };
    let mut out = Map::new();
    for key in manifest.jobs[inst.job].output_keys() {
        let list = members
            .iter()
            .map(|&m| {
                outputs[m]
                    .as_ref()
                    .and_then(|o| o.get(*key))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        out.insert((*key).to_string(), Value::Array(list));
    }
    Value::Object(out)
}

/// What a template or condition of one instance's step can read.
pub struct Scope<'a> {
    pub plan: &'a Plan,
    pub manifest: &'a Manifest,
    pub outputs: &'a [Option<Value>],
    pub states: &'a [Status],
    /// The instance the step belongs to.
    pub instance: usize,
    pub job_index: &'a HashMap<String, usize>,
    /// orch's own environment, under the job's `env`.
    pub env: &'a HashMap<String, String>,
    pub run_id: &'a str,
    pub started_at: DateTime<Utc>,
    /// `env.NAME` reads orch's environment only, not the job's `env` (while rendering one of
    /// the job's own values).
    pub outer_env_only: bool,
}

impl template::Values for Scope<'_> {
    fn get(&self, r: &Reference) -> Result<Value, String> {
        match r {
            Reference::Output { job, key, path } => {
                let of = self.instance_of(job)?;
                let value = if matches!(self.plan.instances[of].fan, Fan::Group { .. }) {
                    of_group(self.plan, self.manifest, self.outputs, of)
                } else {
                    match &self.outputs[of] {
                        Some(v) => v.clone(),
                        // A job that never ran to its end (skipped, blocked, cancelled) has no
                        // outputs: each reads as null, so that `when = "always"` jobs can still
                        // report on it.
                        None => return Ok(Value::Null),
                    }
                };
                // An output the job declares but did not produce (the `json` of a job that failed,
                // the `structured` answer of one that gave none) reads as null too.
                let declared = self
                    .job_index
                    .get(job.as_str())
                    .is_some_and(|&j| self.manifest.jobs[j].output_keys().contains(&key.as_str()));
                let value = match value.get(key.as_str()) {
                    Some(v) => v.clone(),
                    None if declared => return Ok(Value::Null),
                    None => return Err(format!("`{job}` has no output `{key}`")),
                };
                template::walk(&value, path)
                    .cloned()
                    .map_err(|e| format!("jobs.{job}.outputs.{key}: {e}"))
            }
            Reference::Status { job } => {
                let of = self.instance_of(job)?;
                Ok(Value::String(
                    self.plan.instance_status(self.states, of).as_str().into(),
                ))
            }
            Reference::Matrix { key } => match &self.plan.instances[self.instance].fan {
                Fan::Member { value, .. } => value
                    .get(key.as_str())
                    .cloned()
                    .ok_or_else(|| format!("this instance has no matrix value `{key}`")),
                _ => Err(format!("`matrix.{key}` has no value outside a matrix")),
            },
            Reference::Item { path } => match &self.plan.instances[self.instance].fan {
                Fan::Member { value, .. } => template::walk(value, path)
                    .cloned()
                    .map_err(|e| format!("item: {e}")),
                _ => Err("`item` has no value outside a for_each job".into()),
            },
            Reference::Env { name } => {
                let job = &self.manifest.jobs[self.plan.instances[self.instance].job];
                let own = job.env.iter().rev().find(|(k, _)| k == name);
                match own {
                    // The job's own value, rendered as the step's environment is; its templates
                    // read orch's environment only (so `A = "${{ env.A }}"` cannot loop).
                    Some((_, v)) if !self.outer_env_only => {
                        let inner = Scope {
                            outer_env_only: true,
                            ..*self
                        };
                        inner.render(v, template::Mode::Plain).map(Value::String)
                    }
                    _ => self
                        .env
                        .get(name)
                        .cloned()
                        .map(Value::String)
                        .ok_or_else(|| format!("the environment has no variable `{name}`")),
                }
            }
            Reference::RunId => Ok(Value::String(self.run_id.to_string())),
            Reference::RunStartedAt => Ok(Value::String(self.started_at.to_rfc3339())),
        }
    }
}

impl Scope<'_> {
    fn instance_of(&self, job: &str) -> Result<usize, String> {
        self.job_index
            .get(job)
            .map(|&j| self.plan.of_job[j])
            .ok_or_else(|| format!("there is no job `{job}`"))
    }

    /// Renders one template; the error names the text.
    pub fn render(&self, text: &str, mode: template::Mode) -> Result<String, String> {
        if !text.contains("${{") && !text.contains("$${{") {
            return Ok(text.to_string());
        }
        let t = template::parse(text).map_err(|errors| {
            errors
                .first()
                .map_or_else(|| "a bad template".into(), |e| e.message.clone())
        })?;
        template::render(&t, self, mode)
    }
}

/// The `structured_output` of Claude Code's result line.
pub fn structured_of(r: &crate::agent::accounting::ResultSummary) -> Option<Value> {
    r.structured.clone()
}
