//! zen's periodic status report, and the number formats every human reporter shares.
//!
//! Pure rendering from a [`Board`]: the time and the wall clock are parameters, so the table is
//! the same in a snapshot as on a screen. It never writes anywhere itself.

use std::time::{Duration, Instant};

use super::live::{Board, BudgetView, JobView};
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

/// Cuts a line to `max` characters, marking the cut.
pub fn clip(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
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

/// zen's status report at `now`, headed with the wall-clock time `clock` (`14:23:45`).
/// `lines` is how many latest output lines to show under each running job.
pub fn report(board: &Board, now: Instant, clock: &str, lines: usize, budgets: bool) -> String {
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
    let name_w = jobs
        .iter()
        .map(|j| j.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 30);
    let mut o = format!("╔═══ STATUS REPORT [{clock}] ═══╗\n");
    o.push_str(&format!("║ Total: {} jobs\n", jobs.len()));
    o.push_str(&format!(
        "║ Running: {running}, Completed: {completed}, Failed: {failed}, Pending: {pending}, Not run: {not_run}\n"
    ));
    o.push_str(&format!(
        "║ Tokens: {} total, {} cached | Median: {} | Tools: {tools} | Cost: {}\n",
        self::tokens(total),
        self::tokens(cached),
        self::tokens(median),
        usd(cost, estimate)
    ));
    if budgets && board.budgets.iter().any(BudgetView::is_shown) {
        o.push_str("║\n║ Budgets:\n");
        for b in board.budgets.iter().filter(|b| b.is_shown()) {
            o.push_str(&format!("║   {:<20} {}\n", b.scope, budget_bar(b, 10)));
        }
    }
    o.push_str("║\n");
    o.push_str(&format!(
        "║  {:<12} {:<name_w$}  {:>8}  {:>7}  {:>6}  {:>7}  {:>5}  {:>10}  {}\n",
        "Status", "Name", "Duration", "Tokens", "vs Med", "Cache", "Tools", "Cost", "Model"
    ));
    for j in &jobs {
        let t = j.tokens.total();
        let vs = if median == 0 || t == 0 {
            "-".to_string()
        } else {
            let pct = ((t as f64 / median as f64 - 1.0) * 100.0).round() as i64;
            format!("{pct:+}%")
        };
        o.push_str(&format!(
            "║  {:<12} {:<name_w$}  {:>8}  {:>7}  {:>6}  {:>7}  {:>5}  {:>10}  {}\n",
            format!("{} {}", symbol(j.status), j.status.as_str()),
            clip(&j.name, name_w),
            duration(j.elapsed),
            self::tokens(t),
            vs,
            self::tokens(j.tokens.cache_read),
            j.tools,
            if t == 0 && j.cost_usd == 0.0 {
                "-".to_string()
            } else {
                usd(j.cost_usd, j.is_estimate)
            },
            j.model.as_deref().unwrap_or("-")
        ));
        if j.status == Status::Running && lines > 0 {
            if let Some(step) = j.current.and_then(|s| board.steps.get(s)) {
                for line in step.tail.iter().rev().take(lines).rev() {
                    o.push_str(&format!("║      │ {}\n", clip(line, 100)));
                }
            }
        }
    }
    o.push_str("╚══════════════════════════════════════╝\n");
    o
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
