//! The plan as `orch plan` shows it: the [`PlanView`] data (built by `commands::plan`) and its
//! renderings as text, JSON, Graphviz dot or Mermaid. Pure formatting: reads no file, no clock.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::cli::PlanFormat;
use crate::ledger::budget::Spend;
use crate::manifest::{Budget, BudgetMode, Limit};
use crate::plan::Action;

/// Everything `orch plan` shows, as data; `report::plan` renders it.
#[derive(Debug, Serialize)]
pub struct PlanView {
    pub name: String,
    pub manifest: String,
    pub workspace: String,
    pub startup_delay_ms: u128,
    pub max_parallel: Option<usize>,
    pub timeout_ms: u128,
    pub fail_fast: bool,
    pub state_dir: String,
    pub schedule: ScheduleView,
    pub budget: Budget,
    /// What the ledger holds for the window's period (when there is a window and a ledger).
    pub window_spent: Option<Spend>,
    pub steps: Vec<StepView>,
    pub warnings: Vec<String>,
}

/// A job's expected cost: the median of its past runs in the ledger.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct Forecast {
    /// `None` when the ledger has no history of the job.
    pub median_usd: Option<f64>,
    pub runs: usize,
}

#[derive(Debug, Serialize)]
pub struct ScheduleView {
    pub cron: Option<String>,
    pub start_at: Option<String>,
    /// The IANA zone of `cron` and `start_at`, or "local time".
    pub timezone: String,
    /// The instant `start_at` means now.
    pub starts: Option<DateTime<FixedOffset>>,
    /// Why `start_at` means no instant now (a date in the past).
    pub start_error: Option<String>,
    /// The next five fire times of the cron schedule (after the start time, when there is one),
    /// with the zone's offset; only the first with `once`.
    pub next: Vec<DateTime<FixedOffset>>,
    /// How long `orch run` would wait before its first run: until the start time, else until
    /// the first fire time; `None` when it would start at once.
    pub wait_ms: Option<u128>,
    /// `--once`: one run at the first fire time, then exit.
    pub once: bool,
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub id: usize,
    pub label: String,
    pub job: String,
    pub index: usize,
    pub of: usize,
    #[serde(flatten)]
    pub action: Action,
    pub argv: Vec<String>,
    /// Ids of the steps this one waits for.
    pub needs: Vec<usize>,
    /// For each of `needs`, when this step runs after it (`success` unless the manifest says).
    pub when: Vec<crate::manifest::When>,
    /// The `${{ }}` references its templates (and its job's `if`) read, as written, unrendered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Data edges: the steps whose job's outputs or status those references read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reads_from: Vec<usize>,
    /// The job's `if` condition (on its first step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Where the step sits in a fan-out: "instance 2 of 4 of `test` (matrix)", or for a
    /// `for_each` job's expansion, what it expands from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<String>,
    /// The job's retry policy in words, when it retries ("up to 3 attempts, backoff 30s ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// Earliest launch offset from the start of the run.
    pub offset_ms: u128,
    pub timeout_ms: u128,
    /// The job's own limit (on its main step).
    pub limit: Option<Limit>,
    /// The job's expected cost from the ledger (on the main step of agent jobs).
    pub forecast: Option<Forecast>,
    /// The git worktree an isolated job runs in (on its first step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeView>,
}

/// Where an isolated job runs: its worktree, its new branch and what the branch starts from.
#[derive(Clone, Debug, Serialize)]
pub struct WorktreeView {
    /// `<state_dir>/worktrees/<run>/<job>` (`<run>` is the run's short id).
    pub dir: String,
    /// The branch as the run names it (`<run>` as above), templates unrendered.
    pub branch: String,
    /// The base as written ("HEAD" by default), with the commit it names now when git knows it.
    pub base: String,
    pub setup: Vec<String>,
    pub commit: bool,
    pub keep: crate::manifest::Keep,
}

/// Milliseconds as a compact duration.
pub fn ms(ms: u128) -> String {
    crate::duration::format(Duration::from_millis(ms as u64))
}

/// The plan in `format`.
pub fn render(view: &PlanView, format: PlanFormat) -> String {
    match format {
        PlanFormat::Text => text(view),
        PlanFormat::Json => {
            let mut s = serde_json::to_string_pretty(view).expect("the view is plain data");
            s.push('\n');
            s
        }
        PlanFormat::Dot => dot(view),
        PlanFormat::Mermaid => mermaid(view),
    }
}

/// The schedule lines: none, or the start time resolved and the next five cron fire times.
fn schedule(o: &mut String, s: &ScheduleView) {
    if s.cron.is_none() && s.start_at.is_none() {
        let _ = writeln!(o, "schedule: none (runs when started)");
        return;
    }
    if let Some(text) = &s.start_at {
        let when = match (&s.starts, &s.start_error) {
            (Some(t), _) => t.format("%a %Y-%m-%d %H:%M:%S %:z").to_string(),
            (None, Some(why)) => format!("{why}; `orch run` would refuse to start"),
            (None, None) => String::new(),
        };
        let _ = writeln!(o, "schedule: start at {text:?} ({}): {when}", s.timezone);
    }
    if let Some(c) = &s.cron {
        let what = if s.once {
            "one run, then exit (--once); fire time"
        } else {
            "a service; next fire times"
        };
        let _ = writeln!(o, "schedule: cron {c:?} ({}), {what}:", s.timezone);
        for t in &s.next {
            let _ = writeln!(o, "  {}", t.format("%a %Y-%m-%d %H:%M:%S %:z"));
        }
    }
    // zen's dry run printed the wait; so does this, rounded to the second.
    if let Some(wait) = s.wait_ms {
        let secs = std::time::Duration::from_secs((wait as u64).div_ceil(1000));
        let _ = writeln!(
            o,
            "schedule: the first run would start in {}",
            crate::duration::format(secs)
        );
    }
}

fn limit(l: &Limit) -> String {
    let mut parts = Vec::new();
    if let Some(t) = l.tokens {
        parts.push(format!("{t} tokens"));
    }
    if let Some(u) = l.usd {
        parts.push(format!("${u:.2}"));
    }
    parts.join(", ")
}

fn text(v: &PlanView) -> String {
    let mut o = String::new();
    let jobs = v
        .steps
        .iter()
        .map(|s| s.job.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let _ = writeln!(
        o,
        "plan {:?} from {}: {jobs} job{}, {} step{}",
        v.name,
        v.manifest,
        if jobs == 1 { "" } else { "s" },
        v.steps.len(),
        if v.steps.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        o,
        "settings: startup_delay {}, max_parallel {}, timeout {}, fail_fast {}, workspace {}, state {}",
        ms(v.startup_delay_ms),
        v.max_parallel.map_or("unlimited".into(), |n| n.to_string()),
        ms(v.timeout_ms),
        v.fail_fast,
        v.workspace,
        v.state_dir
    );
    schedule(&mut o, &v.schedule);
    let b = &v.budget;
    let mut scopes = Vec::new();
    if b.run.is_set() {
        scopes.push(format!("run {}", limit(&b.run)));
    }
    for (cmd, l) in &b.commands {
        scopes.push(format!("{cmd} {}", limit(l)));
    }
    if let Some(w) = &b.window {
        let spent = match &v.window_spent {
            Some(s) => format!(
                " (spent in the last {}: {} tokens, ${:.4})",
                crate::duration::format(w.period),
                s.tokens,
                s.usd
            ),
            None => " (no ledger yet)".to_string(),
        };
        scopes.push(format!(
            "window {} {}{spent}",
            crate::duration::format(w.period),
            limit(&w.limit)
        ));
    }
    let mode = match b.mode {
        BudgetMode::Warn => "warn",
        BudgetMode::Block => "block",
    };
    if scopes.is_empty() {
        let _ = writeln!(o, "budget: none");
    } else {
        let _ = writeln!(o, "budget ({mode}): {}", scopes.join("; "));
    }
    let _ = writeln!(o);
    // Padded by hand: a runtime width above u16::MAX makes `format!` panic, and a label
    // counts in characters, not bytes.
    let width = v
        .steps
        .iter()
        .map(|s| s.label.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        o,
        "  {:>3}  {:>7}  {}  needs",
        "#",
        "launch",
        pad("step", width)
    );
    for s in &v.steps {
        let needs = if s.needs.is_empty() {
            "-".to_string()
        } else {
            s.needs
                .iter()
                .zip(&s.when)
                .map(|(n, w)| match w {
                    crate::manifest::When::Success => (n + 1).to_string(),
                    other => format!("{} ({})", n + 1, other.as_str()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let at = if s.needs.is_empty() {
            format!("+{}", ms(s.offset_ms))
        } else {
            "after".to_string()
        };
        let _ = writeln!(
            o,
            "  {:>3}  {at:>7}  {}  {needs}",
            s.id + 1,
            pad(&s.label, width)
        );
        if let Some(f) = &s.fan_out {
            let _ = writeln!(o, "         {f}");
        }
        if !s.argv.is_empty() {
            let _ = writeln!(o, "       $ {}", super::shell_words(&s.argv));
        }
        if let Some(c) = &s.condition {
            let _ = writeln!(o, "         if: {c}");
        }
        if let Some(r) = &s.retry {
            let _ = writeln!(o, "         retry: {r}");
        }
        if let Some(w) = &s.worktree {
            let _ = writeln!(
                o,
                "         worktree: {} (branch {} from {}; {}keep {})",
                w.dir,
                w.branch,
                w.base,
                if w.commit { "" } else { "no commit, " },
                w.keep.as_str()
            );
            for c in &w.setup {
                let _ = writeln!(o, "         setup: {c}");
            }
        }
        if !s.references.is_empty() {
            let _ = writeln!(o, "         reads: {}", s.references.join(", "));
        }
        if let Some(l) = &s.limit {
            let _ = writeln!(o, "         budget: {}", limit(l));
        }
        if let Some(f) = &s.forecast {
            let _ = match f.median_usd {
                Some(usd) => writeln!(
                    o,
                    "         forecast: ${usd:.4} (median of {} past run{})",
                    f.runs,
                    if f.runs == 1 { "" } else { "s" }
                ),
                None => writeln!(o, "         forecast: no history in the ledger"),
            };
        }
    }
    if !v.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &v.warnings {
            let _ = writeln!(o, "  - {w}");
        }
    }
    o
}

/// `text` followed by spaces up to `width` characters.
fn pad(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + width);
    out.push_str(text);
    out.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(text.chars().count()),
    ));
    out
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

fn node_text(s: &StepView) -> String {
    match &s.action {
        Action::Agent { prompt, .. } => format!("{}\\n{}", s.label, truncate(prompt, 40)),
        Action::Expand { source } => format!("{}\\nfor each of {}", s.label, truncate(source, 40)),
        Action::Exec | Action::Shell => {
            format!(
                "{}\\n{}",
                s.label,
                truncate(&super::shell_words(&s.argv), 40)
            )
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn dot(v: &PlanView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "digraph \"{}\" {{", escape(&v.name));
    let _ = writeln!(
        o,
        "  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];"
    );
    for s in &v.steps {
        let shape = if matches!(s.action, Action::Agent { .. }) {
            ", style=rounded"
        } else {
            ""
        };
        let label = escape(&node_text(s)).replace("\\\\n", "\\n");
        let _ = writeln!(o, "  s{} [label=\"{label}\"{shape}];", s.id);
    }
    for s in &v.steps {
        for (n, w) in s.needs.iter().zip(&s.when) {
            match w {
                crate::manifest::When::Success => {
                    let _ = writeln!(o, "  s{n} -> s{};", s.id);
                }
                other => {
                    let _ = writeln!(o, "  s{n} -> s{} [label=\"{}\"];", s.id, other.as_str());
                }
            }
        }
        for n in &s.reads_from {
            let _ = writeln!(o, "  s{n} -> s{} [style=dashed, label=\"data\"];", s.id);
        }
    }
    o.push_str("}\n");
    o
}

fn mermaid(v: &PlanView) -> String {
    let mut o = String::from("flowchart LR\n");
    for s in &v.steps {
        let label = node_text(s).replace("\\n", "<br/>").replace('"', "#quot;");
        let _ = writeln!(o, "  s{}[\"{label}\"]", s.id);
    }
    for s in &v.steps {
        for (n, w) in s.needs.iter().zip(&s.when) {
            match w {
                crate::manifest::When::Success => {
                    let _ = writeln!(o, "  s{n} --> s{}", s.id);
                }
                other => {
                    let _ = writeln!(o, "  s{n} -->|{}| s{}", other.as_str(), s.id);
                }
            }
        }
        for n in &s.reads_from {
            let _ = writeln!(o, "  s{n} -.->|data| s{}", s.id);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    /// `report` renders what `commands` built and never reaches back into it (the plan view
    /// types and `display_path` used to live in `commands`, an import cycle).
    #[test]
    fn report_never_imports_commands() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report");
        for entry in std::fs::read_dir(&dir).expect("src/report") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                // Spelt in two halves, so that this file does not match itself.
                let needle = ["crate::", "commands"].concat();
                assert!(
                    !text.contains(&needle),
                    "{} imports {needle}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn a_label_wider_than_u16_max_pads_without_a_panic() {
        let long = "n".repeat(70_000);
        let padded = super::pad(&long, 70_001);
        assert_eq!(padded.len(), 70_001);
        assert_eq!(super::pad("é", 3), "é  ");
    }
}
