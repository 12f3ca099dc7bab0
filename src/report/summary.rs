//! The final summary every human reporter ends with: one row per job (status, duration, tokens,
//! cost, model), the budgets, the run's totals, and where the results and logs are.
//!
//! It renders from the [`Results`] alone, so the summary and the results file cannot disagree.
//! It never writes anywhere itself.

use std::path::Path;

use super::results::Results;
use super::sanitize::sanitize;
use super::status::{clip, symbol, tokens};
use crate::commands::display_path;
use crate::plan::Status;

/// Colours for the status column, or none.
#[derive(Clone, Copy, Debug)]
pub struct Paint(pub bool);

impl Paint {
    fn status(self, status: Status, text: &str) -> String {
        if !self.0 {
            return text.to_string();
        }
        let style = match status {
            Status::Completed => console::Style::new().green(),
            Status::Failed | Status::TimedOut | Status::BudgetExceeded => {
                console::Style::new().red()
            }
            _ => console::Style::new().yellow(),
        };
        style.force_styling(true).apply_to(text).to_string()
    }
}

/// The closing summary of a run whose results were written to `path`.
pub fn render(results: &Results, path: &Path, paint: Paint) -> String {
    let width = results
        .instances
        .0
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, 40);
    let mut o = format!(
        "\n  {:<18} {:<width$} {:>10} {:>10} {:>12}  {}\n",
        "status", "job", "duration", "tokens", "cost", "model"
    );
    for (name, i) in &results.instances.0 {
        let cost = match i.total_cost_usd {
            Some(c) => format!("${c:.4}{}", if i.cost_is_estimate { "~" } else { "" }),
            None => "-".into(),
        };
        let status = format!(
            "{:<18}",
            format!("{} {}", symbol(i.status), i.status.as_str())
        );
        o.push_str(&format!(
            "  {} {:<width$} {:>10} {:>10} {:>12}  {}\n",
            paint.status(i.status, &status),
            clip(&sanitize(name), width),
            i.duration,
            i.total_tokens,
            cost,
            sanitize(i.model.as_deref().unwrap_or("-"))
        ));
    }
    for b in &results.budgets {
        let mut parts = Vec::new();
        if let Some(l) = b.tokens_limit {
            parts.push(format!("{}/{l} tokens", b.tokens_used));
        }
        if let Some(l) = b.usd_limit {
            parts.push(format!("${:.4}/${l:.2}", b.usd_used));
        }
        let over = if b.overshoot_tokens > 0 || b.overshoot_usd > 0.0 {
            format!(
                "  over by {} tokens, ${:.4}",
                b.overshoot_tokens, b.overshoot_usd
            )
        } else {
            String::new()
        };
        o.push_str(&format!(
            "  budget {:<20} {}{over}\n",
            sanitize(&b.scope),
            parts.join(", ")
        ));
    }
    let m = &results.metadata;
    let t = &m.token_usage;
    o.push_str(&format!(
        "\n{} completed, {} failed, {} not run of {} jobs in {:.2}s; {} tokens ({}, {:.1}% cache hits), ${:.4}{}\n",
        results.completed,
        results.failed,
        results.skipped,
        results.total_instances,
        m.duration_seconds,
        t.total_tokens,
        tokens(t.total_tokens),
        t.cache_hit_rate,
        t.total_cost_usd,
        if t.cost_is_estimate { " (includes estimates)" } else { "" },
    ));
    o.push_str(&format!(
        "results: {}\nlogs:    {}\n",
        display_path(path),
        display_path(&m.run_dir.join("logs"))
    ));
    o
}
