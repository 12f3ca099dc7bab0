//! `orch commands` and `orch commands inspect` (zen's `--list-commands` and `--inspect-command`):
//! the slash commands Claude Code would find where jobs run.
//!
//! Renders to a string; never prints and never runs a command.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::{CommandsAction, CommandsArgs, CommandsFormat, CommandsPlace};
use crate::config::ManifestConfig;
use crate::errors::Error;
use crate::slash::{self, Catalog, Found, SlashCommand, builtin};

/// Lines of a command's body that `inspect` shows.
const PREVIEW_LINES: usize = 15;

/// `orch commands [inspect NAME]`.
pub fn run(args: &CommandsArgs) -> Result<String, Error> {
    let workspace = workspace(&args.place)?;
    let catalog = slash::discover(&slash::roots_from_env(&workspace));
    match &args.action {
        None => Ok(list(&catalog, &workspace, args.place.format)),
        Some(CommandsAction::Inspect { name }) => inspect(&catalog, name, args.place.format),
    }
}

/// zen's `orch run --list-commands` / `--inspect-command NAME`, when given: looks where the
/// manifest's jobs run when there is a manifest, else in `--workspace` or the current folder.
pub fn zen_flags(
    config: &ManifestConfig,
    list_commands: bool,
    inspect_command: Option<&str>,
) -> Option<Result<String, Error>> {
    if !list_commands && inspect_command.is_none() {
        return None;
    }
    let has_manifest = config.named || Path::new(crate::manifest::DEFAULT_MANIFEST).is_file();
    let workspace = if has_manifest {
        super::load(config).map(|m| m.settings.workspace)
    } else {
        current_or(config.workspace.as_deref())
    };
    Some(workspace.and_then(|ws| {
        let catalog = slash::discover(&slash::roots_from_env(&ws));
        match inspect_command {
            Some(name) => inspect(&catalog, name, CommandsFormat::Text),
            None => Ok(list(&catalog, &ws, CommandsFormat::Text)),
        }
    }))
}

/// The folder to look in: `--workspace`, else the manifest's workspace, else the current folder.
fn workspace(place: &CommandsPlace) -> Result<PathBuf, Error> {
    match (&place.workspace, &place.manifest) {
        (None, Some(manifest)) => Ok(super::load(&ManifestConfig::of_file(manifest))?
            .settings
            .workspace),
        (ws, _) => current_or(ws.as_deref()),
    }
}

fn current_or(dir: Option<&Path>) -> Result<PathBuf, Error> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("cannot read the current folder", e))?;
    Ok(dir.map_or(cwd.clone(), |d| cwd.join(d)))
}

/// The list: discovered commands with their description and origin, then the built-ins.
pub fn list(catalog: &Catalog, workspace: &Path, format: CommandsFormat) -> String {
    let roots = slash::roots_from_env(workspace);
    let searched: Vec<PathBuf> = roots
        .project_folders()
        .into_iter()
        .map(|d| d.join(".claude"))
        .chain(roots.user_claude_dir())
        .collect();
    if format == CommandsFormat::Json {
        let commands: Vec<_> = catalog.commands.iter().map(summary).collect();
        let built_in: Vec<_> = builtin::BUILT_INS
            .iter()
            .map(|b| json!({ "name": format!("/{}", b.name), "description": b.description }))
            .collect();
        let value = json!({
            "workspace": workspace,
            "searched": searched,
            "commands": commands,
            "built_in": built_in,
            "problems": catalog.problems,
        });
        return pretty(&value);
    }
    let mut o = String::new();
    let _ = writeln!(o, "slash commands for {}", shown(workspace));
    if catalog.commands.is_empty() {
        let _ = writeln!(
            o,
            "\nno project or user commands; looked in (commands/ and skills/):"
        );
        for dir in &searched {
            let _ = writeln!(o, "  {}", shown(dir));
        }
    } else {
        let width = catalog
            .commands
            .iter()
            .map(|c| c.name.len() + 1)
            .max()
            .unwrap_or(0);
        let _ = writeln!(o);
        for c in &catalog.commands {
            let description = c.description().unwrap_or_default();
            let _ = writeln!(
                o,
                "  /{:<width$}  {:<48}  {:<13}  {}",
                c.name,
                clip(&description, 48),
                c.origin_label(),
                c.path.as_deref().map(shown).unwrap_or_default(),
                width = width - 1,
            );
        }
    }
    let _ = writeln!(
        o,
        "\nbuilt into Claude Code ({}):",
        builtin::BUILT_INS.len()
    );
    let mut line = String::from(" ");
    for b in builtin::BUILT_INS {
        if line.len() + b.name.len() + 2 > 98 {
            let _ = writeln!(o, "{line}");
            line = String::from(" ");
        }
        let _ = write!(line, " /{}", b.name);
    }
    let _ = writeln!(o, "{line}");
    problems(&mut o, catalog.problems.iter());
    o
}

/// One command in detail; an unknown name is an error with "did you mean".
pub fn inspect(catalog: &Catalog, name: &str, format: CommandsFormat) -> Result<String, Error> {
    let slashed = format!("/{}", name.strip_prefix('/').unwrap_or(name));
    let found = catalog
        .find(name)
        .ok_or_else(|| Error::UnknownSlashCommand {
            name: slashed.clone(),
            help: match catalog.suggest(name) {
                Some(s) => format!("did you mean `{s}`? `orch commands` lists them all"),
                None => "`orch commands` lists the commands Claude Code would find here".into(),
            },
        })?;
    let c = match found {
        Found::BuiltIn(b) => {
            return Ok(match format {
                CommandsFormat::Json => pretty(&json!({
                    "name": slashed, "origin": "built-in", "description": b.description,
                })),
                CommandsFormat::Text => {
                    format!(
                        "{slashed}  (built into Claude Code)\ndescription: {}\n",
                        b.description
                    )
                }
            });
        }
        Found::Discovered(c) => c,
    };
    let f = &c.frontmatter;
    let placeholders = slash::placeholders(&c.body);
    if format == CommandsFormat::Json {
        let mut value = summary(c);
        value["allowed_tools"] = json!(f.allowed_tools());
        value["model"] = json!(f.model());
        value["disable_model_invocation"] = json!(f.disable_model_invocation());
        value["frontmatter"] = json!(f);
        value["placeholders"] = json!(placeholders);
        value["body"] = json!(c.body);
        value["problems"] = json!(
            c.path
                .as_deref()
                .map(|p| catalog.problems_of(p).collect::<Vec<_>>())
        );
        return Ok(pretty(&value));
    }
    let mut o = String::new();
    let _ = writeln!(o, "{slashed}  ({} command)", c.origin_label());
    let field = |o: &mut String, key: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let _ = writeln!(o, "{key}: {v}");
        }
    };
    field(&mut o, "file", c.path.as_deref().map(shown));
    field(&mut o, "description", c.description());
    field(&mut o, "argument hint", f.argument_hint());
    field(&mut o, "allowed tools", Some(f.allowed_tools().join(", ")));
    field(&mut o, "model", f.model());
    if f.disable_model_invocation() {
        let _ = writeln!(
            o,
            "disable-model-invocation: true (only a person or orch can run it)"
        );
    }
    if !f.fields.is_empty() {
        let _ = writeln!(o, "frontmatter:");
        for (k, v) in &f.fields {
            let _ = writeln!(o, "  {k}: {}", slash::frontmatter::scalar_text(v));
        }
    }
    if placeholders.is_empty() {
        let _ = writeln!(
            o,
            "placeholders: none (arguments are appended to the prompt)"
        );
    } else {
        let _ = writeln!(o, "placeholders: {}", placeholders.join(", "));
    }
    let lines: Vec<&str> = c.body.trim_matches('\n').lines().collect();
    let _ = writeln!(o, "body ({} lines):", lines.len());
    for l in lines.iter().take(PREVIEW_LINES) {
        let _ = writeln!(o, "  │ {}", clip(l, 96));
    }
    if lines.len() > PREVIEW_LINES {
        let _ = writeln!(o, "  │ … {} more lines", lines.len() - PREVIEW_LINES);
    }
    if let Some(path) = c.path.as_deref() {
        problems(&mut o, catalog.problems_of(path));
    }
    Ok(o)
}

fn summary(c: &SlashCommand) -> serde_json::Value {
    json!({
        "name": format!("/{}", c.name),
        "description": c.description(),
        "origin": c.origin,
        "kind": c.kind,
        "path": c.path,
        "argument_hint": c.frontmatter.argument_hint(),
    })
}

fn problems<'a>(o: &mut String, problems: impl Iterator<Item = &'a slash::Problem>) {
    let mut first = true;
    for p in problems {
        if std::mem::take(&mut first) {
            let _ = writeln!(o, "\nproblems:");
        }
        let _ = writeln!(o, "  - {}: {}", shown(&p.path), p.message);
    }
}

/// A path relative to the current folder, or under `~` for the home folder.
fn shown(path: &Path) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cwd = std::env::current_dir().ok();
    if cwd.as_deref().is_some_and(|c| path.starts_with(c)) {
        return crate::report::display_path(path);
    }
    match home.as_deref().and_then(|h| path.strip_prefix(h).ok()) {
        Some(rel) => format!("~/{}", rel.display()),
        None => path.display().to_string(),
    }
}

/// At most `max` characters, the last one an ellipsis when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn pretty(value: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}
