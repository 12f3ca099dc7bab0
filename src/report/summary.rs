//! The final summary every human reporter ends with: one row per job (status, duration, tokens,
//! cost, model), the budgets, the run's totals, and where the results and logs are.
//!
//! It renders from the [`Results`] alone, so the summary and the results file cannot disagree.
//! It never writes anywhere itself.

use std::path::Path;

use super::display_path;
use super::results::{BudgetResult, Results};
use super::status::{clip, symbol, tokens};
use crate::events::Status;

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
            clip(name, width),
            i.duration,
            i.total_tokens,
            cost,
            i.model.as_deref().unwrap_or("-")
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
        let over = overshoot(b);
        o.push_str(&format!(
            "  budget {:<20} {}{over}\n",
            b.scope,
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
    // What the run could not write comes last but one, where the eye lands after the totals.
    for fault in &results.faults {
        o.push_str(&format!("⚠ {}\n", fault.message));
    }
    o.push_str(&format!(
        "results: {}\nlogs:    {}\n",
        display_path(path),
        display_path(&m.run_dir.join("logs"))
    ));
    o
}

/// "  over by 2212 tokens", "  over by $0.0400", or both: only the units that are over, and
/// dollars only for a scope with a dollar limit. Empty when the scope is within its limits.
fn overshoot(b: &BudgetResult) -> String {
    let mut over = Vec::new();
    if b.tokens_limit.is_some() && b.overshoot_tokens > 0 {
        over.push(format!("{} tokens", b.overshoot_tokens));
    }
    // The figure is computed from integer nano-dollars: a positive one is at least $10^-9.
    if b.usd_limit.is_some() && b.overshoot_usd > 0.0 {
        over.push(format!("${:.4}", b.overshoot_usd));
    }
    if over.is_empty() {
        String::new()
    } else {
        format!("  over by {}", over.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tokens: Option<u64>, usd: Option<f64>, over_t: u64, over_u: f64) -> BudgetResult {
        BudgetResult {
            scope: "run".into(),
            tokens_limit: tokens,
            usd_limit: usd,
            tokens_used: 0,
            usd_used: 0.0,
            overshoot_tokens: over_t,
            overshoot_usd: over_u,
        }
    }

    #[test]
    fn an_overshoot_names_only_the_units_that_are_over() {
        assert_eq!(
            overshoot(&scope(Some(6000), None, 2212, 0.0)),
            "  over by 2212 tokens"
        );
        assert_eq!(
            overshoot(&scope(Some(6000), Some(1.0), 0, 0.04)),
            "  over by $0.0400"
        );
        assert_eq!(
            overshoot(&scope(Some(6000), Some(1.0), 5, 0.04)),
            "  over by 5 tokens, $0.0400"
        );
        assert_eq!(overshoot(&scope(Some(6000), Some(1.0), 0, 0.0)), "");
    }
}
