//! The final summary every human reporter ends with: one row per job (status, duration, tokens,
//! cost, model), the budgets, the run's totals, and where the results and logs are.
//!
//! It renders from the [`Results`] alone, so the summary and the results file cannot disagree.
//! It never writes anywhere itself.

use std::path::Path;

use super::display_path;
use super::results::{BudgetResult, Results};
use super::sanitize::sanitize;
use super::status::{symbol, tokens};
use super::table::{Column, Layout};
use super::width::{self, clip, clip_start, short_model, wrap};
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

/// The closing summary of a run whose results were written to `path`, fitted to `width`
/// columns (`None` off a terminal: nothing is cut).
///
/// When the job table is wider than `width`, it gives way in this order (the book's
/// "80 columns" lists the same): model names lose their `claude-` prefix and snapshot date;
/// job names are cut, down to 12 columns; the model column is dropped; the status word is
/// dropped, leaving its symbol; then every line is cut. Budget lines and paths are cut,
/// the totals line is wrapped at spaces.
pub fn render(results: &Results, path: &Path, paint: Paint, width: Option<usize>) -> String {
    let max = width.unwrap_or(usize::MAX / 4);
    let rows = &results.instances.0;
    let status: Vec<String> = rows
        .iter()
        .map(|(_, i)| format!("{} {}", symbol(i.status), i.status.as_str()))
        .collect();
    let model: Vec<String> = rows
        .iter()
        .map(|(_, i)| sanitize(i.model.as_deref().unwrap_or("-")).into_owned())
        .collect();
    let cols = |status: Vec<String>, model: Vec<String>| {
        vec![
            Column::new("status", status, false),
            Column::new(
                "job",
                rows.iter().map(|(n, _)| sanitize(n).into_owned()).collect(),
                false,
            )
            .shrink(12),
            Column::new(
                "duration",
                rows.iter().map(|(_, i)| i.duration.clone()).collect(),
                true,
            ),
            Column::new(
                "tokens",
                rows.iter()
                    .map(|(_, i)| i.total_tokens.to_string())
                    .collect(),
                true,
            ),
            Column::new(
                "cost",
                rows.iter()
                    .map(|(_, i)| match i.total_cost_usd {
                        _ if i.price_unknown => "price unknown".into(),
                        Some(c) => format!("${c:.4}{}", if i.cost_is_estimate { "~" } else { "" }),
                        None => "-".into(),
                    })
                    .collect(),
                true,
            ),
            Column::new("model", model, false).droppable(1),
        ]
    };
    let fits = |c: &[Column], l: &Layout| l.is_whole(c) && l.width() + INDENT <= max;
    let mut table = cols(status.clone(), model.clone());
    let mut layout = Layout::fit(&table, max, INDENT, GAP);
    if !fits(&table, &layout) {
        let short = model.iter().map(|m| short_model(m)).collect();
        table = cols(status.clone(), short);
        layout = Layout::fit(&table, max, INDENT, GAP);
    }
    if layout.width() + INDENT > max {
        let symbols = rows.iter().map(|(_, i)| symbol(i.status).to_string());
        table = cols(
            symbols.collect(),
            model.iter().map(|m| short_model(m)).collect(),
        );
        layout = Layout::fit(&table, max, INDENT, GAP);
    }
    let pad = " ".repeat(INDENT);
    let headers: Vec<&str> = table.iter().map(|c| c.header.as_str()).collect();
    let mut o = format!(
        "\n{}\n",
        clip(
            &format!("{pad}{}", layout.row(&table, &headers, &|_, s| s)),
            max
        )
    );
    for (r, (_, i)) in rows.iter().enumerate() {
        let cells: Vec<&str> = table
            .iter()
            .map(|c| c.cells.get(r).map_or("", String::as_str))
            .collect();
        let line = layout.row(&table, &cells, &|_, s| s);
        // Colour goes on after cutting, so escape codes never count as columns.
        let line = clip(&format!("{pad}{line}"), max);
        let status_w = layout.kept.first().map_or(0, |&(_, w)| w);
        let (head, tail) = split_at_width(&line, INDENT + status_w);
        o.push_str(&format!(
            "{pad}{}{tail}\n",
            paint.status(i.status, head.trim_start_matches(' '))
        ));
    }
    let scope_w = results
        .budgets
        .iter()
        .map(|b| width::width(&sanitize(&b.scope)))
        .max()
        .unwrap_or(0)
        .min(20);
    for b in &results.budgets {
        let mut parts = Vec::new();
        if let Some(l) = b.tokens_limit {
            parts.push(format!("{}/{l} tokens", b.tokens_used));
        }
        if let Some(l) = b.usd_limit {
            parts.push(format!("${:.4}/${l:.2}", b.usd_used));
        }
        let over = overshoot(b);
        let line = format!(
            "{pad}budget {} {}{over}",
            width::left(&sanitize(&b.scope), scope_w),
            parts.join(", ")
        );
        o.push_str(&clip(&line, max));
        o.push('\n');
    }
    let m = &results.metadata;
    let t = &m.token_usage;
    let totals = format!(
        "{} completed, {} failed, {} not run of {} in {:.2}s; {} tokens ({}, {:.1}% cache hits), ${:.4}{}",
        results.completed,
        results.failed,
        results.skipped,
        plural(results.total_instances, "job"),
        m.duration_seconds,
        t.total_tokens,
        tokens(t.total_tokens),
        t.cache_hit_rate,
        t.total_cost_usd,
        if results.instances.0.iter().any(|(_, i)| i.price_unknown) {
            " (includes estimates; some prices unknown)"
        } else if t.cost_is_estimate {
            " (includes estimates)"
        } else {
            ""
        },
    );
    o.push('\n');
    for line in wrap(&totals, max) {
        o.push_str(&line);
        o.push('\n');
    }
    // What the run could not write comes last but one, where the eye lands after the totals.
    for fault in &results.faults {
        for line in wrap(&format!("⚠ {}", fault.message), max) {
            o.push_str(&line);
            o.push('\n');
        }
    }
    let results_line = display_path(path).to_string();
    let logs_line = display_path(&m.run_dir.join("logs")).to_string();
    o.push_str(&format!(
        "results: {}\nlogs:    {}\n",
        clip_start(&results_line, max.saturating_sub(9)),
        clip_start(&logs_line, max.saturating_sub(9))
    ));
    // Text of the results (reasons, models, paths) may quote a secret: masked here, once.
    crate::secrets::mask_owned(o)
}

/// Columns before the first column of the job table.
const INDENT: usize = 2;
/// Columns between two columns of the job table.
const GAP: usize = 2;

/// `n job`/`n jobs`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `s` split where `w` columns have been taken.
fn split_at_width(s: &str, w: usize) -> (&str, &str) {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        if used >= w {
            return (&s[..i], &s[i..]);
        }
        used += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
    }
    (s, "")
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
            period_seconds: None,
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
