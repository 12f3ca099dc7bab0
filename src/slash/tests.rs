//! Discovery against fixture command trees built in a temporary folder.

use std::path::{Path, PathBuf};

use super::*;

/// A temporary tree: `home/` is the home folder, `home/work/app` the workspace.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home/work/app")).unwrap();
        Tree { dir }
    }

    fn file(&self, rel: &str, text: &str) -> &Tree {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn roots(&self) -> Roots {
        Roots {
            workspace: self.path("home/work/app"),
            home: Some(self.path("home")),
            config_dir: None,
        }
    }

    fn names(&self, roots: &Roots) -> Vec<(String, Origin)> {
        discover(roots)
            .commands
            .iter()
            .map(|c| (c.name.clone(), c.origin))
            .collect()
    }
}

fn named(names: &[(&str, Origin)]) -> Vec<(String, Origin)> {
    names.iter().map(|(n, o)| (n.to_string(), *o)).collect()
}

#[test]
fn subfolders_become_colon_namespaces() {
    let t = Tree::new();
    t.file(
        "home/work/app/.claude/commands/frontend/component.md",
        "Make a component",
    )
    .file(
        "home/work/app/.claude/commands/frontend/deep/nested.md",
        "x",
    )
    .file("home/work/app/.claude/commands/review-pr.md", "x")
    .file("home/work/app/.claude/commands/notes.txt", "not a command")
    .file("home/work/app/.claude/commands/.hidden.md", "skipped");
    assert_eq!(
        t.names(&t.roots()),
        named(&[
            ("frontend:component", Origin::Project),
            ("frontend:deep:nested", Origin::Project),
            ("review-pr", Origin::Project),
        ])
    );
}

#[test]
fn parent_folders_are_read_up_to_the_home_folder() {
    let t = Tree::new();
    t.file("home/work/app/.claude/commands/near.md", "x")
        .file("home/work/.claude/commands/parent.md", "x")
        .file("home/work/.claude/commands/near.md", "shadowed")
        .file(".claude/commands/beyond-home.md", "never read");
    let catalog = discover(&t.roots());
    let names: Vec<_> = catalog.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["near", "parent"]);
    assert_eq!(
        catalog.commands[0].path.as_deref(),
        Some(t.path("home/work/app/.claude/commands/near.md").as_path())
    );
    // The farther /near is reported, not listed.
    assert_eq!(catalog.problems.len(), 1);
    assert!(catalog.problems[0].message.contains("also defined in"));
}

#[test]
fn the_user_folder_is_home_claude_or_claude_config_dir() {
    let t = Tree::new();
    t.file("home/.claude/commands/ucmd.md", "x")
        .file("home/.claude/commands/tools/greet.md", "x")
        .file("config/commands/from-config.md", "x");
    assert_eq!(
        t.names(&t.roots()),
        named(&[("tools:greet", Origin::User), ("ucmd", Origin::User)])
    );
    let roots = Roots {
        config_dir: Some(t.path("config")),
        ..t.roots()
    };
    assert_eq!(t.names(&roots), named(&[("from-config", Origin::User)]));
}

#[test]
fn a_project_command_wins_over_a_user_command_of_the_same_name() {
    let t = Tree::new();
    t.file("home/work/app/.claude/commands/x.md", "project")
        .file("home/.claude/commands/x.md", "user");
    let catalog = discover(&t.roots());
    assert_eq!(catalog.commands.len(), 1);
    assert_eq!(catalog.commands[0].origin, Origin::Project);
    assert_eq!(
        catalog
            .problems_of(&t.path("home/.claude/commands/x.md"))
            .count(),
        1
    );
}

#[test]
fn broken_frontmatter_is_reported_and_the_command_kept() {
    let t = Tree::new();
    t.file(
        "home/work/app/.claude/commands/broken.md",
        "---\ndescription: \"unterminated\n---\nDo $ARGUMENTS\n",
    )
    .file(
        "home/work/app/.claude/commands/good.md",
        "---\ndescription: Good one\nargument-hint: [area]\n---\nTest $1 then $2 and $1\n",
    );
    let catalog = discover(&t.roots());
    let broken = t.path("home/work/app/.claude/commands/broken.md");
    let problems: Vec<_> = catalog.problems_of(&broken).collect();
    assert_eq!(problems.len(), 1, "{:?}", catalog.problems);
    assert!(problems[0].message.contains("not valid YAML"));
    let Some(Found::Discovered(b)) = catalog.find("/broken") else {
        panic!("broken command is still a command");
    };
    assert!(b.frontmatter.fields.is_empty());
    let Some(Found::Discovered(g)) = catalog.find("good") else {
        panic!("good is found");
    };
    assert_eq!(g.description().as_deref(), Some("Good one"));
    assert_eq!(g.frontmatter.argument_hint().as_deref(), Some("[area]"));
    assert_eq!(placeholders(&g.body), ["$1", "$2"]);
}

#[test]
fn skills_are_commands_too() {
    let t = Tree::new();
    t.file(
        "home/work/app/.claude/skills/deploy/SKILL.md",
        "---\ndescription: Ship\n---\n",
    )
    .file(
        "home/work/app/.claude/skills/deploy/helper.md",
        "not a skill of its own",
    );
    let catalog = discover(&t.roots());
    assert_eq!(catalog.commands.len(), 1);
    assert_eq!(catalog.commands[0].name, "deploy");
    assert_eq!(catalog.commands[0].origin_label(), "project skill");
}

#[test]
fn built_ins_are_found_and_discovered_commands_shadow_them() {
    let t = Tree::new();
    t.file("home/work/app/.claude/commands/review.md", "Our review");
    let catalog = discover(&t.roots());
    assert!(matches!(catalog.find("/clear"), Some(Found::BuiltIn(_))));
    assert!(matches!(
        catalog.find("/review"),
        Some(Found::Discovered(_))
    ));
    assert!(catalog.find("/nope").is_none());
    assert_eq!(catalog.suggest("/compcat").as_deref(), Some("/compact"));
    assert_eq!(catalog.suggest("/reveiw").as_deref(), Some("/review"));
}

#[test]
fn a_missing_workspace_or_home_finds_nothing_and_does_not_fail() {
    let roots = Roots {
        workspace: Path::new("/nonexistent/orch/test").into(),
        home: None,
        config_dir: None,
    };
    assert!(discover(&roots).commands.is_empty());
}

#[test]
fn placeholders_in_order_of_first_use() {
    assert_eq!(
        placeholders("Fix $ARGUMENTS; first $0, then $ARGUMENTS[1], $12, cost $ and $ARGUMENTS"),
        ["$ARGUMENTS", "$0", "$ARGUMENTS[1]", "$12"]
    );
    assert!(placeholders("no placeholders, $ alone").is_empty());
}

#[test]
fn command_names_of_prompts() {
    assert_eq!(
        command_name("/createtestsv2 frontend"),
        Some("/createtestsv2")
    );
    assert_eq!(
        command_name("/frontend:component Button"),
        Some("/frontend:component")
    );
    assert_eq!(command_name("/etc/hosts explain"), None);
    assert_eq!(command_name("explain /clear"), None);
    assert_eq!(command_name("/"), None);
}

#[test]
fn description_falls_back_to_the_first_line_of_the_body() {
    let t = Tree::new();
    t.file(
        "home/work/app/.claude/commands/plain.md",
        "\n# Tidy the imports\n\nMore.\n",
    );
    let catalog = discover(&t.roots());
    assert_eq!(
        catalog.commands[0].description().as_deref(),
        Some("Tidy the imports")
    );
}
