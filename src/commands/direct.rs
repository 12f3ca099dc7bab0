//! Direct mode, zen's `tool "/cmd args"`: one agent job from the command line, no manifest file.
//!
//! Owns recognising direct mode (`--command`, `--prompt`, or a positional argument that is no
//! readable file and looks like a slash command) and turning it into a one-instance zen config,
//! loaded by the same loader as a JSON file, so a direct job is exactly the job that config would
//! be. It never runs anything and never prints: the guess is handed back as a notice.

use std::path::{Path, PathBuf};

use crate::cli::ManifestArgs;
use crate::config::DirectJob;
use crate::errors::Error;
use crate::manifest::{self, Manifest};

/// What the direct job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// A slash command with its arguments, "/createtestsv2 frontend".
    Command(String),
    /// A prompt.
    Prompt(String),
}

/// The name the direct manifest is loaded under: its folder (the current one) is where the job
/// runs and where `.orch` goes, as zen ran in the current folder.
pub const PSEUDO_FILE: &str = "command-line";

/// Whether `text` reads as a slash command rather than a path: a `/`, a name without further
/// slashes, then optionally a space and arguments ("/createtestsv2 frontend", "/review").
pub fn looks_like_slash_command(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('/') else {
        return false;
    };
    let name = rest.split_whitespace().next().unwrap_or("");
    !name.is_empty() && !name.contains('/') && !name.contains('.')
}

/// The direct job the flags ask for, and a notice when it was guessed from the positional
/// argument (so the user learns the explicit flag).
pub fn from_args(args: &ManifestArgs) -> Option<(Direct, Option<String>)> {
    if let Some(c) = &args.command {
        return Some((Direct::Command(c.clone()), None));
    }
    if let Some(p) = &args.prompt {
        return Some((Direct::Prompt(p.clone()), None));
    }
    let arg = args.manifest.as_ref()?;
    let text = arg.to_str()?;
    if !looks_like_slash_command(text) || std::fs::metadata(arg).is_ok() {
        return None;
    }
    let notice = format!(
        "no file named {text:?}: running it as a slash command, zen's direct mode (write \
         --command {text:?} to say so)"
    );
    Some((Direct::Command(text.to_string()), Some(notice)))
}

/// The direct-mode flags given without a command or prompt: they would do nothing.
pub fn stray_flags(args: &ManifestArgs) -> Option<&'static str> {
    [
        ("--instance-name", args.instance_name.is_some()),
        (
            "--instance-description",
            args.instance_description.is_some(),
        ),
        ("--session-id", args.session_id.is_some()),
        ("--clear-history", args.clear_history),
        ("--compact-history", args.compact_history),
    ]
    .into_iter()
    .find(|(_, given)| *given)
    .map(|(flag, _)| flag)
}

/// The job's default name: the command's name ("createtestsv2"), or "prompt".
fn default_name(direct: &Direct) -> String {
    match direct {
        Direct::Command(c) => {
            let base = c.split_whitespace().next().unwrap_or("");
            let name: String = base
                .trim_start_matches('/')
                .chars()
                .map(|ch| {
                    if ch.is_alphanumeric() || ch == '-' || ch == '_' {
                        ch
                    } else {
                        '-'
                    }
                })
                .collect();
            if name.is_empty() {
                "command".into()
            } else {
                name
            }
        }
        Direct::Prompt(_) => "prompt".into(),
    }
}

/// Loads the one-job manifest of `job`, as if read from [`PSEUDO_FILE`] in `dir`.
pub fn load(job: &DirectJob, dir: &Path) -> Result<Manifest, Error> {
    let direct = &job.what;
    let mut instance = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        instance.insert(k.to_string(), v);
    };
    match direct {
        Direct::Command(c) => put("command", c.as_str().into()),
        Direct::Prompt(p) => put("prompt", p.as_str().into()),
    }
    let name = job.name.clone().unwrap_or_else(|| default_name(direct));
    put("name", name.into());
    if let Some(d) = &job.description {
        put("description", d.as_str().into());
    }
    if let Some(s) = &job.session_id {
        put("session_id", s.as_str().into());
    }
    if job.clear_history {
        put("clear_history", true.into());
    }
    if job.compact_history {
        put("compact_history", true.into());
    }
    let config = serde_json::json!({ "instances": [instance] });
    let text = serde_json::to_string_pretty(&config).expect("plain data");
    let path: PathBuf = dir.join(PSEUDO_FILE);
    Ok(manifest::load_str(&path, text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_are_told_from_paths() {
        assert!(looks_like_slash_command("/createtestsv2 frontend"));
        assert!(looks_like_slash_command("/review"));
        assert!(looks_like_slash_command("/frontend:component Button"));
        assert!(!looks_like_slash_command("/tmp/orch.toml"));
        assert!(!looks_like_slash_command("/orch.toml"));
        assert!(!looks_like_slash_command("orch.toml"));
        assert!(!looks_like_slash_command("/"));
    }

    #[test]
    fn the_default_name_is_the_commands() {
        let c = |s: &str| default_name(&Direct::Command(s.into()));
        assert_eq!(c("/createtestsv2 frontend unit"), "createtestsv2");
        assert_eq!(c("/frontend:component x"), "frontend-component");
        assert_eq!(default_name(&Direct::Prompt("hi".into())), "prompt");
    }
}
