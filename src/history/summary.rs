//! One run's summary: its steps with status, times, spend and logs. A run that ended is read
//! from its `results.json`; one still going (or one whose results file is missing) from its
//! events file, folded as it stands; a run older than the events file from the ledger's rows.
//!
//! The summary is what the run wrote, never recomputed: nothing here decides a status.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{History, HistoryError, RunEntry, events};

/// Where a summary was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The run's `results.json`, written at its end.
    Results,
    /// The run's events file, as far as it goes.
    Events,
    /// The ledger's step rows (a run without either file).
    Ledger,
}

/// A step as a summary shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepView {
    /// Its index in the run's plan, when the source says.
    pub step: Option<usize>,
    /// `job`, `job [2/3]`, `job[key]`.
    pub label: String,
    /// `pending`, `running`, `retrying`, `completed`, `failed`, `skipped`, ...
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub total_tokens: u64,
    pub usd: Option<f64>,
    /// Attempts made (0 for a step that never launched).
    pub attempts: u32,
    /// Why it ended as it did (a failure, a skip), when one was given.
    pub reason: Option<String>,
    pub log: Option<PathBuf>,
    pub stderr_log: Option<PathBuf>,
    /// Its job instance's outputs (on the instance's last step), once the instance ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Value>,
}

/// A run and its steps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub run: RunEntry,
    pub source: Source,
    /// Whether the run is still going (its summary will change).
    pub live: bool,
    /// The plan's number of steps, when known (a fan-out adds steps as it expands).
    pub planned_steps: Option<usize>,
    pub steps: Vec<StepView>,
    /// The results file, once written.
    pub results_file: Option<PathBuf>,
    /// The events file's offset after the last event the steps were folded from (0 when they
    /// were not read from it): where a follower of the run goes on without missing an event.
    #[serde(skip)]
    pub events_offset: u64,
}

impl RunSummary {
    /// The step labelled `label` (labels are unique in a run).
    pub fn step(&self, label: &str) -> Option<&StepView> {
        self.steps.iter().find(|s| s.label == label)
    }
}

impl History {
    /// The summary of a run (see the module's comment for where it comes from).
    pub fn summary(&self, run: &RunEntry) -> Result<RunSummary, HistoryError> {
        let dir = self.run_dir(run)?;
        let results_file = self.confine(&dir.join("results.json"))?;
        let mut summary = RunSummary {
            run: run.clone(),
            source: Source::Ledger,
            live: run.is_running(),
            planned_steps: None,
            steps: Vec::new(),
            results_file: None,
            events_offset: 0,
        };
        let results = (!summary.live)
            .then(|| std::fs::read_to_string(&results_file).ok())
            .flatten()
            .and_then(|text| serde_json::from_str::<ResultsFile>(&text).ok());
        if let Some(results) = results {
            summary.source = Source::Results;
            summary.results_file = Some(results_file);
            summary.planned_steps =
                Some(results.instances.0.iter().map(|(_, i)| i.steps.len()).sum());
            summary.steps = results.steps();
            return Ok(summary);
        }
        let file = self.confine(&events::path(&dir))?;
        if file.exists() {
            let page = events::read(&file, 0, usize::MAX)
                .map_err(|source| HistoryError::Io { path: file, source })?;
            summary.source = Source::Events;
            summary.events_offset = page.next_offset;
            (summary.planned_steps, summary.steps) = fold(&page.events);
            return Ok(summary);
        }
        if let Some(ledger) = self.ledger() {
            let rows = ledger.run_steps(&run.id).map_err(|e| self.sql(e))?;
            let mut steps = Vec::with_capacity(rows.len());
            for s in rows {
                let (tokens, usd) = ledger
                    .step_spend(&run.id, s.step)
                    .map_err(|e| self.sql(e))?;
                steps.push(StepView {
                    step: Some(s.step),
                    label: s.label,
                    status: s.status,
                    started_at: s.started_at.as_deref().and_then(super::runs::time),
                    total_tokens: tokens.total(),
                    usd: Some(usd),
                    attempts: 1,
                    log: s.log,
                    ..StepView::default()
                });
            }
            summary.steps = steps;
        }
        Ok(summary)
    }
}

/// The steps a run's events tell of, in plan order, and its planned number of steps.
pub fn fold(events: &[Value]) -> (Option<usize>, Vec<StepView>) {
    let mut planned = None;
    let mut steps: std::collections::BTreeMap<usize, StepView> = Default::default();
    let str_of = |v: &Value| v.as_str().map(str::to_string);
    for e in events {
        let id = e["step"].as_u64().map(|s| s as usize);
        match e["event"].as_str().unwrap_or_default() {
            "run_started" => planned = e["steps"].as_u64().map(|n| n as usize),
            "step_started" => {
                if let Some(v) = id.map(|id| entry(&mut steps, id, &e["label"])) {
                    v.status = "running".into();
                    v.started_at = e["at"].as_str().and_then(super::runs::time);
                    v.log = e["log"].as_str().map(PathBuf::from);
                    v.attempts += 1;
                }
            }
            "usage_recorded" => {
                if let Some(v) = id.map(|id| entry(&mut steps, id, &e["label"])) {
                    v.total_tokens = tokens(&e["update"]["tokens"]);
                    v.usd = e["update"]["cost_usd"].as_f64();
                }
            }
            "step_retrying" => {
                if let Some(v) = id.map(|id| entry(&mut steps, id, &e["label"])) {
                    v.status = "retrying".into();
                    v.reason = str_of(&e["reason"]);
                }
            }
            "step_finished" => {
                if let Some(v) = id.map(|id| entry(&mut steps, id, &e["label"])) {
                    v.status = str_of(&e["status"]).unwrap_or_default();
                    v.duration_seconds = e["duration"].as_f64();
                    v.reason = str_of(&e["reason"]);
                    // A step that never started (a fan-out's expansion) wrote no log.
                    if v.attempts > 0 {
                        v.log = e["log"].as_str().map(PathBuf::from);
                        v.stderr_log = e["stderr_log"].as_str().map(PathBuf::from);
                    }
                    if e["usage"].is_object() {
                        v.total_tokens = tokens(&e["usage"]["tokens"]);
                        v.usd = e["usage"]["cost_usd"].as_f64();
                    }
                }
            }
            "step_skipped" => {
                if let Some(v) = id.map(|id| entry(&mut steps, id, &e["label"])) {
                    v.status = str_of(&e["status"]).unwrap_or_default();
                    v.reason = str_of(&e["reason"]);
                }
            }
            "job_outputs" => {
                // The instance's last step: `job`, or the last of its chain, `job [n/n]`.
                let job = e["job"].as_str().unwrap_or_default();
                let chain = format!("{job} [");
                if let Some(v) = steps
                    .values_mut()
                    .rev()
                    .find(|v| v.label == job || v.label.starts_with(&chain))
                {
                    v.outputs = Some(e["outputs"].clone());
                }
            }
            "job_expanded" => {
                for step in e["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|i| i["steps"].as_array().into_iter().flatten())
                {
                    if let Some(id) = step["id"].as_u64() {
                        entry(&mut steps, id as usize, &step["label"]);
                    }
                }
            }
            _ => {}
        }
    }
    (planned, steps.into_values().collect())
}

/// The step `id` of a fold, made pending when first seen, with its label as `label` says.
fn entry<'a>(
    steps: &'a mut std::collections::BTreeMap<usize, StepView>,
    id: usize,
    label: &Value,
) -> &'a mut StepView {
    let v = steps.entry(id).or_insert_with(|| StepView {
        step: Some(id),
        status: "pending".into(),
        ..StepView::default()
    });
    if let Some(l) = label.as_str() {
        v.label = l.to_string();
    }
    v
}

/// input + output + cache reads + cache writes of a `TokenCounts` object.
fn tokens(t: &Value) -> u64 {
    ["input", "output", "cache_read", "cache_creation"]
        .iter()
        .map(|k| t[k].as_u64().unwrap_or(0))
        .fold(0u64, u64::saturating_add)
}

/// The parts of `results.json` a summary reads (see `crate::report::results::Results`).
#[derive(Deserialize)]
struct ResultsFile {
    instances: Ordered<InstanceFile>,
}

#[derive(Deserialize)]
struct InstanceFile {
    #[serde(default)]
    steps: Vec<StepFile>,
    #[serde(default)]
    outputs: Option<Value>,
}

#[derive(Deserialize)]
struct StepFile {
    label: String,
    status: String,
    #[serde(default)]
    duration_seconds: Option<f64>,
    #[serde(default)]
    started: Option<DateTime<Utc>>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    log: Option<PathBuf>,
    #[serde(default)]
    stderr_log: Option<PathBuf>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    attempts: Vec<Value>,
}

impl ResultsFile {
    fn steps(self) -> Vec<StepView> {
        let mut out = Vec::new();
        for (_, instance) in self.instances.0 {
            let first = out.len();
            out.extend(instance.steps.into_iter().map(StepFile::view));
            // The instance's outputs go with its last step, as the events tell them.
            let outputs = instance
                .outputs
                .filter(|o| o.as_object().is_some_and(|m| !m.is_empty()));
            if let Some(last) = out.get_mut(first..).and_then(|s| s.last_mut()) {
                last.outputs = outputs;
            }
        }
        out
    }
}

impl StepFile {
    fn view(self) -> StepView {
        StepView {
            step: None,
            total_tokens: self.usage.as_ref().map_or(0, |u| tokens(&u["tokens"])),
            usd: self.usage.as_ref().and_then(|u| u["cost_usd"].as_f64()),
            attempts: match (self.attempts.len(), self.started.is_some()) {
                (0, started) => u32::from(started),
                (n, _) => n as u32,
            },
            label: self.label,
            status: self.status,
            started_at: self.started,
            duration_seconds: self.duration_seconds,
            reason: self.reason,
            log: self.log,
            stderr_log: self.stderr_log,
            outputs: None,
        }
    }
}

/// A JSON object read in its order (serde_json's own map sorts its keys; jobs are in manifest
/// order).
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}
