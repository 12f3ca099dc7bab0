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
        // A mistake in `[defaults]` is met once per job that inherits it: report it once.
        let here = span(&at.span);
        let again = self.errors.iter().any(|e| {
            matches!(e, ManifestError::AgentOption { span, message: m, .. }
                if *span == here && *m == message)
        });
        if again {
            return;
        }
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
        // A value from `[defaults]` is named (and reported, once) there.
        let at = |key: &str, own: bool| {
            if own {
                format!("jobs.{}.{key}", quote_key(name))
            } else {
                format!("defaults.{key}")
            }
        };
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
                if let Some(c) = self.json_source(
                    &at("mcp_config", job.mcp_config.is_some()),
                    mcp,
                    &item,
                    dir,
                    "mcpServers",
                ) {
                    config.mcp_config.push(c);
                }
            }
        }
        if let Some(s) = job.settings.as_ref().or(defaults.settings.as_ref()) {
            config.settings = self.json_source(
                &at("settings", job.settings.is_some()),
                s,
                &s.value.0,
                dir,
                "",
            );
        }
        if let Some(a) = job.agents.as_ref().or(defaults.agents.as_ref()) {
            config.agents = self.agents(&at("agents", job.agents.is_some()), a);
        }
        if let Some(args) = job.extra_args.as_ref().or(defaults.extra_args.as_ref()) {
            for arg in &args.value {
                if let Some((flag, hint)) = orch_flag(&arg.value) {
                    self.option_error(
                        at("extra_args", job.extra_args.is_some()),
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
    pub(super) fn unknown_models(
        &mut self,
        name: &str,
        model: Option<&str>,
        fallback: Option<&str>,
    ) {
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
                Err(e) => {
                    let here = span(&file.span);
                    // The defaults' file is read for every job: its mistake is reported once.
                    if !self
                        .errors
                        .iter()
                        .any(|e| matches!(e, ManifestError::EnvFile { span, .. } if *span == here))
                    {
                        self.errors.push(ManifestError::EnvFile {
                            path,
                            file: full.display().to_string(),
                            reason: e.to_string(),
                            span: here,
                        });
                    }
                }
            }
        }
        out
    }

    /// The names in the defaults' and the job's `secrets`, each once.
    pub(super) fn secret_names(
        &mut self,
        name: &str,
        job: &RawJob,
        defaults: &RawDefaults,
    ) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let own = job.secrets.iter().flatten().map(|n| (n, false));
        for (n, inherited) in defaults
            .secrets
            .iter()
            .flatten()
            .map(|n| (n, true))
            .chain(own)
        {
            if n.value.is_empty() || n.value.contains('=') {
                let path = if inherited {
                    "defaults.secrets".to_string()
                } else {
                    format!("jobs.{}.secrets", quote_key(name))
                };
                self.option_error(
                    path,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use miette::Diagnostic;

    use crate::manifest::{LoadError, Manifest, Task, load_str};

    fn load_in(dir: &Path, text: &str) -> Result<Manifest, Vec<super::ManifestError>> {
        match load_str(&dir.join("orch.toml"), text.to_string()) {
            Ok(m) => Ok(m),
            Err(LoadError::Invalid(e)) => Err(e.errors),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    fn config(m: &Manifest, job: usize) -> &crate::manifest::ClaudeConfig {
        match &m.jobs[job].task {
            Task::Agent(a) => &a.config,
            other => panic!("not an agent: {other:?}"),
        }
    }

    /// Code, the text under the label, help.
    fn parts(text: &str, e: &super::ManifestError) -> (String, String, String) {
        let code = e.code().map(|c| c.to_string()).unwrap_or_default();
        let label = e.labels().and_then(|mut l| l.next()).expect("a label");
        let under = text[label.offset()..label.offset() + label.len()].to_string();
        (
            code,
            under,
            e.help().map(|h| h.to_string()).unwrap_or_default(),
        )
    }

    #[test]
    fn the_job_replaces_the_defaults_and_files_are_made_absolute() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("mcp.json"), r#"{"mcpServers":{}}"#).expect("write");
        std::fs::create_dir(dir.path().join("docs")).expect("mkdir");
        let text = r#"
            [defaults]
            append_system_prompt = "from defaults"
            disallowed_tools = ["WebFetch"]
            mcp_config = "mcp.json"
            strict_mcp_config = true
            [jobs.a]
            prompt = "x"
            disallowed_tools = ["Bash(git push *)"]
            add_dirs = ["docs"]
            settings = { env = { A = "1" } }
            agents = { rev = { description = "Reviews", prompt = "You review" } }
            fallback_model = "sonnet"
            permission_prompt_tool = "mcp__perm__ask"
            extra_args = ["--effort", "low"]
            [jobs.b]
            prompt = "y"
            mcp_config = [{ mcpServers = { t = { command = "python3", args = ["t.py"] } } }]
        "#;
        let m = load_in(dir.path(), text).expect("loads");
        let a = config(&m, 0);
        assert_eq!(a.append_system_prompt.as_deref(), Some("from defaults"));
        assert_eq!(a.disallowed_tools, ["Bash(git push *)"]);
        assert_eq!(
            a.mcp_config,
            [dir.path().join("mcp.json").to_string_lossy().into_owned()]
        );
        assert!(a.strict_mcp_config);
        assert_eq!(a.add_dirs, [dir.path().join("docs")]);
        assert_eq!(a.settings.as_deref(), Some(r#"{"env":{"A":"1"}}"#));
        assert_eq!(
            a.agents.as_deref(),
            Some(r#"{"rev":{"description":"Reviews","prompt":"You review"}}"#)
        );
        assert_eq!(a.extra_args, ["--effort", "low"]);
        let b = config(&m, 1);
        assert_eq!(b.disallowed_tools, ["WebFetch"]);
        assert_eq!(
            b.mcp_config,
            [r#"{"mcpServers":{"t":{"args":["t.py"],"command":"python3"}}}"#]
        );
    }

    #[test]
    fn a_flag_orch_sets_in_extra_args_names_the_key_to_use() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "[jobs.a]\nprompt = \"x\"\nextra_args = [\"--effort\", \"--model=opus\", \"--add-dir\", \"d\"]\n";
        let errors = load_in(dir.path(), text).expect_err("refused");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let (code, under, help) = parts(text, &errors[0]);
        assert_eq!(code, "orch::manifest::agent_option");
        assert_eq!(under, "\"--model=opus\"");
        assert_eq!(help, "use `model`, not extra_args");
        assert_eq!(
            errors[0].to_string(),
            "`jobs.a.extra_args`: `--model` is a flag orch sets itself"
        );
        assert_eq!(parts(text, &errors[1]).2, "use `add_dirs`, not extra_args");
    }

    #[test]
    fn a_mistake_in_the_defaults_is_reported_once_under_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "[defaults]\nextra_args = [\"-p\"]\n[jobs.a]\nprompt = \"x\"\n[jobs.b]\nprompt = \"y\"\n";
        let errors = load_in(dir.path(), text).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(
            errors[0].to_string(),
            "`defaults.extra_args`: `-p` is a flag orch sets itself"
        );
    }

    #[test]
    fn bad_mcp_config_settings_and_agents_are_diagnostics_at_their_value() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("broken.json"), "{ nope").expect("write");
        let text = r#"
[jobs.a]
prompt = "x"
mcp_config = { servers = {} }
[jobs.b]
prompt = "x"
settings = "missing.json"
[jobs.c]
prompt = "x"
mcp_config = "broken.json"
[jobs.d]
prompt = "x"
agents = { rev = { prompt = "p" } }
"#;
        let errors = load_in(dir.path(), text).expect_err("refused");
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{messages:#?}");
        let (_, under, help) = parts(text, &errors[0]);
        assert_eq!(under, "{ servers = {} }");
        assert!(help.contains("mcpServers = {"), "{help}");
        assert!(messages[1].contains("cannot read") && messages[1].contains("missing.json"));
        assert!(
            messages[2].contains("broken.json is not JSON"),
            "{}",
            messages[2]
        );
        assert!(messages[3].contains("subagent `rev` needs a `description`"));
    }

    #[test]
    fn env_files_load_in_order_env_wins_and_secrets_are_merged() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("base.env"),
            "A=base\nB=base\n# c\nQ=\"quoted value\"\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("job.env"), "B=job\nC=job\n").expect("write");
        let text = r#"
            [defaults]
            env_file = "base.env"
            secrets = ["A"]
            [jobs.a]
            run = ["true"]
            env_file = "job.env"
            env = { C = "table" }
            secrets = ["B", "A"]
        "#;
        let m = load_in(dir.path(), text).expect("loads");
        let env: Vec<(&str, &str)> = m.jobs[0]
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("A", "base"),
                ("Q", "quoted value"),
                ("B", "job"),
                ("C", "table")
            ]
        );
        assert_eq!(m.jobs[0].secrets, ["A", "B"]);

        let text = "[jobs.a]\nrun = [\"true\"]\nenv_file = \"nope.env\"\n";
        let errors = load_in(dir.path(), text).expect_err("refused");
        let (code, under, _) = parts(text, &errors[0]);
        assert_eq!(code, "orch::manifest::env_file");
        assert_eq!(under, "\"nope.env\"");
    }

    #[test]
    fn claude_code_keys_on_a_process_job_warn_and_are_ignored() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "[jobs.a]\nrun = [\"true\"]\nappend_system_prompt = \"x\"\nextra_args = [\"--effort\"]\n";
        let m = load_in(dir.path(), text).expect("loads");
        assert_eq!(
            m.warnings,
            [
                "job `a`: `append_system_prompt` applies to agent jobs only and is ignored for `run`/`shell`",
                "job `a`: `extra_args` applies to agent jobs only and is ignored for `run`/`shell`",
            ]
        );
    }

    #[test]
    fn an_unknown_model_is_a_warning_with_the_closest_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let text =
            "[jobs.a]\nprompt = \"x\"\nmodel = \"sonet\"\nfallback_model = \"haiku,gpt-5\"\n";
        let m = load_in(dir.path(), text).expect("loads");
        assert_eq!(m.warnings.len(), 2, "{:#?}", m.warnings);
        assert!(
            m.warnings[0]
                .contains("model \"sonet\" is not in orch's price table (closest known: sonnet")
        );
        assert!(
            m.warnings[1].contains("model \"gpt-5\""),
            "{}",
            m.warnings[1]
        );
    }
}
