//! The Claude Code driver: argv, executable discovery, the stream-json parser, accounting, prices,
//! and the simulated agent that stands in for `claude`.

pub mod accounting;
pub mod failure;
pub mod prices;
pub mod simulate;
pub mod stream;
pub mod structured;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::manifest::{Agent, ClaudeConfig};

/// How a step joins its Claude session: the first step creates it, later ones resume it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "mode", content = "id", rename_all = "snake_case")]
pub enum Session {
    New(Uuid),
    Resume(Uuid),
}

impl Session {
    pub fn id(&self) -> Uuid {
        match self {
            Session::New(id) | Session::Resume(id) => *id,
        }
    }
}

/// The program that plays Claude Code: the real CLI, or orch's simulated agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProgram {
    pub program: PathBuf,
    /// Arguments before Claude Code's own (`agent-sim` for the simulated agent).
    pub prefix: Vec<String>,
}

impl AgentProgram {
    /// `claude` by name, for plans shown and runs made where Claude Code is not needed or not found.
    pub fn by_name() -> AgentProgram {
        AgentProgram {
            program: "claude".into(),
            prefix: Vec::new(),
        }
    }

    /// orch's simulated agent: this executable's hidden `agent-sim` subcommand.
    pub fn simulated() -> std::io::Result<AgentProgram> {
        Ok(AgentProgram {
            program: std::env::current_exe()?,
            prefix: vec!["agent-sim".into()],
        })
    }
}

/// The arguments of one Claude Code step, exactly as spawned (program excluded):
/// `-p --output-format stream-json --verbose --permission-mode M [--model X] [--allowedTools a,b]
/// [--max-turns N] [--max-budget-usd U] [--json-schema S] [CONFIG...] [EXTRA...]
/// (--session-id ID | --resume ID) -- PROMPT`, CONFIG being [`config_args`].
/// The `--` keeps a list option such as `--allowedTools` from swallowing the prompt.
/// Every step of a chain gets the same options: the CLI restores a resumed session's
/// transcript, not its flags (`--mcp-config`, `--settings`, `--add-dir` least of all).
pub fn claude_args(
    agent: &Agent,
    max_usd: Option<f64>,
    session: Session,
    prompt: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        &agent.permission_mode,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(model) = &agent.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if !agent.allowed_tools.is_empty() {
        args.extend(["--allowedTools".into(), agent.allowed_tools.join(",")]);
    }
    if let Some(turns) = agent.max_turns {
        args.extend(["--max-turns".into(), turns.to_string()]);
    }
    if let Some(usd) = max_usd {
        args.extend(["--max-budget-usd".into(), usd.to_string()]);
    }
    if let Some(schema) = &agent.output_schema {
        args.extend(["--json-schema".into(), schema.to_string()]);
    }
    config_args(&agent.config, &mut args);
    match session {
        Session::New(id) => args.extend(["--session-id".into(), id.to_string()]),
        Session::Resume(id) => args.extend(["--resume".into(), id.to_string()]),
    }
    args.extend(["--".into(), prompt.to_string()]);
    args
}

/// The flags of a job's [`ClaudeConfig`], in a fixed order: `[--append-system-prompt T]
/// [--system-prompt T] [--disallowedTools a,b] [--mcp-config C]... [--strict-mcp-config]
/// [--add-dir D]... [--fallback-model M] [--settings S] [--agents J]
/// [--permission-prompt-tool T]`, then `extra_args` as written.
pub fn config_args(config: &ClaudeConfig, args: &mut Vec<String>) {
    let mut flag = |name: &str, value: &str| args.extend([name.to_string(), value.to_string()]);
    if let Some(text) = &config.append_system_prompt {
        flag("--append-system-prompt", text);
    }
    if let Some(text) = &config.system_prompt {
        flag("--system-prompt", text);
    }
    if !config.disallowed_tools.is_empty() {
        flag("--disallowedTools", &config.disallowed_tools.join(","));
    }
    for mcp in &config.mcp_config {
        flag("--mcp-config", mcp);
    }
    if config.strict_mcp_config {
        args.push("--strict-mcp-config".into());
    }
    let mut flag = |name: &str, value: &str| args.extend([name.to_string(), value.to_string()]);
    for dir in &config.add_dirs {
        flag("--add-dir", &dir.to_string_lossy());
    }
    if let Some(model) = &config.fallback_model {
        flag("--fallback-model", model);
    }
    if let Some(settings) = &config.settings {
        flag("--settings", settings);
    }
    if let Some(agents) = &config.agents {
        flag("--agents", agents);
    }
    if let Some(tool) = &config.permission_prompt_tool {
        flag("--permission-prompt-tool", tool);
    }
    args.extend(config.extra_args.iter().cloned());
}

/// Finds the Claude Code executable: `--claude-path`, `ORCH_CLAUDE_PATH`, the manifest, `PATH`,
/// then the usual install places. Returns every place tried when none has it.
pub fn discover_claude(
    flag: Option<&Path>,
    manifest: Option<&Path>,
    env_path: Option<OsString>,
    home: Option<PathBuf>,
) -> Result<PathBuf, Vec<PathBuf>> {
    let mut tried = Vec::new();
    let explicit = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORCH_CLAUDE_PATH").map(PathBuf::from))
        .or_else(|| manifest.map(Path::to_path_buf));
    if let Some(path) = explicit {
        // A bare name is looked up on PATH, as a shell would.
        let candidates: Vec<PathBuf> = if path.components().count() == 1 && !path.is_absolute() {
            env_path
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(&path))
                .collect()
        } else {
            vec![path]
        };
        for candidate in candidates {
            if is_executable(&candidate) {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
        return Err(tried);
    }
    let on_path = env_path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("claude"));
    let usual = home
        .iter()
        .flat_map(|h| [h.join(".local/bin/claude"), h.join(".claude/local/claude")])
        .chain(["/opt/homebrew/bin/claude", "/usr/local/bin/claude"].map(PathBuf::from));
    for candidate in on_path.chain(usual) {
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        tried.push(candidate);
    }
    Err(tried)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            prompt: "/review".into(),
            pre_commands: vec![],
            allowed_tools: vec!["Read".into(), "Bash".into()],
            permission_mode: "bypassPermissions".into(),
            model: Some("sonnet".into()),
            max_turns: Some(3),
            session_id: None,
            output_schema: None,
            config: Box::default(),
            fork_session: false,
        }
    }

    #[test]
    fn argv_follows_the_design_and_ends_with_double_dash_prompt() {
        let id = Uuid::nil();
        let args = claude_args(&agent(), Some(1.5), Session::Resume(id), "/review all");
        assert_eq!(
            args.join(" "),
            "-p --output-format stream-json --verbose --permission-mode bypassPermissions \
             --model sonnet --allowedTools Read,Bash --max-turns 3 --max-budget-usd 1.5 \
             --resume 00000000-0000-0000-0000-000000000000 -- /review all"
        );
    }

    #[test]
    fn every_claude_code_option_becomes_its_flag_before_the_session() {
        let mut a = agent();
        *a.config = ClaudeConfig {
            append_system_prompt: Some("Be brief.".into()),
            system_prompt: Some("You are a bot.".into()),
            disallowed_tools: vec!["Bash".into(), "WebFetch".into()],
            mcp_config: vec!["/m/one.json".into(), r#"{"mcpServers":{}}"#.into()],
            strict_mcp_config: true,
            add_dirs: vec!["/docs".into(), "/data".into()],
            fallback_model: Some("haiku".into()),
            settings: Some(r#"{"env":{}}"#.into()),
            agents: Some(r#"{"r":{}}"#.into()),
            permission_prompt_tool: Some("mcp__p__ask".into()),
            extra_args: vec!["--effort".into(), "low".into()],
        };
        let args = claude_args(&a, None, Session::New(Uuid::nil()), "go");
        let tail = &args[args
            .iter()
            .position(|x| x == "--max-turns")
            .expect("max-turns")
            + 2..];
        assert_eq!(
            tail,
            [
                "--append-system-prompt",
                "Be brief.",
                "--system-prompt",
                "You are a bot.",
                "--disallowedTools",
                "Bash,WebFetch",
                "--mcp-config",
                "/m/one.json",
                "--mcp-config",
                r#"{"mcpServers":{}}"#,
                "--strict-mcp-config",
                "--add-dir",
                "/docs",
                "--add-dir",
                "/data",
                "--fallback-model",
                "haiku",
                "--settings",
                r#"{"env":{}}"#,
                "--agents",
                r#"{"r":{}}"#,
                "--permission-prompt-tool",
                "mcp__p__ask",
                "--effort",
                "low",
                "--session-id",
                "00000000-0000-0000-0000-000000000000",
                "--",
                "go",
            ]
        );
        // A resumed step gets the same options: the CLI restores the transcript, not the flags.
        let resumed = claude_args(&a, None, Session::Resume(Uuid::nil()), "go");
        assert_eq!(resumed.len(), args.len());
        assert!(resumed.windows(2).any(|w| w == ["--add-dir", "/data"]));
    }

    #[test]
    fn discovery_reports_every_place_tried() {
        let tmp = std::env::temp_dir().join(format!("orch-discover-{}", std::process::id()));
        let err = discover_claude(
            None,
            None,
            Some(tmp.clone().into_os_string()),
            Some(tmp.clone()),
        )
        .unwrap_err();
        assert!(err.contains(&tmp.join("claude")));
        assert!(err.contains(&PathBuf::from("/usr/local/bin/claude")));
    }
}
