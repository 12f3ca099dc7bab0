//! The slash commands built into Claude Code, so that the plan does not warn about them.
//!
//! A static table: it never probes the installed CLI. It joins the commands Claude Code documents
//! with those Claude Code 2.1.331 listed in print mode (`slash_commands` of the `init` line in
//! `tests/fixtures/claude-code-2.1.331/`), its bundled skills included.

/// One built-in command: its name without the slash, and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltIn {
    pub name: &'static str,
    pub description: &'static str,
}

const fn b(name: &'static str, description: &'static str) -> BuiltIn {
    BuiltIn { name, description }
}

/// Claude Code's built-in commands and bundled skills, by name.
pub const BUILT_INS: &[BuiltIn] = &[
    b("add-dir", "Add working folders"),
    b("agents", "Manage subagents"),
    b("auto-mode-setup", "Set up auto mode"),
    b("autocompact", "Set automatic compaction"),
    b("batch", "Bundled skill: batch work"),
    b("bug", "Report a bug"),
    b("claude-api", "Bundled skill: the Claude API"),
    b("clear", "Clear the conversation history"),
    b("code-review", "Bundled skill: review code"),
    b("color", "Set the prompt color"),
    b(
        "compact",
        "Compact the conversation, with optional focus instructions",
    ),
    b("config", "Show or change settings"),
    b("context", "Show what fills the context window"),
    b("cost", "Show token usage and cost"),
    b("dataviz", "Bundled skill: charts and data visualisation"),
    b("debug", "Bundled skill: debug a problem"),
    b("deep-research", "Bundled skill: research in depth"),
    b("doctor", "Check the Claude Code installation"),
    b("effort", "Set the reasoning effort"),
    b("export", "Export the conversation"),
    b("fast", "Toggle fast mode"),
    b(
        "fewer-permission-prompts",
        "Bundled skill: reduce permission prompts",
    ),
    b("focus", "Focus view"),
    b("goal", "Set a goal for the session"),
    b("heapdump", "Write a heap dump"),
    b("help", "Show help"),
    b("hooks", "Manage hooks"),
    b("init", "Create a CLAUDE.md guide for the project"),
    b("insights", "Show usage insights"),
    b("list-agents", "List agents"),
    b("loop", "Bundled skill: repeat a task"),
    b("mcp", "Manage MCP servers"),
    b("memory", "Edit CLAUDE.md memory files"),
    b("model", "Choose the model"),
    b("output-style", "Choose the output style"),
    b("permissions", "Show or change permissions"),
    b("plugin-authoring", "Bundled skill: write plugins"),
    b("pr-comments", "Show pull request comments"),
    b("recap", "Recap the session"),
    b("release-notes", "Show release notes"),
    b("reload-plugins", "Reload plugins"),
    b("reload-skills", "Reload skills"),
    b("rename", "Rename the session"),
    b("review", "Review a pull request"),
    b("run", "Bundled skill: run something"),
    b("run-skill-generator", "Bundled skill: generate a skill"),
    b(
        "security-review",
        "Review pending changes for security issues",
    ),
    b("simplify", "Bundled skill: simplify code"),
    b("status", "Show account and system status"),
    b("statusline", "Set up the status line"),
    b("team-onboarding", "Onboard a team"),
    b("todos", "Show the todo list"),
    b("update-config", "Bundled skill: update configuration"),
    b("usage", "Show plan usage limits"),
    b("verify", "Bundled skill: verify work"),
    b("workflow-authoring", "Bundled skill: write workflows"),
    b("workflow-launch-exec", "Launch a workflow"),
];

/// The built-in command of this name (without the slash), if any.
pub fn find(name: &str) -> Option<&'static BuiltIn> {
    BUILT_INS.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(BUILT_INS.windows(2).all(|w| w[0].name < w[1].name));
    }

    /// Every command Claude Code 2.1.331 listed in print mode, apart from the fixture's own
    /// project and user commands and internal ones, is in the table.
    #[test]
    fn covers_what_the_real_cli_listed() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/claude-code-2.1.331"
        );
        let text = std::fs::read_to_string(format!("{dir}/text-only.jsonl")).unwrap();
        let init: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let own = [
            "frontend:component",
            "frontend:deep:nested",
            "review-pr",
            "tools:greet",
            "ucmd",
        ];
        for name in init["slash_commands"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            if own.contains(&name) || name.starts_with("__") {
                continue;
            }
            assert!(find(name).is_some(), "/{name} is missing");
        }
    }
}
