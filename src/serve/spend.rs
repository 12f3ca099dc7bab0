//! The spend page: dollars and tokens per day over a period, each window budget's use over it
//! ([`super::window`]), and spend by model, by command and by job, from the ledger of each state
//! folder (added together). Each chart has its table, so the figures read without JavaScript and
//! without the pictures.
//!
//! Owns only the page: the sums are the ledger's own report ([`crate::ledger::spend`], the
//! one `orch ledger` prints); it never writes to a ledger.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{NaiveDate, Utc};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::layout::{self, Nav};
use super::window::{self, WindowUse};
use super::{App, chart};
use crate::history::History;
use crate::ledger::{self, GroupBy, SpendRow};

#[derive(Deserialize)]
pub struct Params {
    /// The period: "30d", "7d", "24h".
    since: Option<String>,
}

pub async fn page(State(app): State<Arc<App>>, Query(p): Query<Params>) -> Response {
    let since_text = p.since.unwrap_or_else(|| "30d".into());
    let Ok(period) = crate::duration::parse(&since_text) else {
        return layout::error(
            StatusCode::BAD_REQUEST,
            &format!("\"{since_text}\" is not a period: write 30d, 7d, 24h or 90m."),
        );
    };
    let app2 = Arc::clone(&app);
    let found = tokio::task::spawn_blocking(move || sums(&app2, period)).await;
    let sums = match found {
        Ok(Ok(s)) => s,
        Ok(Err((dir, e))) => return layout::ledger_error(&dir, e),
        Err(e) => return layout::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    layout::page("Spend", Nav::Spend, body(&since_text, &sums))
}

/// The report's rows by each grouping, all ledgers added together.
struct Sums {
    day: Vec<SpendRow>,
    model: Vec<SpendRow>,
    command: Vec<SpendRow>,
    job: Vec<SpendRow>,
    windows: Vec<WindowUse>,
}

/// The state folder whose ledger could not be read, and why.
type Failure = (std::path::PathBuf, String);

fn sums(app: &App, period: std::time::Duration) -> Result<Sums, Failure> {
    let now = Utc::now();
    let from = crate::duration::before(now, period);
    let mut windows = Vec::new();
    let mut all: [BTreeMap<String, SpendRow>; 4] = Default::default();
    let groups = [GroupBy::Day, GroupBy::Model, GroupBy::Command, GroupBy::Job];
    for dir in &app.state_dirs {
        let fail = |e: String| (dir.clone(), e);
        let history = History::open(dir).map_err(|e| fail(e.to_string()))?;
        let Some(l) = history.ledger() else {
            continue;
        };
        for (by, into) in groups.iter().zip(all.iter_mut()) {
            for row in ledger::spend(l, from, *by).map_err(|e| fail(e.to_string()))? {
                add(into, row);
            }
        }
        let named = app.state_dirs.len() > 1;
        windows.extend(window::uses(&history, named, from, now).map_err(|e| fail(e.to_string()))?);
    }
    let [day, model, command, job] = all.map(|m| {
        let mut rows: Vec<SpendRow> = m.into_values().collect();
        rows.sort_by(|a, b| b.usd_nanos.cmp(&a.usd_nanos).then(a.key.cmp(&b.key)));
        rows
    });
    Ok(Sums {
        day,
        model,
        command,
        job,
        windows,
    })
}

fn add(into: &mut BTreeMap<String, SpendRow>, row: SpendRow) {
    match into.get_mut(&row.key) {
        None => {
            into.insert(row.key.clone(), row);
        }
        Some(s) => {
            s.runs += row.runs;
            s.input_tokens += row.input_tokens;
            s.output_tokens += row.output_tokens;
            s.cache_read_tokens += row.cache_read_tokens;
            s.cache_creation_tokens += row.cache_creation_tokens;
            s.total_tokens += row.total_tokens;
            s.usd_nanos = s.usd_nanos.saturating_add(row.usd_nanos);
            s.usd = ledger::Nanos(s.usd_nanos).dollars();
            s.estimated |= row.estimated;
        }
    }
}

/// Every day from the first with spend to today, those without spend at zero.
fn every_day(rows: &[SpendRow]) -> Vec<(NaiveDate, &SpendRow)> {
    let mut dated: Vec<(NaiveDate, &SpendRow)> = rows
        .iter()
        .filter_map(|r| Some((NaiveDate::parse_from_str(&r.key, "%Y-%m-%d").ok()?, r)))
        .collect();
    dated.sort_by_key(|d| d.0);
    dated
}

fn body(since: &str, s: &Sums) -> Markup {
    let dated = every_day(&s.day);
    let days: Vec<NaiveDate> = match (dated.first(), dated.last()) {
        (Some(first), Some(last)) => first
            .0
            .iter_days()
            .take_while(|d| *d <= last.0.max(Utc::now().date_naive()))
            .collect(),
        _ => Vec::new(),
    };
    let of = |d: &NaiveDate| dated.iter().find(|x| x.0 == *d).map(|x| x.1);
    let usd: Vec<(NaiveDate, f64)> = days
        .iter()
        .map(|d| (*d, of(d).map_or(0.0, |r| r.usd)))
        .collect();
    let tokens: Vec<(NaiveDate, f64)> = days
        .iter()
        .map(|d| (*d, of(d).map_or(0.0, |r| r.total_tokens as f64)))
        .collect();
    html! {
        h1 { "Spend" }
        form.filters method="get" action="/spend" {
            label { "Period " input name="since" value=(since) size="6"; }
            button type="submit" { "Show" }
        }
        @if days.is_empty() {
            p.empty { "Nothing was spent in the last " (since) "." }
        } @else {
            section #per-day {
                h2 { "Dollars per day" }
                div.chart #chart-usd { (PreEscaped(chart::daily(&usd, "dollars", None))) }
                h2 { "Tokens per day" }
                div.chart #chart-tokens { (PreEscaped(chart::daily(&tokens, "tokens", None))) }
                (table("Day", &days.iter().filter_map(of).cloned().collect::<Vec<_>>()))
            }
            (window::section(&s.windows))
            (grouped("by-model", "By model", &s.model))
            (grouped("by-command", "By command", &s.command))
            (grouped("by-job", "By job", &s.job))
        }
    }
}

fn grouped(id: &str, title: &str, rows: &[SpendRow]) -> Markup {
    let bars: Vec<(String, f64)> = rows
        .iter()
        .take(20)
        .map(|r| (r.key.clone(), r.usd))
        .collect();
    html! {
        section id=(id) {
            h2 { (title) }
            div.chart { (PreEscaped(chart::bars(&bars, "dollars"))) }
            (table(title.trim_start_matches("By ").trim(), rows))
        }
    }
}

fn table(key: &str, rows: &[SpendRow]) -> Markup {
    html! {
        table {
            thead { tr {
                th { (key) } th.num { "runs" } th.num { "input" } th.num { "output" }
                th.num { "cache read" } th.num { "cache write" } th.num { "tokens" } th.num { "dollars" }
            } }
            tbody {
                @for r in rows {
                    tr {
                        td { (r.key) }
                        td.num { (r.runs) }
                        td.num { (layout::tokens(r.input_tokens)) }
                        td.num { (layout::tokens(r.output_tokens)) }
                        td.num { (layout::tokens(r.cache_read_tokens)) }
                        td.num { (layout::tokens(r.cache_creation_tokens)) }
                        td.num { (layout::tokens(r.total_tokens)) }
                        td.num { (layout::usd(r.usd)) @if r.estimated { " (est.)" } }
                    }
                }
            }
        }
    }
}
