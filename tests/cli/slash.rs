//! `orch commands`, `orch commands inspect`, zen's `--list-commands` / `--inspect-command`, the
//! plan's unknown-command check, completions and the man page, against fixture command trees.
//!
//! The workspace is `home/work/app` inside the test folder, so the parent-folder lookup stops at
//! the test's own home folder and never sees the machine's.

use super::harness::{Test, redact};

/// A command tree: project commands in the workspace, one in its parent, user commands in
/// `~/.claude/commands`, and one file with broken frontmatter.
fn tree() -> Test {
    Test::new()
        .file(
            "home/work/app/.claude/commands/frontend/component.md",
            "---\ndescription: Make a React component\nargument-hint: [name] [props]\n\
             allowed-tools: Read, Write\nmodel: sonnet\ncategory: ui\n---\n\
             Create a component called $1 with props $2.\nFollow $ARGUMENTS.\n",
        )
        .file(
            "home/work/app/.claude/commands/frontend/deep/nested.md",
            "Deeply nested\n",
        )
        .file(
            "home/work/app/.claude/commands/createtestsv2.md",
            "---\ndescription: Create comprehensive test suites\n---\nWrite tests for $ARGUMENTS\n",
        )
        .file(
            "home/work/app/.claude/commands/broken.md",
            "---\ndescription: \"never closed\n---\nStill a command\n",
        )
        .file(
            "home/work/.claude/commands/from-parent.md",
            "# From the parent folder\n",
        )
        .file("home/.claude/commands/ucmd.md", "A user command\n")
        .file("home/.claude/commands/tools/greet.md", "Greet $0\n")
}

const MANIFEST: &str = r#"name = "slashy"

[settings]
workspace = "app"

[jobs.ok]
command = "/createtestsv2 frontend"
pre_commands = ["/compact", "/from-parent"]

[jobs.typo]
command = "/frontend:componnet Button"

[jobs.user]
command = "/tools:greet world"

[jobs.broken]
command = "/broken now"

[jobs.unknown]
command = "/xyzzy"

[jobs.text]
prompt = "/etc/hosts: explain this file"

[jobs.lint]
run = ["true"]
"#;

#[test]
fn lists_project_parent_and_user_commands_with_namespaces() {
    let t = tree().args(&["commands", "--workspace", "home/work/app"]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact(&out.stdout, &t));
}

#[test]
fn a_manifest_points_at_where_its_jobs_run() {
    let t = tree().file("home/work/orch.toml", MANIFEST).args(&[
        "commands",
        "--manifest",
        "home/work/orch.toml",
        "--format",
        "json",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "/broken",
            "/createtestsv2",
            "/frontend:component",
            "/frontend:deep:nested",
            "/from-parent",
            "/tools:greet",
            "/ucmd"
        ]
    );
    assert_eq!(v["commands"][5]["origin"], "user");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1);
    assert!(
        v["built_in"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == "/compact")
    );
}

#[test]
fn inspect_shows_file_frontmatter_hint_placeholders_and_body() {
    let t = tree().args(&[
        "commands",
        "inspect",
        "/frontend:component",
        "--workspace",
        "home/work/app",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(redact(&out.stdout, &t));
}

#[test]
fn inspect_of_an_unknown_command_suggests_the_closest() {
    let t = tree().args(&[
        "commands",
        "inspect",
        "/createtests",
        "--workspace",
        "home/work/app",
    ]);
    let out = t.run();
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("orch::commands::unknown"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `/createtestsv2`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn broken_frontmatter_is_reported_not_fatal() {
    let t = tree().args(&[
        "commands",
        "inspect",
        "broken",
        "--workspace",
        "home/work/app",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Still a command"), "{}", out.stdout);
    assert!(out.stdout.contains("problems:"), "{}", out.stdout);
    assert!(out.stdout.contains("not valid YAML"), "{}", out.stdout);
}

#[test]
fn claude_config_dir_replaces_the_home_folder() {
    let t = tree()
        .file("config/commands/from-config.md", "x\n")
        .env("CLAUDE_CONFIG_DIR", "config")
        .args(&[
            "commands",
            "--workspace",
            "home/work/app",
            "--format",
            "json",
        ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("/from-config"), "{}", out.stdout);
    assert!(!out.stdout.contains("/ucmd"), "{}", out.stdout);
}

#[test]
fn zen_flags_on_run_list_and_inspect() {
    let t = tree().file("home/work/orch.toml", MANIFEST);
    let list = t
        .with_args(&["run", "--config", "home/work/orch.toml", "--list-commands"])
        .output()
        .unwrap();
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("/frontend:deep:nested"));
    let inspect = t
        .with_args(&[
            "run",
            "home/work/orch.toml",
            "--inspect-command",
            "/createtestsv2",
        ])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("Create comprehensive test suites"), "{text}");
    assert!(text.contains("placeholders: $ARGUMENTS"), "{text}");
}

#[test]
fn plan_warns_about_unknown_commands_with_did_you_mean() {
    let t = tree().file("home/work/orch.toml", MANIFEST).args(&[
        "plan",
        "home/work/orch.toml",
        "--simulate",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| *l != "warnings:")
        .filter(|l| l.contains("slash command") || l.contains("/broken"))
        .collect();
    insta::assert_snapshot!(warnings.join("\n"));
}

#[test]
fn plan_strict_makes_unknown_commands_an_error() {
    let t = tree().file("home/work/orch.toml", MANIFEST).args(&[
        "plan",
        "home/work/orch.toml",
        "--simulate",
        "--strict",
    ]);
    let out = t.run();
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("orch::plan::unknown_command"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("/frontend:componnet"), "{}", out.stderr);
    assert!(out.stderr.contains("/xyzzy"), "{}", out.stderr);
    assert!(out.stdout.is_empty());

    // Without unknown commands, --strict plans as usual.
    let fixed = MANIFEST
        .replace("componnet", "component")
        .replace("command = \"/xyzzy\"", "command = \"/ucmd\"");
    let t = tree().file("home/work/orch.toml", &fixed).args(&[
        "plan",
        "home/work/orch.toml",
        "--simulate",
        "--strict",
    ]);
    let out = t.run();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definitions() {
    let t = Test::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = t.with_args(&["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("orch"), "{shell}");
        assert!(
            text.contains("max-parallel"),
            "{shell}: flags are completed"
        );
    }
    let man = t.with_args(&["man"]).output().unwrap();
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH orch 1"),
        "{page}"
    );
    assert!(page.contains("commands"), "subcommands are listed");
    let plan = t.with_args(&["man", "plan"]).output().unwrap();
    assert!(String::from_utf8_lossy(&plan.stdout).contains(".TH orch-plan 1"));
    let none = t.with_args(&["man", "nope"]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
}
