//! Finding command files the way Claude Code does: `.claude/commands/` (and `.claude/skills/`) in
//! the workspace and each parent folder below the home folder, then the user's folder.
//!
//! The workspace, the home folder and `CLAUDE_CONFIG_DIR` are parameters ([`Roots`]); this module
//! reads files but never the environment, and a file it cannot read or parse is a [`Problem`],
//! never an error.

use std::path::{Path, PathBuf};

use super::frontmatter::{self, Frontmatter};
use super::{Catalog, Kind, Origin, Problem, SlashCommand};

/// Deeper command trees than this are not followed (guards against symlink loops).
const MAX_DEPTH: usize = 16;

/// Where to look: the folder a job runs in, the user's home folder, and `CLAUDE_CONFIG_DIR`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Roots {
    pub workspace: PathBuf,
    pub home: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
}

impl Roots {
    /// The user's Claude folder: `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
    pub fn user_claude_dir(&self) -> Option<PathBuf> {
        self.config_dir
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".claude")))
    }

    /// The folders whose `.claude/` is read as the project's, nearest first: the workspace and
    /// its parents, stopping below the home folder (whose `.claude/` is the user's).
    pub fn project_folders(&self) -> Vec<PathBuf> {
        let start = std::path::absolute(&self.workspace).unwrap_or_else(|_| self.workspace.clone());
        let mut out = Vec::new();
        for dir in start.ancestors() {
            if self.home.as_deref() == Some(dir) {
                break;
            }
            out.push(dir.to_path_buf());
        }
        out
    }
}

/// Reads every command and skill under the roots. Earlier definitions win; a later one with the
/// same name is reported as a conflict, as Claude Code does not support one name in two places.
pub fn discover(roots: &Roots) -> Catalog {
    let mut found: Vec<(Origin, PathBuf)> = roots
        .project_folders()
        .into_iter()
        .map(|d| (Origin::Project, d.join(".claude")))
        .collect();
    if let Some(user) = roots.user_claude_dir() {
        // When the workspace is inside CLAUDE_CONFIG_DIR's parent, do not read it twice.
        found.retain(|(_, d)| d != &user);
        found.push((Origin::User, user));
    }
    let mut catalog = Catalog::default();
    for (origin, claude) in found {
        for (kind, sub) in [(Kind::Command, "commands"), (Kind::Skill, "skills")] {
            let root = claude.join(sub);
            if root.is_dir() {
                walk(&root, &root, origin, kind, 0, &mut catalog);
            }
        }
    }
    catalog
}

fn walk(root: &Path, dir: &Path, origin: Origin, kind: Kind, depth: usize, out: &mut Catalog) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            out.problems.push(Problem {
                path: dir.to_path_buf(),
                message: format!("cannot read the folder: {e}"),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            let skill = path.join("SKILL.md");
            if kind == Kind::Skill && skill.is_file() {
                add(root, &path, &skill, origin, kind, out);
            } else {
                walk(root, &path, origin, kind, depth + 1, out);
            }
        } else if kind == Kind::Command && path.extension().is_some_and(|e| e == "md") {
            add(root, &path.with_extension(""), &path, origin, kind, out);
        }
    }
}

/// Adds the command whose name is `named`'s path below `root`, with `:` between folders.
fn add(root: &Path, named: &Path, file: &Path, origin: Origin, kind: Kind, out: &mut Catalog) {
    let Ok(rel) = named.strip_prefix(root) else {
        return;
    };
    let name = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            out.problems.push(Problem {
                path: file.to_path_buf(),
                message: format!("cannot read the file: {e}"),
            });
            return;
        }
    };
    let (yaml, body) = frontmatter::split(&text);
    let front = match yaml.map(frontmatter::parse) {
        None => Frontmatter::default(),
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            // Claude Code still offers the command; only its settings are lost.
            out.problems.push(Problem {
                path: file.to_path_buf(),
                message: format!(
                    "the frontmatter is not valid YAML ({e}); the command is kept without it"
                ),
            });
            Frontmatter::default()
        }
    };
    if let Some(first) = out.commands.iter().find(|c| c.name == name) {
        out.problems.push(Problem {
            path: file.to_path_buf(),
            message: format!(
                "/{name} is also defined in {}, which wins; Claude Code does not support one command in two places",
                first.path.as_deref().unwrap_or(Path::new("?")).display()
            ),
        });
        return;
    }
    out.commands.push(SlashCommand {
        name,
        origin,
        kind,
        path: Some(file.to_path_buf()),
        frontmatter: front,
        body: body.to_string(),
    });
}
