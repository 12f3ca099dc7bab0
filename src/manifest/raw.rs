//! The raw TOML manifest: every key a manifest may hold, as written, with spans.
//!
//! These types are the single source of the JSON Schema (`orch schema`) and of the TOML that
//! `orch convert` writes. Values are only type-checked here; `resolve` validates their meaning.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};

use super::node::{Node, Value};
use super::read::{FromNode, Json, Map, Reader, Sp, raw_table};

raw_table! {
    /// An orch manifest: settings, a schedule, budgets, defaults and the jobs to run.
    pub struct RawManifest as "the manifest" {
        /// The pipeline's name, shown in reports and results (default: the file's stem).
        pub name: Option<Sp<String>>,
        /// What this pipeline is for.
        pub description: Option<String>,
        /// How jobs run; every command-line flag of the same name overrides these.
        pub settings: Option<RawSettings>,
        /// When `orch run` starts the graph: once at a time, or on a cron schedule.
        pub schedule: Option<RawSchedule>,
        /// Token and dollar limits for the run, per command, and over a rolling window.
        pub budget: Option<RawBudget>,
        /// Keys inherited by every job that does not set them.
        pub defaults: Option<RawDefaults>,
        /// The jobs, by name (at most 128 characters, no NUL byte).
        pub jobs: Option<Sp<Map<RawJob>>>,
        /// How steps run on a Slurm cluster (used where `executor = "slurm"`).
        pub slurm: Option<super::slurm::RawSlurm>,
    }
}

raw_table! {
    /// `[settings]`: how jobs run.
    pub struct RawSettings as "[settings]" {
        /// Working folder of jobs, relative to the manifest's folder (default ".").
        pub workspace: Option<String>,
        /// Least time between two consecutive launches (default "5s", as in zen).
        pub startup_delay: Option<Sp<DurationText>>,
        /// Most steps running at once (default: unlimited, as in zen).
        pub max_parallel: Option<Sp<i64>>,
        /// Time limit of one step attempt (default "10000s", as in zen).
        pub timeout: Option<Sp<DurationText>>,
        /// Stop the whole run when one step fails (default false).
        pub fail_fast: Option<bool>,
        /// Where runs, logs and the ledger are kept, relative to the manifest's folder (default ".orch").
        pub state_dir: Option<String>,
        /// The Claude Code executable (default: discovered on PATH and the usual install places).
        pub claude_path: Option<String>,
        /// Hide the budget bars in the live display (zen's `disable_visuals`).
        pub disable_budget_visuals: Option<bool>,
        /// The longest rate-limit pause to wait out (default "6h"); a reset further away ends
        /// the run with status `rate_limited`.
        pub max_pause: Option<Sp<DurationText>>,
        /// How long the API must stay free of throttling (`api_retry` with 429 or 529) before
        /// the agent concurrency that throttling halved rises again by one (default "1m").
        pub throttle_quiet: Option<Sp<DurationText>>,
        /// Where steps run: "local" (the default) or "slurm" (see `[slurm]`).
        pub executor: Option<Sp<String>>,
    }
}

raw_table! {
    /// `[schedule]`: when `orch run` starts the graph.
    pub struct RawSchedule as "[schedule]" {
        /// A cron expression: 5 fields, 6 with seconds first, or @hourly/@daily/@weekly/@monthly.
        pub cron: Option<Sp<String>>,
        /// When to start: zen's --start-at forms ("2h", "30m", "1h30m", "14:30", "2am", "10:30pm"),
        /// "tomorrow 9am", or an ISO 8601 date or date-time. With `cron`, the schedule starts then.
        pub start_at: Option<Sp<String>>,
        /// The IANA time zone that `cron` and `start_at` times of day are read in, e.g.
        /// "Europe/Berlin" (default: the machine's local time).
        pub timezone: Option<Sp<String>>,
    }
}

raw_table! {
    /// `[budget]`: limits in tokens and dollars, kept apart (a token is never compared with a dollar).
    pub struct RawBudget as "[budget]" {
        /// "warn" (report thresholds, go on) or "block" (refuse and stop what would overspend).
        pub mode: Option<Sp<String>>,
        /// Tokens the whole run may spend.
        pub tokens: Option<Sp<i64>>,
        /// Dollars the whole run may spend.
        pub usd: Option<Sp<f64>>,
        /// Limits per slash command, keyed by the base command ("/createtestsv2").
        pub commands: Option<Map<RawLimit>>,
        /// A rolling limit across runs, read from the ledger.
        pub window: Option<RawWindow>,
    }
}

raw_table! {
    /// A token and/or dollar limit.
    pub struct RawLimit as "a budget limit" {
        pub tokens: Option<Sp<i64>>,
        pub usd: Option<Sp<f64>>,
    }
}

raw_table! {
    /// A rolling budget window, e.g. `{ period = "5h", usd = 20.0 }`.
    pub struct RawWindow as "[budget.window]" {
        pub period: Option<Sp<DurationText>>,
        pub tokens: Option<Sp<i64>>,
        pub usd: Option<Sp<f64>>,
    }
}

raw_table! {
    /// `[defaults]`: keys inherited by every job that does not set them.
    pub struct RawDefaults as "[defaults]" {
        pub allowed_tools: Option<Vec<String>>,
        pub permission_mode: Option<Sp<String>>,
        pub output_format: Option<Sp<String>>,
        pub model: Option<String>,
        pub max_turns: Option<Sp<i64>>,
        pub max_tokens: Option<Sp<i64>>,
        pub max_usd: Option<Sp<f64>>,
        pub timeout: Option<Sp<DurationText>>,
        pub env: Option<Map<String>>,
        pub workspace: Option<String>,
        /// Text added to the end of Claude Code's system prompt (--append-system-prompt).
        pub append_system_prompt: Option<Sp<String>>,
        /// A system prompt that replaces Claude Code's own (--system-prompt).
        pub system_prompt: Option<Sp<String>>,
        /// Claude Code tools the agent may not use, e.g. "Bash(git push *)" (--disallowedTools).
        pub disallowed_tools: Option<Vec<String>>,
        /// MCP servers (--mcp-config): a JSON file relative to the manifest, an inline table
        /// `{ mcpServers = { NAME = { command = "...", args = [...] } } }`, or an array of these.
        pub mcp_config: Option<Sp<Json>>,
        /// Use only the MCP servers of `mcp_config`, none of the user's or project's
        /// (--strict-mcp-config).
        pub strict_mcp_config: Option<bool>,
        /// More folders the agent may reach, relative to the manifest (--add-dir).
        pub add_dirs: Option<Vec<Sp<String>>>,
        /// Models to fall back to when the main one is busy, comma-separated (--fallback-model).
        pub fallback_model: Option<Sp<String>>,
        /// Claude Code settings (--settings): a JSON file relative to the manifest, or an inline
        /// table such as `{ env = { FOO = "1" } }`.
        pub settings: Option<Sp<Json>>,
        /// Subagent definitions (--agents), inline:
        /// `{ reviewer = { description = "Reviews code", prompt = "You are a reviewer" } }`.
        pub agents: Option<Sp<Json>>,
        /// The MCP tool that answers permission prompts, e.g. "mcp__perm__ask"
        /// (--permission-prompt-tool).
        pub permission_prompt_tool: Option<Sp<String>>,
        /// More Claude Code arguments, placed before the session flags. A flag orch sets itself
        /// (such as --model) is refused: use its key.
        pub extra_args: Option<Sp<Vec<Sp<String>>>>,
        /// A dotenv file relative to the manifest whose variables are added to the job's
        /// environment (`env` wins over it).
        pub env_file: Option<Sp<String>>,
        /// Names of environment variables whose values orch masks as *** in everything it
        /// writes or prints (ANTHROPIC_API_KEY, *_TOKEN, *_SECRET and *_PASSWORD always are).
        pub secrets: Option<Vec<Sp<String>>>,
        pub retry: Option<Sp<RawRetry>>,
        /// "worktree": run the job in its own git worktree on its own branch.
        pub isolation: Option<Sp<String>>,
        /// The isolated job's new branch (default "orch/<run-short-id>/<job>"); templates work.
        pub branch: Option<Sp<String>>,
        /// The commit or ref the branch starts from (default the workspace's HEAD); templates
        /// work, e.g. "${{ jobs.impl.outputs.branch }}".
        pub base: Option<Sp<String>>,
        /// Commands run with `sh -c` in the new worktree before the job's first step.
        pub setup: Option<Vec<Sp<String>>>,
        /// Commit what the isolated job left uncommitted to its branch (default true).
        pub commit: Option<bool>,
        /// When the worktree is kept: "on_failure" (default), "always" or "never"; the branch
        /// stays either way.
        pub keep: Option<Sp<String>>,
        /// Refuse to load when the workspace has uncommitted changes to tracked files.
        pub require_clean: Option<bool>,
    }
}

raw_table! {
    /// `[jobs.NAME]`: an agent job (`command` or `prompt`) or a process job (`run` or `shell`).
    pub struct RawJob as "a job" {
        /// What the job does, for people.
        pub description: Option<String>,
        /// A slash command for Claude Code, e.g. "/createtestsv2 frontend unit".
        pub command: Option<Sp<String>>,
        /// A free-text prompt for Claude Code.
        pub prompt: Option<Sp<String>>,
        /// A program and its arguments, run directly (never through a shell).
        pub run: Option<Sp<Vec<Sp<String>>>>,
        /// A script run with `sh -c`.
        pub shell: Option<Sp<String>>,
        /// Commands run first in the same Claude session, each as its own step.
        pub pre_commands: Option<Vec<Sp<String>>>,
        /// Jobs that must end before this one starts: a name (it must succeed), or
        /// `{ job = "NAME", when = "success" | "failure" | "always" }`.
        pub needs: Option<Vec<Sp<RawNeed>>>,
        /// A condition over upstream outputs and statuses, e.g.
        /// `jobs.test.status == "failed"`; false skips the job. Evaluated for each instance.
        pub condition as "if": Option<Sp<String>>,
        /// Let dependents that need this job's success run after it fails (default false); its
        /// failure then does not fail the run.
        pub continue_on_failure: Option<bool>,
        /// Static fan-out: one instance per combination of the values of each key, with
        /// `include` (extra or extended combinations) and `exclude` (combinations to drop).
        pub matrix: Option<Sp<RawMatrix>>,
        /// Dynamic fan-out: one instance per item of a JSON array from an upstream output,
        /// e.g. "${{ jobs.plan.outputs.structured.tasks }}".
        pub for_each: Option<Sp<String>>,
        /// The most instances a `matrix` or `for_each` may make (default 256).
        pub max_items: Option<Sp<i64>>,
        /// The most instances of this job running at once (default: the run's limit).
        pub max_parallel: Option<Sp<i64>>,
        /// "text" (default) or "json": parse a `run`/`shell` job's stdout as JSON into its
        /// `json` output.
        pub outputs: Option<Sp<String>>,
        /// How much of a `run`/`shell` job's stdout its `stdout` output keeps, from the end:
        /// bytes, or text like "64KiB" or "1MiB" (default "1MiB").
        pub output_limit: Option<Sp<Json>>,
        /// The JSON Schema an agent's final answer must match: an inline table, or the path
        /// of a JSON file relative to the manifest. Passed to Claude Code as `--json-schema`;
        /// the answer becomes the job's `structured` output.
        pub output_schema: Option<Sp<Json>>,
        /// Claude Code tools the agent may use (--allowedTools).
        pub allowed_tools: Option<Vec<String>>,
        /// Claude Code permission mode (default "bypassPermissions", as in zen).
        pub permission_mode: Option<Sp<String>>,
        /// "stream-json" (default) or "json"; orch always reads stream-json to count tokens.
        pub output_format: Option<Sp<String>>,
        /// Claude model alias or id (--model).
        pub model: Option<String>,
        /// The Claude session: a UUID, or a name that orch maps to a stable UUID.
        pub session_id: Option<Sp<String>>,
        /// Run /clear first, as a step of its own.
        pub clear_history: Option<bool>,
        /// Run /compact first, as a step of its own.
        pub compact_history: Option<bool>,
        /// Token limit of this job (zen's max_tokens_per_command).
        pub max_tokens: Option<Sp<i64>>,
        /// Dollar limit of this job, also passed to Claude Code as --max-budget-usd.
        pub max_usd: Option<Sp<f64>>,
        /// Most agent turns (--max-turns).
        pub max_turns: Option<Sp<i64>>,
        /// Time limit of each step attempt of this job.
        pub timeout: Option<Sp<DurationText>>,
        /// Environment variables added for this job.
        pub env: Option<Map<String>>,
        /// Working folder, relative to the manifest's folder.
        pub workspace: Option<String>,
        /// Text added to the end of Claude Code's system prompt (--append-system-prompt).
        pub append_system_prompt: Option<Sp<String>>,
        /// A system prompt that replaces Claude Code's own (--system-prompt).
        pub system_prompt: Option<Sp<String>>,
        /// Claude Code tools the agent may not use, e.g. "Bash(git push *)" (--disallowedTools).
        pub disallowed_tools: Option<Vec<String>>,
        /// MCP servers (--mcp-config): a JSON file relative to the manifest, an inline table
        /// `{ mcpServers = { NAME = { command = "...", args = [...] } } }`, or an array of these.
        pub mcp_config: Option<Sp<Json>>,
        /// Use only the MCP servers of `mcp_config`, none of the user's or project's
        /// (--strict-mcp-config).
        pub strict_mcp_config: Option<bool>,
        /// More folders the agent may reach, relative to the manifest (--add-dir).
        pub add_dirs: Option<Vec<Sp<String>>>,
        /// Models to fall back to when the main one is busy, comma-separated (--fallback-model).
        pub fallback_model: Option<Sp<String>>,
        /// Claude Code settings (--settings): a JSON file relative to the manifest, or an inline
        /// table such as `{ env = { FOO = "1" } }`.
        pub settings: Option<Sp<Json>>,
        /// Subagent definitions (--agents), inline:
        /// `{ reviewer = { description = "Reviews code", prompt = "You are a reviewer" } }`.
        pub agents: Option<Sp<Json>>,
        /// The MCP tool that answers permission prompts, e.g. "mcp__perm__ask"
        /// (--permission-prompt-tool).
        pub permission_prompt_tool: Option<Sp<String>>,
        /// More Claude Code arguments, placed before the session flags. A flag orch sets itself
        /// (such as --model) is refused: use its key.
        pub extra_args: Option<Sp<Vec<Sp<String>>>>,
        /// A dotenv file relative to the manifest whose variables are added to the job's
        /// environment (`env` wins over it).
        pub env_file: Option<Sp<String>>,
        /// Names of environment variables whose values orch masks as *** in everything it
        /// writes or prints (ANTHROPIC_API_KEY, *_TOKEN, *_SECRET and *_PASSWORD always are).
        pub secrets: Option<Vec<Sp<String>>>,
        /// What a named `session_id` means from run to run: "continue" (default: each run
        /// continues the conversation) or "fork" (each run continues a copy of it, leaving the
        /// named session as it was: `--fork-session`).
        pub session: Option<Sp<String>>,
        /// Try a failed step attempt again, e.g. `{ attempts = 3, backoff = "30s" }`.
        pub retry: Option<Sp<RawRetry>>,
        /// "worktree": run the job in its own git worktree on its own branch.
        pub isolation: Option<Sp<String>>,
        /// The isolated job's new branch (default "orch/<run-short-id>/<job>"); templates work.
        pub branch: Option<Sp<String>>,
        /// The commit or ref the branch starts from (default the workspace's HEAD); templates
        /// work, e.g. "${{ jobs.impl.outputs.branch }}".
        pub base: Option<Sp<String>>,
        /// Commands run with `sh -c` in the new worktree before the job's first step.
        pub setup: Option<Vec<Sp<String>>>,
        /// Commit what the isolated job left uncommitted to its branch (default true).
        pub commit: Option<bool>,
        /// When the worktree is kept: "on_failure" (default), "always" or "never"; the branch
        /// stays either way.
        pub keep: Option<Sp<String>>,
        /// Refuse to load when the workspace has uncommitted changes to tracked files.
        pub require_clean: Option<bool>,
        /// Where this job's steps run: "local" or "slurm" (default: `settings.executor`).
        pub executor: Option<Sp<String>>,
        /// This job's overrides of the top `[slurm]` table.
        pub slurm: Option<super::slurm::RawSlurm>,
    }
}

raw_table! {
    /// `retry = { attempts = 3, backoff = "30s", max_backoff = "10m", jitter = true, on = [...] }`.
    pub struct RawRetry as "retry" {
        /// Attempts in all, the first included (default 1: no retry; at most 100).
        pub attempts: Option<Sp<i64>>,
        /// The wait before the second attempt, doubling after each (default "30s").
        pub backoff: Option<Sp<DurationText>>,
        /// The longest wait between two attempts (default "10m").
        pub max_backoff: Option<Sp<DurationText>>,
        /// Wait a random 50–100 % of the backoff (default true).
        pub jitter: Option<bool>,
        /// Which failures are retried (default ["overloaded", "rate_limit", "api_error",
        /// "timeout", "exit"]); also "max_turns", "max_budget", "permission_denied".
        pub on: Option<Vec<Sp<String>>>,
        /// The prompt of a retry that continues the session (default "Continue where you
        /// left off.").
        pub prompt: Option<Sp<String>>,
    }
}

/// One entry of `needs`: a job name, or a table naming the job and when to run after it.
#[derive(Clone, Debug, PartialEq)]
pub enum RawNeed {
    Name(String),
    Table(RawNeedTable),
}

raw_table! {
    /// `{ job = "tests", when = "always" }`.
    pub struct RawNeedTable as "a need" {
        /// The job waited for.
        pub job: Option<Sp<String>>,
        /// "success" (default: run when it completed), "failure" (when it failed) or "always"
        /// (whenever it ended).
        pub when: Option<Sp<String>>,
    }
}

impl RawNeed {
    /// The job's name as written (empty for a table without `job`, which resolve reports).
    pub fn job(&self) -> &str {
        match self {
            RawNeed::Name(n) => n,
            RawNeed::Table(t) => t.job.as_ref().map_or("", |j| j.value.as_str()),
        }
    }
}

impl FromNode for RawNeed {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        match &node.value {
            Value::String(_) => String::from_node(node, r).map(RawNeed::Name),
            Value::Table(_) => RawNeedTable::from_node(node, r).map(RawNeed::Table),
            _ => {
                r.wrong_type(node, "a job name or a { job, when } table");
                None
            }
        }
    }
}

impl Serialize for RawNeed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawNeed::Name(n) => s.serialize_str(n),
            RawNeed::Table(t) => t.serialize(s),
        }
    }
}

impl JsonSchema for RawNeed {
    fn schema_name() -> Cow<'static, str> {
        "Need".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A job that must end first: its name (it must succeed), or { job, when }.",
            "oneOf": [ { "type": "string" }, g.subschema_for::<RawNeedTable>() ]
        })
    }
}

/// The values of one matrix key.
pub type Values = Vec<Sp<Json>>;

/// A `matrix` table: keys with arrays of values, and the `include`/`exclude` lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawMatrix {
    /// Each key with its values, in the order written.
    pub axes: Vec<(Sp<String>, Sp<Values>)>,
    pub include: Vec<Sp<Map<Json>>>,
    pub exclude: Vec<Sp<Map<Json>>>,
}

impl FromNode for RawMatrix {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        let entries = r.table(node)?;
        let mut out = RawMatrix::default();
        let mut ok = true;
        for (key, value) in entries {
            let name = Sp {
                value: key.name.clone(),
                span: key.span.clone(),
            };
            match key.name.as_str() {
                "include" | "exclude" => {
                    let list = r.field::<Vec<Sp<Map<Json>>>>(&key.name, value);
                    ok &= list.is_some();
                    let list = list.unwrap_or_default();
                    if key.name == "include" {
                        out.include = list;
                    } else {
                        out.exclude = list;
                    }
                }
                _ => match r.field::<Sp<Values>>(&key.name, value) {
                    Some(values) => out.axes.push((name, values)),
                    None => ok = false,
                },
            }
        }
        ok.then_some(out)
    }
}

impl Serialize for RawMatrix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in &self.axes {
            map.serialize_entry(&k.value, v)?;
        }
        if !self.include.is_empty() {
            map.serialize_entry("include", &self.include)?;
        }
        if !self.exclude.is_empty() {
            map.serialize_entry("exclude", &self.exclude)?;
        }
        map.end()
    }
}

impl JsonSchema for RawMatrix {
    fn schema_name() -> Cow<'static, str> {
        "Matrix".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Keys with arrays of values (one instance per combination), plus `include` (combinations to add or extend) and `exclude` (combinations to drop).",
            "type": "object",
            "properties": {
                "include": { "type": "array", "items": { "type": "object" } },
                "exclude": { "type": "array", "items": { "type": "object" } }
            },
            "additionalProperties": { "type": "array", "minItems": 1 }
        })
    }
}

/// A duration as written: text like "5s" or "1h30m", or a number of seconds.
#[derive(Clone, Debug, PartialEq)]
pub enum DurationText {
    Text(String),
    Seconds(f64),
}

impl FromNode for DurationText {
    fn from_node(node: &Node, r: &mut Reader) -> Option<Self> {
        match &node.value {
            Value::String(s) => Some(DurationText::Text(s.clone())),
            Value::Integer(i) => Some(DurationText::Seconds(*i as f64)),
            Value::Float(f) => Some(DurationText::Seconds(*f)),
            _ => {
                r.wrong_type(node, "a duration");
                None
            }
        }
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DurationText::Text(t) => s.serialize_str(t),
            DurationText::Seconds(n) if n.fract() == 0.0 => s.serialize_str(&format!("{n}s")),
            DurationText::Seconds(n) => s.serialize_str(&format!("{}ms", (n * 1000.0).round())),
        }
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number with a unit (\"500ms\", \"5s\", \"30m\", \"2h\", \"1d\", \"1h30m\") or a number of seconds; at most 36500d (100 years).",
            "oneOf": [
                { "type": "string", "pattern": "^\\s*(([0-9]+(\\.[0-9]+)?\\s*(ms|s|secs?|m|mins?|h|hrs?|d|days?)\\s*)+|[0-9]+(\\.[0-9]+)?)\\s*$" },
                { "type": "number", "minimum": 0, "maximum": 3_153_600_000u64 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    /// The schema states the maximum that `duration` enforces.
    #[test]
    fn the_duration_schema_names_the_maximum() {
        let schema = schemars::schema_for!(super::DurationText);
        let text = serde_json::to_string(&schema).expect("json");
        assert!(text.contains(crate::duration::MAX_TEXT), "{text}");
        let seconds = crate::duration::MAX.as_secs().to_string();
        assert!(text.contains(&format!("\"maximum\":{seconds}")), "{text}");
    }
}
