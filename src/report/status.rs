//! zen's periodic status report, and the number formats every human reporter shares.
//!
//! Pure rendering from a [`Board`]: the time and the wall clock are parameters, so the table is
//! the same in a snapshot as on a screen. It never writes anywhere itself.

use std::time::{Duration, Instant};

use super::live::{Board, BudgetView, JobView};
use super::table::{Column, Layout};
use super::width::clip;
use crate::events::Status;

/// zen's token figures: `800`, `8.5K`, `1.2M`.
pub fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}K", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// A duration as `42.1s`, `3m05s` or `1h02m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Dollars with four decimals; `~` marks an estimate.
pub fn usd(x: f64, estimate: bool) -> String {
    format!("${x:.4}{}", if estimate { "~" } else { "" })
}

/// Like [`usd`], but "price unknown" when the estimate met a model without a price (a
/// made-up $0.0000 would read as free).
pub fn usd_or_unknown(x: f64, estimate: bool, price_unknown: bool) -> String {
    if price_unknown {
        "price unknown".into()
    } else {
        usd(x, estimate)
    }
}

/// A status as a symbol, the same in every reporter.
pub fn symbol(status: Status) -> &'static str {
    match status {
        Status::Completed => "✔",
        Status::Failed | Status::TimedOut | Status::BudgetExceeded => "✘",
        Status::Skipped | Status::Blocked | Status::Cancelled => "↷",
        Status::Running => "▶",
        Status::Pending => "…",
    }
}

/// The median of the jobs' token totals, counting only jobs that used any (zen's "Median").
pub fn median_tokens(jobs: &[JobView]) -> u64 {
    let mut t: Vec<u64> = jobs
        .iter()
        .map(|j| j.tokens.total())
        .filter(|&t| t > 0)
        .collect();
    t.sort_unstable();
    match t.len() {
        0 => 0,
        n if n % 2 == 1 => t[n / 2],
        n => (t[n / 2 - 1] + t[n / 2]) / 2,
    }
}

/// A text budget bar: `[██████░░░░] 60% 30.0K/50.0K tokens, $1.20/$2.00`.
pub fn budget_bar(b: &BudgetView, width: usize) -> String {
    let fill = b.fill();
    let cells = ((fill.min(1.0) * width as f64).round() as usize).min(width);
    let mut parts = Vec::new();
    if let Some(l) = b.tokens_limit {
        parts.push(format!("{}/{} tokens", tokens(b.tokens_used), tokens(l)));
    }
    if let Some(l) = b.usd_limit {
        parts.push(format!("${:.2}/${l:.2}", b.usd_used));
    }
    format!(
        "[{}{}] {:>3.0}% {}",
        "█".repeat(cells),
        "░".repeat(width - cells),
        fill * 100.0,
        parts.join(", ")
    )
}

/// The width zen's status table fits when no terminal says otherwise.
pub const WIDTH: usize = 80;

/// zen's status report at `now`, headed with the wall-clock time `clock` (`14:23:45`), fitted
/// to `width` columns. `lines` is how many latest output lines to show under each running job.
///
/// When the job table is wider than `width`, it gives way in this order: model names lose
/// their `claude-` prefix and date; job names are cut, down to 10 columns; then the vs Med,
/// Cache, Model and Tools columns are dropped in that order; then every line is cut.
pub fn report(
    board: &Board,
    now: Instant,
    clock: &str,
    lines: usize,
    budgets: bool,
    width: usize,
) -> String {
    let jobs = board.job_views(now);
    let (running, completed, failed, pending, not_run) = Board::job_counts(&jobs);
    let median = median_tokens(&jobs);
    let (mut total, mut cached, mut tools, mut cost, mut estimate) = (0, 0, 0, 0.0, false);
    for j in &jobs {
        total += j.tokens.total();
        cached += j.tokens.cache_read;
        tools += j.tools;
        cost += j.cost_usd;
        estimate |= j.is_estimate;
    }
    let mut o = Vec::new();
    o.push(format!("╔═══ STATUS REPORT [{clock}] ═══╗"));
    o.push(format!(
        "║ Total: {}",
        super::summary::plural(jobs.len(), "job")
    ));
    o.push(format!(
        "║ Running: {running}, Completed: {completed}, Failed: {failed}, Pending: {pending}, Not run: {not_run}"
    ));
    o.push(format!(
        "║ Tokens: {} total, {} cached | Median: {} | Tools: {tools} | Cost: {}",
        self::tokens(total),
        self::tokens(cached),
        self::tokens(median),
        usd(cost, estimate)
    ));
    if budgets && board.budgets.iter().any(BudgetView::is_shown) {
        o.push("║".into());
        o.push("║ Budgets:".into());
        let scope_w = board
            .budgets
            .iter()
            .filter(|b| b.is_shown())
            .map(|b| super::width::width(&b.scope))
            .max()
            .unwrap_or(0)
            .min(20);
        for b in board.budgets.iter().filter(|b| b.is_shown()) {
            o.push(format!(
                "║   {} {}",
                super::width::left(&b.scope, scope_w),
                budget_bar(b, 10)
            ));
        }
    }
    o.push("║".into());
    let cells = |f: &dyn Fn(&JobView) -> String| jobs.iter().map(f).collect::<Vec<_>>();
    let vs = |j: &JobView| {
        let t = j.tokens.total();
        if median == 0 || t == 0 {
            "-".to_string()
        } else {
            let pct = ((t as f64 / median as f64 - 1.0) * 100.0).round() as i64;
            format!("{pct:+}%")
        }
    };
    let cols = |model: &dyn Fn(&JobView) -> String| {
        vec![
            Column::new(
                "Status",
                cells(&|j| format!("{} {}", symbol(j.status), j.status.as_str())),
                false,
            ),
            Column::new("Name", cells(&|j| j.name.clone()), false).shrink(10),
            Column::new("Duration", cells(&|j| duration(j.elapsed)), true),
            Column::new("Tokens", cells(&|j| self::tokens(j.tokens.total())), true),
            Column::new("vs Med", cells(&vs), true).droppable(1),
            Column::new("Cache", cells(&|j| self::tokens(j.tokens.cache_read)), true).droppable(2),
            Column::new("Tools", cells(&|j| j.tools.to_string()), true).droppable(4),
            Column::new(
                "Cost",
                cells(&|j| {
                    if j.tokens.total() == 0 && j.cost_usd == 0.0 {
                        "-".to_string()
                    } else {
                        usd_or_unknown(j.cost_usd, j.is_estimate, j.price_unknown)
                    }
                }),
                true,
            ),
            Column::new("Model", cells(model), false).droppable(3),
        ]
    };
    const INDENT: usize = 3;
    let full = |j: &JobView| j.model.clone().unwrap_or_else(|| "-".into());
    let mut table = cols(&full);
    let mut layout = Layout::fit(&table, width, INDENT, 2);
    if !layout.is_whole(&table) || layout.width() + INDENT > width {
        table = cols(&|j| super::width::short_model(&full(j)));
        layout = Layout::fit(&table, width, INDENT, 2);
    }
    let headers: Vec<&str> = table.iter().map(|c| c.header.as_str()).collect();
    o.push(format!("║  {}", layout.row(&table, &headers, &|_, s| s)));
    for (r, j) in jobs.iter().enumerate() {
        let row: Vec<&str> = table.iter().map(|c| c.cells[r].as_str()).collect();
        o.push(format!("║  {}", layout.row(&table, &row, &|_, s| s)));
        if j.status == Status::Running && lines > 0 {
            if let Some(step) = j.current.and_then(|s| board.steps.get(s)) {
                for line in step.tail.iter().rev().take(lines).rev() {
                    o.push(format!("║      │ {line}"));
                }
            }
        }
    }
    o.push("╚══════════════════════════════════════╝".into());
    let mut text = String::new();
    for line in o {
        text.push_str(&clip(&line, width));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zen_number_formats() {
        assert_eq!(tokens(800), "800");
        assert_eq!(tokens(8_500), "8.5K");
        assert_eq!(tokens(1_250_000), "1.2M");
        assert_eq!(duration(Duration::from_millis(45_200)), "45.2s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn a_budget_bar_fills_with_its_fullest_limit() {
        let b = BudgetView {
            scope: "run".into(),
            kind: crate::ledger::budget::ScopeKind::Run,
            tokens_used: 80_000,
            usd_used: 1.0,
            tokens_limit: Some(100_000),
            usd_limit: Some(5.0),
        };
        assert_eq!(
            budget_bar(&b, 10),
            "[████████░░]  80% 80.0K/100.0K tokens, $1.00/$5.00"
        );
    }
}
