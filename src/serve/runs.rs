//! The runs page: every run of the state folders, newest first, filterable by status, period
//! and manifest, 50 to a page; and the lookup of one run by its id for the other pages.
//!
//! Owns only the page and the lookup: the listing is [`crate::history`]'s (the one `orch runs`
//! prints). A run is found by its exact id in a ledger, never by a path made of request text.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::App;
use super::layout::{self, Nav};
use crate::history::{History, HistoryError, RunEntry, RunFilter};

/// Runs on one page.
pub const PAGE: usize = 50;

#[derive(Deserialize, Default, Clone)]
pub struct Params {
    status: Option<String>,
    since: Option<String>,
    manifest: Option<String>,
    /// From 1.
    page: Option<usize>,
}

pub async fn page(State(app): State<Arc<App>>, Query(p): Query<Params>) -> Response {
    let since = match p.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match crate::duration::parse(s) {
            Ok(d) => Some(crate::duration::before(chrono::Utc::now(), d)),
            Err(_) => {
                return layout::error(
                    StatusCode::BAD_REQUEST,
                    &format!("\"{s}\" is not a period: write 7d, 24h or 90m."),
                );
            }
        },
    };
    let number = p.page.unwrap_or(1).max(1);
    let filter = RunFilter {
        since,
        status: p.status.clone().filter(|s| !s.is_empty()),
        manifest: p.manifest.clone().filter(|s| !s.is_empty()),
        limit: number * PAGE,
        offset: 0,
    };
    let found = tokio::task::spawn_blocking(move || list(&app, filter, number)).await;
    match found {
        Ok(Ok((runs, total))) => layout::page("Runs", Nav::Runs, body(&p, &runs, total, number)),
        Ok(Err(e)) => layout::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => layout::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Page `number` of the runs of every state folder, and how many there are in all. With one
/// state folder the ledger pages itself; with several, each gives its first pages and they are
/// merged.
fn list(
    app: &App,
    mut filter: RunFilter,
    number: usize,
) -> Result<(Vec<RunEntry>, u64), HistoryError> {
    let mut runs = Vec::new();
    let mut total = 0;
    if app.state_dirs.len() == 1 {
        filter.offset = (number - 1) * PAGE;
        filter.limit = PAGE;
    }
    for dir in &app.state_dirs {
        let h = History::open(dir)?;
        total += h.count(&filter)?;
        runs.extend(h.runs(&filter)?);
    }
    if app.state_dirs.len() > 1 {
        runs.sort_by_key(|r: &RunEntry| std::cmp::Reverse(r.started_at));
        runs = runs
            .into_iter()
            .skip((number - 1) * PAGE)
            .take(PAGE)
            .collect();
    }
    Ok((runs, total))
}

/// The run with this exact id, and the history of the state folder holding it.
pub fn find(app: &App, id: &str) -> Result<Option<(History, RunEntry)>, HistoryError> {
    for dir in &app.state_dirs {
        let h = History::open(dir)?;
        if let Some(run) = h.run(id)? {
            return Ok(Some((h, run)));
        }
    }
    Ok(None)
}

const STATUSES: [&str; 8] = [
    "running",
    "completed",
    "failed",
    "budget_stop",
    "interrupted",
    "rate_limited",
    "setup_error",
    "dead",
];

fn body(p: &Params, runs: &[RunEntry], total: u64, number: usize) -> Markup {
    let pages = (total as usize).div_ceil(PAGE).max(1);
    let link = |n: usize| {
        let mut q = vec![format!("page={n}")];
        for (k, v) in [
            ("status", &p.status),
            ("since", &p.since),
            ("manifest", &p.manifest),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                q.push(format!("{k}={}", encode(v)));
            }
        }
        format!("/runs?{}", q.join("&"))
    };
    html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" {
            label { "Status " select name="status" {
                option value="" { "any" }
                @for s in STATUSES { option value=(s) selected[p.status.as_deref() == Some(s)] { (s) } }
            } }
            label { "Since " input name="since" size="6" placeholder="7d" value=[p.since.as_deref()]; }
            label { "Manifest " input name="manifest" size="16" value=[p.manifest.as_deref()]; }
            button type="submit" { "Filter" }
        }
        p { (total) " run" @if total != 1 { "s" } @if pages > 1 { " · page " (number) " of " (pages) } }
        table #runs {
            thead { tr {
                th { "run" } th { "manifest" } th { "started" } th.num { "duration" } th { "status" }
                th { "steps" } th.num { "tokens" } th.num { "dollars" } th { "resumes" }
            } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={ "/runs/" (r.id) } { code { (r.id) } } }
                        td { (r.name) }
                        td { (r.started_at.format("%Y-%m-%d %H:%M:%S")) }
                        td.num { (crate::duration::format(std::time::Duration::from_secs_f64(r.duration_seconds.max(0.0)))) }
                        td { span class={ "status " (r.status) } { (r.status) } @if r.orphaned { " (orphaned)" } }
                        td { @for (s, n) in &r.steps.0 { span class={ "status " (s) } { (n) " " (s) } " " } }
                        td.num { (layout::tokens(r.total_tokens)) }
                        td.num { (layout::usd(r.usd)) }
                        td { @if let Some(f) = &r.resumed_from { a href={ "/runs/" (f) } { code { (f) } } } }
                    }
                }
            }
        }
        div.pager {
            @if number > 1 { a href=(link(number - 1)) { "← newer" } }
            @if number < pages { a href=(link(number + 1)) { "older →" } }
        }
    }
}

/// A query value, percent-encoded (everything but letters, digits and `-._~`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
