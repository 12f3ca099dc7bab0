//! Slash commands as Claude Code finds them: discovery ([`discovery`]), frontmatter
//! ([`frontmatter`]) and the built-ins ([`builtin`]), gathered in a [`Catalog`] that answers
//! "does `/x` exist here, and what is it?".
//!
//! Owns knowledge of command files only. It never runs a command, never prints, and never fails:
//! a folder or file it cannot read is a [`Problem`] in the catalog. Only [`roots_from_env`] reads
//! the environment; everything else takes the folders as parameters.

pub mod builtin;
pub mod discovery;
pub mod frontmatter;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use builtin::BuiltIn;
pub use discovery::{Roots, discover};
pub use frontmatter::Frontmatter;

/// The roots for a workspace from this process's `HOME` and `CLAUDE_CONFIG_DIR` (an empty
/// variable counts as unset).
pub fn roots_from_env(workspace: &Path) -> Roots {
    let var = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    Roots {
        workspace: workspace.to_path_buf(),
        home: var("HOME"),
        config_dir: var("CLAUDE_CONFIG_DIR"),
    }
}

/// Where a discovered command comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `.claude/` of the workspace or one of its parents.
    Project,
    /// The user's `$CLAUDE_CONFIG_DIR` or `~/.claude`.
    User,
}

/// A command file (`commands/NAME.md`) or a skill (`skills/NAME/SKILL.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Command,
    Skill,
}

/// One discovered command.
#[derive(Clone, Debug, Serialize)]
pub struct SlashCommand {
    /// The name without the slash; folders become `:` namespaces (`frontend:component`).
    pub name: String,
    pub origin: Origin,
    pub kind: Kind,
    /// The file that defines it.
    pub path: Option<PathBuf>,
    pub frontmatter: Frontmatter,
    /// The prompt text after the frontmatter.
    pub body: String,
}

impl SlashCommand {
    /// The frontmatter's `description`, else the body's first line (as Claude Code shows it).
    pub fn description(&self) -> Option<String> {
        self.frontmatter.description().or_else(|| {
            self.body
                .lines()
                .map(|l| l.trim().trim_start_matches('#').trim())
                .find(|l| !l.is_empty())
                .map(|l| truncate(l, 100))
        })
    }

    /// `project` or `user`, with `skill` for skills.
    pub fn origin_label(&self) -> &'static str {
        match (self.origin, self.kind) {
            (Origin::Project, Kind::Command) => "project",
            (Origin::User, Kind::Command) => "user",
            (Origin::Project, Kind::Skill) => "project skill",
            (Origin::User, Kind::Skill) => "user skill",
        }
    }
}

/// Something found while discovering that a manifest author should know about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

/// Everything discovered for one workspace: commands in precedence order, and problems.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Catalog {
    pub commands: Vec<SlashCommand>,
    pub problems: Vec<Problem>,
}

/// What a name resolves to.
#[derive(Clone, Copy, Debug)]
pub enum Found<'a> {
    Discovered(&'a SlashCommand),
    BuiltIn(&'static BuiltIn),
}

impl Catalog {
    /// The command called `name` (with or without its slash): a discovered command wins over a
    /// built-in of the same name, as a project's `/review` replaces Claude Code's.
    pub fn find(&self, name: &str) -> Option<Found<'_>> {
        let name = name.strip_prefix('/').unwrap_or(name);
        self.commands
            .iter()
            .find(|c| c.name == name)
            .map(Found::Discovered)
            .or_else(|| builtin::find(name).map(Found::BuiltIn))
    }

    /// The known command closest to `name`, with its slash, when one is close enough.
    pub fn suggest(&self, name: &str) -> Option<String> {
        let name = name.strip_prefix('/').unwrap_or(name);
        let names = self
            .commands
            .iter()
            .map(|c| c.name.as_str())
            .chain(builtin::BUILT_INS.iter().map(|b| b.name));
        crate::manifest::diagnostic::did_you_mean(name, names).map(|n| format!("/{n}"))
    }

    /// The problems found in one file.
    pub fn problems_of<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = &'a Problem> + 'a {
        self.problems.iter().filter(move |p| p.path == path)
    }
}

/// The argument placeholders a command body uses, in order of first use: `$ARGUMENTS`,
/// `$ARGUMENTS[N]`, `$0`, `$1`, ...
pub fn placeholders(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &body[i + 1..];
        let len = match rest.strip_prefix("ARGUMENTS") {
            Some(after) => {
                let index = after
                    .strip_prefix('[')
                    .and_then(|a| a.find(']').map(|end| (a, end)))
                    .filter(|(a, end)| *end > 0 && a[..*end].bytes().all(|b| b.is_ascii_digit()));
                "ARGUMENTS".len() + index.map_or(0, |(_, end)| end + 2)
            }
            None => rest.bytes().take_while(u8::is_ascii_digit).count(),
        };
        if len > 0 {
            let found = &body[i..i + 1 + len];
            if !out.iter().any(|p| p == found) {
                out.push(found.to_string());
            }
        }
        i += 1 + len;
    }
    out
}

/// The base command of a prompt when it names a slash command: `/name` followed by nothing or
/// by arguments. A path such as `/etc/hosts` is not a command name.
pub fn command_name(prompt: &str) -> Option<&str> {
    let first = prompt.split_whitespace().next()?;
    let name = first.strip_prefix('/')?;
    (!name.is_empty() && !name.contains('/')).then_some(first)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
