//! Run history as text: the `orch runs` table (80 columns), the `orch show` summary, and a step
//! log rendered for people ([`render_log_line`]: assistant text, tool calls and results
//! condensed, usage lines). Everything shown is masked for secrets and has its terminal escapes
//! neutralised here; nothing here reads files.

use crate::history::{RunEntry, RunSummary};
use crate::report::width::{clip, left, right};

/// One run's steps in a few characters: done of all, and failures (`3/4 ✘1`).
fn steps_cell(run: &RunEntry) -> String {
    let s = &run.steps;
    let done = s.get("completed");
    match s.failures() {
        0 => format!("{done}/{}", s.total()),
        f => format!("{done}/{} ✘{f}", s.total()),
    }
}

/// A count of tokens in at most 6 columns (`812`, `2.8K`, `14.1M`).
pub fn tokens(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A duration in at most 5 columns (`4.2s`, `12m`, `3h05`, `2d`).
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    match s {
        s if s < 60.0 => format!("{s:.1}s"),
        s if s < 3600.0 => format!("{}m", (s / 60.0) as u64),
        s if s < 86_400.0 => format!(
            "{}h{:02}",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
        s => format!("{}d", (s / 86_400.0) as u64),
    }
}

/// The short form of a run id: its random part (unique enough to name it in `orch show`).
pub fn short_id(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(_, r)| r)
}

fn status_cell(run: &RunEntry) -> &str {
    if run.orphaned {
        "orphaned"
    } else {
        &run.status
    }
}

/// The `orch runs` table: one line per run, at most 80 columns.
pub fn runs_table(runs: &[RunEntry], total: u64) -> String {
    if runs.is_empty() {
        return "no runs\n".into();
    }
    let mut o = format!(
        "{} {} {} {} {} {} {} {} {}\n",
        left("ID", 8),
        left("MANIFEST", 9),
        left("STARTED", 11),
        right("TIME", 5),
        left("STATUS", 11),
        right("STEPS", 8),
        right("TOKENS", 6),
        right("COST", 6),
        "FROM"
    );
    for r in runs {
        let started = r.started_at.with_timezone(&chrono::Local);
        let line = format!(
            "{} {} {} {} {} {} {} {} {}",
            left(short_id(&r.id), 8),
            left(&r.name, 9),
            started.format("%m-%d %H:%M"),
            right(&duration(r.duration_seconds), 5),
            left(status_cell(r), 11),
            right(&steps_cell(r), 8),
            right(&tokens(r.total_tokens), 6),
            right(&format!("${:.3}", r.usd), 6),
            r.resumed_from.as_deref().map(short_id).unwrap_or("-"),
        );
        o.push_str(line.trim_end());
        o.push('\n');
    }
    if total > runs.len() as u64 {
        o.push_str(&format!(
            "{} of {total} runs (--limit, --offset for more)\n",
            runs.len()
        ));
    }
    clean(o)
}

/// The `orch show` text: the run, then one line per step.
pub fn summary(s: &RunSummary) -> String {
    let r = &s.run;
    let mut o = format!("run {} ({}, {})\n", r.id, r.name, r.manifest.display());
    let mut facts = vec![
        status_cell(r).to_string(),
        format!("started {}", r.started_at.format("%Y-%m-%d %H:%M:%S UTC")),
        duration(r.duration_seconds),
        format!("{} tokens", r.total_tokens),
        format!("${:.4}", r.usd),
    ];
    if let Some(from) = &r.resumed_from {
        facts.push(format!("resumed from {from}"));
    }
    o.push_str(&facts.join(" · "));
    o.push('\n');
    if s.live {
        o.push_str("live: as its events stand now\n");
    }
    o.push('\n');
    o.push_str(&format!(
        "  {} {} {} {} {}\n",
        left("STATUS", 15),
        left("STEP", 28),
        right("TIME", 7),
        right("TOKENS", 7),
        right("COST", 9)
    ));
    for st in &s.steps {
        let cost = st.usd.map_or("-".into(), |u| format!("${u:.4}"));
        let time = st.duration_seconds.map_or("-".into(), duration);
        o.push_str(&format!(
            "  {} {} {} {} {}\n",
            left(&st.status, 15),
            left(&st.label, 28),
            right(&time, 7),
            right(&tokens(st.total_tokens), 7),
            right(&cost, 9),
        ));
        if let Some(reason) = st.reason.as_deref().filter(|r| !r.is_empty()) {
            if st.status != "completed" {
                o.push_str(&format!("  {:15} {}\n", "", clip(reason, 60)));
            }
        }
    }
    if let Some(planned) = s.planned_steps.filter(|n| *n > s.steps.len()) {
        o.push_str(&format!(
            "  ... {} more steps not started\n",
            planned - s.steps.len()
        ));
    }
    if let Some(file) = &s.results_file {
        o.push_str(&format!("\nresults: {}\n", file.display()));
    }
    clean(o)
}

/// Secrets masked and terminal escapes neutralised, as everywhere orch shows text.
fn clean(text: String) -> String {
    let masked = crate::secrets::mask_owned(text);
    crate::report::sanitize::sanitize_block(&masked).into_owned()
}

/// One line of a step's log as people read it: an agent's stream-json condensed (its text, `→`
/// tool calls, `←` tool results, usage and the result), any other line as it is. `None` for a
/// line that says nothing worth a line (a repeated usage). Masked and neutralised.
pub fn render_log_line(
    line: &str,
    seen_messages: &mut std::collections::HashSet<String>,
) -> Option<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return Some(clean(line.to_string()));
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut out: Vec<String> = Vec::new();
    match v["type"].as_str().unwrap_or_default() {
        "system" if v["subtype"] == "init" => out.push(format!(
            "· session {} ({})",
            text(&v["session_id"]),
            text(&v["model"])
        )),
        "assistant" | "user" => {
            for c in v["message"]["content"].as_array().into_iter().flatten() {
                match c["type"].as_str().unwrap_or_default() {
                    "text" => out.push(text(&c["text"])),
                    "tool_use" => out.push(format!(
                        "→ {} {}",
                        text(&c["name"]),
                        clip(&c["input"].to_string(), 100)
                    )),
                    "tool_result" => {
                        let body = match &c["content"] {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let mark = if c["is_error"] == true {
                            "← error:"
                        } else {
                            "←"
                        };
                        out.push(format!("{mark} {}", clip(&body.replace('\n', " ⏎ "), 100)));
                    }
                    _ => {}
                }
            }
            let id = text(&v["message"]["id"]);
            let u = &v["message"]["usage"];
            if u.is_object() && !id.is_empty() && seen_messages.insert(id) {
                out.push(format!("  usage: {}", usage_line(u)));
            }
        }
        "result" => out.push(format!(
            "= result {}: {} turns, ${:.4}, {}",
            text(&v["subtype"]),
            v["num_turns"].as_u64().unwrap_or(0),
            v["total_cost_usd"].as_f64().unwrap_or(0.0),
            usage_line(&v["usage"])
        )),
        _ => return Some(clean(line.to_string())),
    }
    (!out.is_empty()).then(|| clean(out.join("\n")))
}

fn usage_line(u: &serde_json::Value) -> String {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    format!(
        "in {} out {} cache read {} write {}",
        n("input_tokens"),
        n("output_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens")
    )
}
