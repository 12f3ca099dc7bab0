//! Resolving an agent job's Claude Code configuration (`append_system_prompt`, `mcp_config`,
//! `settings`, `agents`, `extra_args`, ...) and a job's environment files and secret names.
//!
//! Merging with `[defaults]`: a key the job sets replaces the default's value whole (lists
//! and tables included); `secrets` are the union of both; the defaults' `env_file` is read
//! before the job's, and `env` tables win over both files. Files are relative to the manifest
//! and checked here, so a mistake is reported at load time at its span.

use std::path::Path;

use super::diagnostic::{ManifestError, span};
use super::model::ClaudeConfig;
use super::raw::{RawDefaults, RawJob};
use super::read::{Json, Sp, quote_key};
use super::resolve::{Resolver, clean};

/// Every flag orch sets on a Claude Code step itself, with the key (or reason) to use instead.
pub const ORCH_FLAGS: &[(&str, &str)] = &[
    ("-p", "orch always runs Claude Code with -p"),
    ("--print", "orch always runs Claude Code with -p"),
    ("--output-format", "use `output_format`"),
    (
        "--verbose",
        "orch always passes --verbose (stream-json needs it)",
    ),
    ("--permission-mode", "use `permission_mode`"),
    ("--model", "use `model`"),
    ("--allowedTools", "use `allowed_tools`"),
    ("--allowed-tools", "use `allowed_tools`"),
    ("--max-turns", "use `max_turns`"),
    ("--max-budget-usd", "use `max_usd`"),
    ("--session-id", "use `session_id`"),
    (
        "--resume",
        "use `session_id` (orch resumes the session on every later step)",
    ),
    (
        "-r",
        "use `session_id` (orch resumes the session on every later step)",
    ),
    (
        "--continue",
        "use `session_id` (orch resumes the session on every later step)",
    ),
    (
        "-c",
        "use `session_id` (orch resumes the session on every later step)",
    ),
    ("--json-schema", "use `output_schema`"),
    ("--append-system-prompt", "use `append_system_prompt`"),
    ("--system-prompt", "use `system_prompt`"),
    ("--disallowedTools", "use `disallowed_tools`"),
    ("--disallowed-tools", "use `disallowed_tools`"),
    ("--mcp-config", "use `mcp_config`"),
    ("--strict-mcp-config", "use `strict_mcp_config = true`"),
    ("--add-dir", "use `add_dirs`"),
    ("--fallback-model", "use `fallback_model`"),
    ("--settings", "use `settings`"),
    ("--agents", "use `agents`"),
    ("--permission-prompt-tool", "use `permission_prompt_tool`"),
    ("--", "orch puts the prompt after `--` itself"),
];

/// Which of [`ORCH_FLAGS`] an argument is (`--model=x` is `--model`), with its hint.
pub fn orch_flag(arg: &str) -> Option<(&'static str, &'static str)> {
    let name = match arg.split_once('=') {
        Some((name, _)) if name.starts_with("--") => name,
        _ => arg,
    };
    ORCH_FLAGS.iter().find(|(flag, _)| *flag == name).copied()
}

impl Resolver {
    fn option_error(&mut self, path: String, message: String, at: &Sp<impl Sized>, help: &str) {
        self.errors.push(ManifestError::AgentOption {
            path,
            message,
            span: span(&at.span),
            label: "here".into(),
            help: help.into(),
        });
    }

    /// An agent job's Claude Code options, the job's keys over the defaults'.
    pub(super) fn claude_config(
        &mut self,
        name: &str,
        job: &RawJob,
        defaults: &RawDefaults,
        dir: &Path,
    ) -> ClaudeConfig {
        let at = |key: &str| format!("jobs.{}.{key}", quote_key(name));
        let text = |j: &Option<Sp<String>>, d: &Option<Sp<String>>| {
            j.as_ref().or(d.as_ref()).map(|s| s.value.clone())
        };
        let mut config = ClaudeConfig {
            append_system_prompt: text(&job.append_system_prompt, &defaults.append_system_prompt),
            system_prompt: text(&job.system_prompt, &defaults.system_prompt),
            disallowed_tools: job
                .disallowed_tools
                .clone()
                .or_else(|| defaults.disallowed_tools.clone())
                .unwrap_or_default(),
            strict_mcp_config: job
                .strict_mcp_config
                .or(defaults.strict_mcp_config)
                .unwrap_or(false),
            fallback_model: text(&job.fallback_model, &defaults.fallback_model),
            permission_prompt_tool: text(
                &job.permission_prompt_tool,
                &defaults.permission_prompt_tool,
            ),
            ..ClaudeConfig::default()
        };
        if let Some(dirs) = job.add_dirs.as_ref().or(defaults.add_dirs.as_ref()) {
            for d in dirs {
                let full = clean(&dir.join(&d.value));
                if !full.is_dir() {
                    self.warnings.push(format!(
                        "job `{name}`: `add_dirs` names {}, which is not a folder (yet)",
                        full.display()
                    ));
                }
                config.add_dirs.push(full);
            }
        }
        if let Some(mcp) = job.mcp_config.as_ref().or(defaults.mcp_config.as_ref()) {
            let items: Vec<serde_json::Value> = match &mcp.value.0 {
                serde_json::Value::Array(items) => items.clone(),
                one => vec![one.clone()],
            };
            for item in items {
                if let Some(c) = self.json_source(&at("mcp_config"), mcp, &item, dir, "mcpServers")
                {
                    config.mcp_config.push(c);
                }
            }
        }
        if let Some(s) = job.settings.as_ref().or(defaults.settings.as_ref()) {
            config.settings = self.json_source(&at("settings"), s, &s.value.0, dir, "");
        }
        if let Some(a) = job.agents.as_ref().or(defaults.agents.as_ref()) {
            config.agents = self.agents(&at("agents"), a);
        }
        if let Some(args) = job.extra_args.as_ref().or(defaults.extra_args.as_ref()) {
            for arg in &args.value {
                if let Some((flag, hint)) = orch_flag(&arg.value) {
                    self.option_error(
                        at("extra_args"),
                        format!("`{flag}` is a flag orch sets itself"),
                        arg,
                        &format!("{hint}, not extra_args"),
                    );
                } else {
                    config.extra_args.push(arg.value.clone());
                }
            }
        }
        config
    }

    /// A JSON option given as a file (checked, passed by its absolute path) or inline (passed
    /// as JSON text). `needs` names a key the object must hold ("" for none).
    fn json_source(
        &mut self,
        path: &str,
        at: &Sp<Json>,
        value: &serde_json::Value,
        dir: &Path,
        needs: &str,
    ) -> Option<String> {
        let key = path.rsplit('.').next().unwrap_or(path);
        let example = if needs.is_empty() {
            format!("write {key} = {{ ... }} inline, or {key} = \"file.json\"")
        } else {
            format!(
                "write {key} = {{ {needs} = {{ NAME = {{ command = \"...\", args = [] }} }} }} inline, or {key} = \"file.json\""
            )
        };
        let (object, passed) = match value {
            serde_json::Value::String(file) => {
                let full = clean(&dir.join(file));
                let parsed = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read {}: {e}", full.display()))
                    .and_then(|t| {
                        serde_json::from_str::<serde_json::Value>(&t)
                            .map_err(|e| format!("{} is not JSON: {e}", full.display()))
                    });
                match parsed {
                    Ok(v) => (v, full.to_string_lossy().into_owned()),
                    Err(message) => {
                        self.option_error(path.into(), message, at, &example);
                        return None;
                    }
                }
            }
            v => (v.clone(), v.to_string()),
        };
        let Some(map) = object.as_object() else {
            self.option_error(
                path.into(),
                "must be a table (inline) or a JSON file's path".into(),
                at,
                &example,
            );
            return None;
        };
        if !needs.is_empty() && !map.get(needs).is_some_and(|s| s.is_object()) {
            self.option_error(
                path.into(),
                format!("an MCP configuration holds its servers under `{needs}`"),
                at,
                &example,
            );
            return None;
        }
        Some(passed)
    }

    /// `agents`: subagents by name, each with a `description` and a `prompt`.
    fn agents(&mut self, path: &str, at: &Sp<Json>) -> Option<String> {
        let help = "write agents = { reviewer = { description = \"Reviews code\", prompt = \"You are a code reviewer\" } }";
        let Some(map) = at.value.0.as_object() else {
            self.option_error(path.into(), "must be a table of subagents".into(), at, help);
            return None;
        };
        for (agent, def) in map {
            let has = |k: &str| def.get(k).is_some_and(|v| v.is_string());
            if !has("description") || !has("prompt") {
                self.option_error(
                    path.into(),
                    format!("subagent `{agent}` needs a `description` and a `prompt` (text)"),
                    at,
                    help,
                );
                return None;
            }
        }
        Some(at.value.0.to_string())
    }

    /// A warning for each model (`model`, each of `fallback_model`) the price table does not
    /// know: the run goes on, but its live cost is "price unknown" until Claude Code reports it.
    pub(super) fn unknown_models(&mut self, name: &str, model: Option<&str>, fallback: Option<&str>) {
        let fallbacks = fallback.into_iter().flat_map(|f| f.split(','));
        for m in model.into_iter().chain(fallbacks).map(str::trim) {
            if m.is_empty() || crate::agent::prices::is_known(m) {
                continue;
            }
            let closest = crate::agent::prices::closest(m).join(", ");
            self.warnings.push(format!(
                "job `{name}`: model \"{m}\" is not in orch's price table (closest known: {closest}); its live cost shows as \"price unknown\" until Claude Code reports one"
            ));
        }
    }

    /// The variables of the defaults' and the job's `env_file`, in that order.
    pub(super) fn env_files(
        &mut self,
        name: &str,
        job: &RawJob,
        defaults: &RawDefaults,
        dir: &Path,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (file, path) in [
            (&defaults.env_file, "defaults.env_file".to_string()),
            (&job.env_file, format!("jobs.{}.env_file", quote_key(name))),
        ] {
            let Some(file) = file else { continue };
            let full = clean(&dir.join(&file.value));
            let read =
                dotenvy::from_path_iter(&full).and_then(|it| it.collect::<Result<Vec<_>, _>>());
            match read {
                Ok(vars) => out.extend(vars),
                Err(e) => self.errors.push(ManifestError::EnvFile {
                    path,
                    file: full.display().to_string(),
                    reason: e.to_string(),
                    span: span(&file.span),
                }),
            }
        }
        out
    }

    /// The names in the defaults' and the job's `secrets`, each once.
    pub(super) fn secret_names(&mut self, job: &RawJob, defaults: &RawDefaults) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for n in defaults.secrets.iter().chain(&job.secrets).flatten() {
            if n.value.is_empty() || n.value.contains('=') {
                self.option_error(
                    "secrets".into(),
                    format!("{:?} is not a variable name", n.value),
                    n,
                    "list the names of environment variables, e.g. secrets = [\"DEPLOY_KEY\"]",
                );
            } else if !names.contains(&n.value) {
                names.push(n.value.clone());
            }
        }
        names
    }
}
