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

use crate::manifest::Agent;

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
/// [--max-turns N] [--max-budget-usd U] (--session-id ID | --resume ID) -- PROMPT`.
/// The `--` keeps a list option such as `--allowedTools` from swallowing the prompt.
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
    match session {
        Session::New(id) => args.extend(["--session-id".into(), id.to_string()]),
        Session::Resume(id) => args.extend(["--resume".into(), id.to_string()]),
    }
    args.extend(["--".into(), prompt.to_string()]);
    args
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
