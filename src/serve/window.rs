//! The spend page's window budgets: for each rolling-window budget the state folder's recent
//! runs were held to ([`crate::history::windows`]), what the window held at each moment of the
//! page's period, drawn against the budget's limit, with a table of the same figures.
//!
//! Owns the rolling sums and their section of the page; the spend per interval is the ledger's
//! ([`ledger::spend_over_time`]). It never writes to a ledger.

use std::time::Duration;

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use super::{chart, layout};
use crate::history::{History, HistoryError, WindowBudget};
use crate::ledger::{self, budget::Spend};

/// How many of a state folder's latest runs are read for the budgets they recorded.
const RUNS_READ: usize = 50;
/// At most this many intervals are summed over a page.
const MAX_INTERVALS: u32 = 100_000;
/// At most this many points are drawn; more intervals are drawn as the peak of each stretch.
const MAX_POINTS: usize = 750;

/// One window budget's use over the page's period.
pub struct WindowUse {
    pub budget: WindowBudget,
    /// The state folder, when the page shows several.
    pub dir: Option<String>,
    /// The spacing of the points.
    pub interval: Duration,
    /// What the window ending at each point's time held, oldest first; the last is now.
    pub points: Vec<(DateTime<Utc>, Spend)>,
}

/// The window budgets of one state folder and their use from `from` to `now`.
pub fn uses(
    history: &History,
    named: bool,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<WindowUse>, HistoryError> {
    let Some(ledger) = history.ledger() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for budget in history.window_budgets(RUNS_READ)? {
        let (interval, per_window) =
            spacing(budget.period, (now - from).to_std().unwrap_or_default());
        let start = crate::duration::before(from, budget.period);
        let spent = ledger::spend_over_time(ledger, start, interval).map_err(|e| history.sql(e))?;
        out.push(WindowUse {
            points: rolling(&spent, interval, per_window, from, now),
            interval,
            dir: named.then(|| history.state_dir.display().to_string()),
            budget,
        });
    }
    Ok(out)
}

/// The points' spacing for a window of `period` over a page of `shown`, and how many intervals
/// make up the window: an hour for windows of 5 hours and more (a point per hour), a fifth of
/// the window below; but no more than [`MAX_INTERVALS`] over the page (a window of seconds
/// over a month is then summed in intervals as long as the window).
fn spacing(period: Duration, shown: Duration) -> (Duration, u32) {
    let hours = period.as_secs().div_ceil(3600);
    let per_window = u32::try_from(hours).unwrap_or(u32::MAX).max(5);
    let interval = (period / per_window).max(Duration::from_millis(1));
    if shown / MAX_INTERVALS > interval {
        let interval = (shown / MAX_INTERVALS).max(period);
        return (interval, 1);
    }
    (interval, per_window)
}

/// The spend of the `per_window` intervals up to each interval from `from`'s to `now`'s, from
/// the spend per interval (each at its start, oldest first, only those with spend), at each
/// interval's end (the last at `now`). Linear in the points and the spend's intervals, whatever
/// the window's length: the intervals entering and leaving the window are added and taken out.
fn rolling(
    spent: &[(DateTime<Utc>, Spend)],
    interval: Duration,
    per_window: u32,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Spend)> {
    let every = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let index = |k: usize| spent[k].0.timestamp_millis().div_euclid(every);
    let (first, last) = (
        from.timestamp_millis().div_euclid(every),
        now.timestamp_millis().div_euclid(every),
    );
    let mut points = Vec::new();
    let mut sum = Spend::default();
    // `spent[leave..enter]` is what the window holds.
    let (mut leave, mut enter) = (0, 0);
    for i in first..=last {
        // Intervals at or before `out` are no longer in the window ending with interval i.
        let out = i.saturating_sub(i64::from(per_window));
        while leave < enter && index(leave) <= out {
            sum = sum.saturating_sub(spent[leave].1);
            leave += 1;
        }
        while enter < spent.len() && index(enter) <= i {
            if index(enter) > out {
                sum = sum.saturating_add(spent[enter].1);
            } else {
                // Before the window already (the window is empty up to here).
                leave = enter + 1;
            }
            enter += 1;
        }
        let end = DateTime::from_timestamp_millis((i + 1).saturating_mul(every))
            .unwrap_or(now)
            .min(now);
        points.push((end, sum));
    }
    points
}

/// The section for every window budget, or nothing when no recent run had one.
pub fn section(uses: &[WindowUse]) -> Markup {
    html! {
        @if !uses.is_empty() {
            section #window-budgets {
                @for (n, u) in uses.iter().enumerate() {
                    (one(n, u))
                }
            }
        }
    }
}

fn one(n: usize, u: &WindowUse) -> Markup {
    let b = &u.budget;
    let mut limits = Vec::new();
    if let Some(usd) = b.usd_limit {
        limits.push(layout::usd(usd));
    }
    if let Some(tokens) = b.tokens_limit {
        limits.push(format!("{} tokens", layout::tokens(tokens)));
    }
    let dollars = |s: &Spend| s.usd.dollars();
    let tokens = |s: &Spend| s.tokens as f64;
    html! {
        h2 {
            "Window budget: " (crate::duration::format(b.period)) ", " (limits.join(", "))
            @if let Some(dir) = &u.dir { " (" (dir) ")" }
        }
        @if let Some(limit) = b.usd_limit {
            div.chart id=(format!("chart-window-{n}-usd")) {
                (PreEscaped(chart::line(&series(&u.points, dollars), "dollars in the window", Some(limit), false)))
            }
        }
        @if let Some(limit) = b.tokens_limit {
            div.chart id=(format!("chart-window-{n}-tokens")) {
                (PreEscaped(chart::line(&series(&u.points, tokens), "tokens in the window", Some(limit as f64), false)))
            }
        }
        table.window id=(format!("window-{n}")) {
            thead { tr {
                th { "limit" } th.num { "now" } th.num { "peak" } th { "peak at" } th.num { "time over the limit" }
            } }
            tbody {
                @if let Some(limit) = b.usd_limit {
                    (row(u, &layout::usd(limit), limit, dollars, layout::usd))
                }
                @if let Some(limit) = b.tokens_limit {
                    (row(u, &format!("{} tokens", layout::tokens(limit)), limit as f64, tokens,
                        |v| layout::tokens(v as u64)))
                }
            }
        }
    }
}

/// One limit's line of the table: the use now, its peak and when, and how long it was over.
fn row(
    u: &WindowUse,
    limit_text: &str,
    limit: f64,
    value: impl Fn(&Spend) -> f64,
    show: impl Fn(f64) -> String,
) -> Markup {
    let now = u.points.last().map_or(0.0, |p| value(&p.1));
    // The first point of the highest use.
    let peak = u
        .points
        .iter()
        .map(|p| (p.0, value(&p.1)))
        .reduce(|best, p| if p.1 > best.1 { p } else { best });
    let over = u.points.iter().filter(|p| value(&p.1) > limit).count();
    let over_for = u.interval * u32::try_from(over).unwrap_or(u32::MAX);
    html! {
        tr {
            td { (limit_text) }
            td.num { (show(now)) }
            td.num { (peak.map(|p| show(p.1)).unwrap_or_default()) }
            td { (peak.map(|p| p.0.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()) }
            td.num { (crate::duration::format(over_for)) }
        }
    }
}

/// The points as the chart draws them: each named by its time; more than [`MAX_POINTS`] are
/// drawn as the highest of each stretch, so no peak is lost.
fn series(points: &[(DateTime<Utc>, Spend)], value: impl Fn(&Spend) -> f64) -> Vec<(String, f64)> {
    let stretch = points.len().div_ceil(MAX_POINTS).max(1);
    points
        .chunks(stretch)
        .map(|c| {
            let top = c.iter().map(|p| value(&p.1)).fold(0.0, f64::max);
            let at = c.last().map(|p| p.0).unwrap_or_default();
            (at.format("%m-%d %H:%M").to_string(), top)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Nanos;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_633_600 + hours * 3600, 0).expect("in range")
    }

    fn usd(d: u64) -> Spend {
        Spend {
            tokens: d * 10,
            usd: Nanos::from_usd(d as f64),
        }
    }

    #[test]
    fn a_window_holds_the_spend_of_its_last_intervals() {
        let month = Duration::from_secs(30 * 86_400);
        let hour = Duration::from_secs(3600);
        assert_eq!(spacing(5 * hour, month), (hour, 5));
        assert_eq!(spacing(24 * hour, month).1, 24);
        assert_eq!(spacing(hour / 2, month), (Duration::from_secs(360), 5));
        // Seconds over a month: intervals of a window each, at most 100,000 of them.
        assert_eq!(
            spacing(Duration::from_secs(2), month),
            (Duration::from_millis(25_920), 1)
        );
        // $1 at hour 0, $2 at hour 3, $4 at hour 6, a 5-hour window, seen from hour 2 to 9.
        let spent = [(at(0), usd(1)), (at(3), usd(2)), (at(6), usd(4))];
        let points = rolling(
            &spent,
            hour,
            5,
            at(2),
            at(9) + chrono::Duration::minutes(30),
        );
        let dollars: Vec<f64> = points.iter().map(|p| p.1.usd.dollars()).collect();
        // Windows ending at 3h..10h: [-2h,3h) holds 1, [-1,4) and [0,5) 1+2, [1,6) 2,
        // [2,7) and [3,8) 2+4, [4,9) and [5,10) 4.
        assert_eq!(dollars, [1.0, 3.0, 3.0, 2.0, 6.0, 6.0, 4.0, 4.0]);
        assert_eq!(points[0].0, at(3));
        // The last point is now, not the end of its interval.
        assert_eq!(
            points.last().unwrap().0,
            at(9) + chrono::Duration::minutes(30)
        );
        assert_eq!(points.last().unwrap().1.tokens, 40);
    }

    #[test]
    fn a_window_longer_than_any_orch_writes_costs_no_more_than_its_points() {
        // A results file may say anything: a window of u64::MAX seconds.
        let period = Duration::from_secs(u64::MAX);
        let (interval, per_window) = spacing(period, Duration::from_secs(30 * 86_400));
        assert_eq!(per_window, u32::MAX);
        let spent = [(at(0), usd(1)), (at(3), usd(2))];
        let points = rolling(&spent, interval, per_window, at(0), at(5));
        // A handful of points, each holding everything spent before it.
        assert!(points.len() <= 2, "{}", points.len());
        assert!(points.iter().all(|p| p.1.usd.dollars() <= 3.0));
        let (interval, per_window) = spacing(Duration::ZERO, Duration::from_secs(86_400));
        assert!(interval > Duration::ZERO && per_window >= 1);
    }

    #[test]
    fn many_points_are_drawn_as_their_peaks() {
        let points: Vec<_> = (0..2000)
            .map(|h| (at(h), usd(u64::from(h == 1234))))
            .collect();
        let drawn = series(&points, |s| s.usd.dollars());
        assert!(drawn.len() <= MAX_POINTS);
        assert_eq!(drawn.iter().filter(|p| p.1 == 1.0).count(), 1);
    }
}
