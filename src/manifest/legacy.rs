//! The legacy JSON config of zen (the Python "Claude Instance Orchestrator"), and its translation
//! into the TOML manifest's raw form.
//!
//! A JSON config is read with the same reader as TOML (so its mistakes point at their line too),
//! then [`to_manifest`] maps every zen key onto the TOML model. `orch convert` prints that model, so
//! a converted file loads into exactly what the JSON loaded into.

use std::collections::{HashMap, HashSet};

use super::raw::{RawBudget, RawJob, RawLimit, RawManifest, RawSettings};
use super::read::{Map, Sp, raw_table};

raw_table! {
    /// zen's config file: `{"instances": [...], "budget": {...}}`; keys starting with `//` are comments.
    pub struct LegacyConfig as "the JSON config" {
        pub instances: Option<Sp<Vec<LegacyInstance>>>,
        pub budget: Option<LegacyBudget>,
    }
}

raw_table! {
    /// One of zen's instances (its `InstanceConfig`).
    pub struct LegacyInstance as "an instance" {
        pub command: Option<Sp<String>>,
        pub prompt: Option<Sp<String>>,
        pub name: Option<Sp<String>>,
        pub description: Option<String>,
        pub allowed_tools: Option<Vec<String>>,
        pub permission_mode: Option<Sp<String>>,
        pub output_format: Option<Sp<String>>,
        pub session_id: Option<Sp<String>>,
        pub clear_history: Option<bool>,
        pub compact_history: Option<bool>,
        pub pre_commands: Option<Vec<Sp<String>>>,
        pub max_tokens_per_command: Option<Sp<i64>>,
        /// An orch extension: the instance's Claude model (zen had none per instance).
        pub model: Option<String>,
    }
}

/// What zen's "system message: TEXT" pre-command stood for: TEXT, when `command` is one.
/// orch passes it as `append_system_prompt` instead of spending a turn on it.
pub fn system_message(command: &str) -> Option<&str> {
    let head = command.get(..SYSTEM_MESSAGE.len())?;
    head.eq_ignore_ascii_case(SYSTEM_MESSAGE)
        .then(|| command[SYSTEM_MESSAGE.len()..].trim())
}

/// The prefix of zen's system-message pre-command.
pub const SYSTEM_MESSAGE: &str = "system message:";

/// Splits zen's pre-commands into the real ones and the system messages, joined by a blank
/// line.
fn split_system_messages(
    pre_commands: Option<Vec<Sp<String>>>,
) -> (Option<Vec<Sp<String>>>, Option<Sp<String>>) {
    let Some(list) = pre_commands else {
        return (None, None);
    };
    let mut kept = Vec::new();
    let mut messages: Vec<Sp<String>> = Vec::new();
    for c in list {
        match system_message(&c.value) {
            Some(text) => messages.push(Sp {
                value: text.to_string(),
                span: c.span.clone(),
            }),
            None => kept.push(c),
        }
    }
    let joined = messages.first().map(|first| Sp {
        value: messages
            .iter()
            .map(|m| m.value.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        span: first.span.clone(),
    });
    (Some(kept).filter(|k| !k.is_empty()), joined)
}

raw_table! {
    /// zen's `budget` object.
    pub struct LegacyBudget as "the budget object" {
        /// The overall limit: tokens, or dollars when `budget_type` is "cost".
        pub overall_budget: Option<Sp<f64>>,
        pub overall_cost_budget: Option<Sp<f64>>,
        /// "tokens" (default), "cost" or "mixed".
        pub budget_type: Option<Sp<String>>,
        pub enforcement_mode: Option<Sp<String>>,
        pub disable_visuals: Option<bool>,
        pub command_budgets: Option<Map<Sp<f64>>>,
        pub command_cost_budgets: Option<Map<Sp<f64>>>,
    }
}

/// zen's permission mode "interactive" is not a Claude Code mode; "default" is what it meant.
fn permission_mode(mode: Sp<String>) -> Sp<String> {
    if mode.value == "interactive" {
        Sp {
            value: "default".into(),
            span: mode.span,
        }
    } else {
        mode
    }
}

/// Translates a JSON config into the TOML model. Names follow zen: an unnamed instance is named
/// after its command (or prompt), cut to 120 characters; a repeated default name gets a "-2",
/// "-3", ... suffix.
pub fn to_manifest(config: LegacyConfig, name: &str) -> RawManifest {
    let mut jobs: Vec<(Sp<String>, RawJob)> = Vec::new();
    let partial = config.partial;
    let instances = config.instances.map(|i| i.value).unwrap_or_default();
    // The names given so far, and the next suffix to try for each default name: with these,
    // naming n instances of one command takes linear time, not cubic (a scan of every name
    // for every suffix of every instance). A taken "base-n" blocks one suffix of one base
    // only, so the probes stay linear in total.
    let mut taken: HashSet<String> = HashSet::with_capacity(instances.len());
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    for instance in instances {
        let job_name = match instance.name {
            Some(n) => n,
            None => {
                let base = instance
                    .command
                    .as_ref()
                    .or(instance.prompt.as_ref())
                    // A long prompt is cut short, leaving room for a "-NNNNNN" suffix: the
                    // name must stay within MAX_JOB_NAME.
                    .map(|c| c.value.chars().take(super::MAX_JOB_NAME - 8).collect())
                    .unwrap_or_else(|| format!("instance-{}", jobs.len() + 1));
                let mut candidate = base.clone();
                if taken.contains(&candidate) {
                    let n = next_suffix.entry(base.clone()).or_insert(1);
                    loop {
                        *n += 1;
                        candidate = format!("{base}-{n}");
                        if !taken.contains(&candidate) {
                            break;
                        }
                    }
                }
                Sp::synthetic(candidate)
            }
        };
        taken.insert(job_name.value.clone());
        let (pre_commands, append_system_prompt) = split_system_messages(instance.pre_commands);
        let job = RawJob {
            description: instance.description,
            command: instance.command,
            prompt: instance.prompt,
            pre_commands,
            append_system_prompt,
            model: instance.model,
            allowed_tools: instance.allowed_tools,
            permission_mode: instance.permission_mode.map(permission_mode),
            output_format: instance.output_format,
            session_id: instance.session_id,
            clear_history: instance.clear_history,
            compact_history: instance.compact_history,
            max_tokens: instance.max_tokens_per_command,
            partial: instance.partial,
            ..RawJob::default()
        };
        jobs.push((job_name, job));
    }

    let mut manifest = RawManifest {
        name: Some(Sp::synthetic(name.to_string())),
        jobs: Some(Sp::synthetic(Map(jobs))),
        partial,
        ..RawManifest::default()
    };
    if let Some(b) = config.budget {
        if b.disable_visuals == Some(true) {
            manifest.settings = Some(RawSettings {
                disable_budget_visuals: Some(true),
                ..RawSettings::default()
            });
        }
        manifest.budget = Some(budget(b));
    }
    manifest
}

fn budget(b: LegacyBudget) -> RawBudget {
    let is_cost = b.budget_type.as_ref().is_some_and(|t| t.value == "cost");
    let mut out = RawBudget {
        mode: b.enforcement_mode,
        ..RawBudget::default()
    };
    // zen compared one number with both tokens and dollars; orch keeps them apart.
    match b.overall_budget {
        Some(v) if is_cost => out.usd = Some(v),
        Some(v) => out.tokens = Some(tokens(v)),
        None => {}
    }
    if let Some(usd) = b.overall_cost_budget {
        out.usd = Some(usd);
    }
    let mut commands: Vec<(Sp<String>, RawLimit)> = Vec::new();
    for (cmd, v) in b.command_budgets.map(|m| m.0).unwrap_or_default() {
        let limit = entry(&mut commands, cmd);
        if is_cost {
            limit.usd = Some(v);
        } else {
            limit.tokens = Some(tokens(v));
        }
    }
    for (cmd, v) in b.command_cost_budgets.map(|m| m.0).unwrap_or_default() {
        entry(&mut commands, cmd).usd = Some(v);
    }
    if !commands.is_empty() {
        out.commands = Some(Map(commands));
    }
    out
}

fn entry(commands: &mut Vec<(Sp<String>, RawLimit)>, cmd: Sp<String>) -> &mut RawLimit {
    let i = match commands.iter().position(|(c, _)| c.value == cmd.value) {
        Some(i) => i,
        None => {
            commands.push((cmd, RawLimit::default()));
            commands.len() - 1
        }
    };
    &mut commands[i].1
}

/// A token count written as a JSON number; fractions are dropped (zen read them as Python ints).
fn tokens(v: Sp<f64>) -> Sp<i64> {
    Sp {
        value: v.value as i64,
        span: v.span,
    }
}
