//! One run's page: its graph of jobs ([`super::graph`], a fan-out's instances in one box), each
//! step's status, attempts, duration, tokens, dollars and reason, each job's outputs, and each
//! step's log tail;
//! and a step's whole log, in pages.
//!
//! Owns these pages. The run comes from [`crate::history`] (its summary: `results.json` once it
//! ended, else its events folded); a log's path comes from that summary and is confined to the
//! state folder before it is opened. A log is never read whole: a tail or a page of it, each
//! line stripped of terminal escapes, with secrets masked, then HTML-escaped by the template.
//! A tail is condensed as `orch logs` shows a log (an agent's text, tool calls and results,
//! usage, its result); the whole log's pages are its lines as written.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use super::App;
use super::layout::{self, Nav};
use crate::history::{History, RunSummary, StepView};
use crate::report::history::render_log_line;
use crate::report::width::cut_bytes;

/// Bytes of a log shown as its tail on the run page.
const TAIL: u64 = 8 * 1024;
/// Bytes of a log on one page of the log view.
pub const LOG_PAGE: u64 = 64 * 1024;

/// The run and its summary, or the page saying why not.
pub fn summary(app: &App, id: &str) -> Result<(History, RunSummary), Response> {
    let not_found = || layout::error(StatusCode::NOT_FOUND, "There is no run with this id.");
    // Ids are what orch makes them: letters, digits, `-`, `.`, `_`; anything else is no run.
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(not_found());
    }
    let internal = |e: crate::history::HistoryError| {
        layout::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
    };
    let (h, run) = super::runs::find(app, id)
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let s = h.summary(&run).map_err(internal)?;
    Ok((h, s))
}

/// Builds a response off the runtime's threads (pages read files and the ledger): the
/// response, or the page saying why there is none.
async fn off_runtime(
    build: impl FnOnce() -> Result<Response, Response> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(build).await {
        Ok(Ok(r) | Err(r)) => r,
        Err(e) => layout::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub async fn page(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    off_runtime(move || {
        let (h, s) = summary(&app, &id)?;
        Ok::<_, Response>(layout::page(&s.run.id, Nav::Runs, body(&h, &s)))
    })
    .await
}

/// `GET /runs/{id}/graph`: the run's graph alone, as the page draws it (the live script fetches
/// it again when a step the page did not know starts).
pub async fn graph(State(app): State<Arc<App>>, UrlPath(id): UrlPath<String>) -> Response {
    off_runtime(move || {
        let (h, s) = summary(&app, &id)?;
        let svg = super::graph::svg(&h.graph(&s.run), &s.steps);
        Ok::<_, Response>(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
    })
    .await
}

/// A step's pages: `/runs/RUN/steps/LABEL`, the label percent-encoded. A step is named by its
/// label, not its place in the table: a run's table is in the order its events came while it
/// runs and in its results file's order once it ended, and a page loaded before the end must
/// still name the right step.
pub fn step_url(run: &str, label: &str) -> String {
    let label = percent_encoding::utf8_percent_encode(label, percent_encoding::NON_ALPHANUMERIC);
    format!("/runs/{run}/steps/{label}")
}

fn body(h: &History, s: &RunSummary) -> Markup {
    let r = &s.run;
    html! {
        h1 { "Run " code { (r.id) } }
        p {
            (r.name) " · " span #run-status class={ "status " (r.status) } { (r.status) }
            " · started " (r.started_at.format("%Y-%m-%d %H:%M:%S UTC"))
            " · " (crate::duration::format(std::time::Duration::from_secs_f64(r.duration_seconds.max(0.0))))
            " · " span #run-tokens { (layout::tokens(r.total_tokens)) } " tokens · "
            span #run-usd { (layout::usd(r.usd)) }
            @if let Some(f) = &r.resumed_from { " · resumes " a href={ "/runs/" (f) } { code { (f) } } }
        }
        h2 { "Graph" }
        div.graph #graph { (PreEscaped(super::graph::svg(&h.graph(r), &s.steps))) }
        h2 { "Steps" }
        table #steps {
            thead { tr {
                th { "step" } th { "status" } th.num { "attempts" } th.num { "duration" }
                th.num { "tokens" } th.num { "dollars" } th { "reason" } th { "log" } th { "outputs" }
            } }
            tbody {
                @for (i, st) in s.steps.iter().enumerate() {
                    tr data-step=(i) data-label=(st.label) {
                        td { (st.label) }
                        td { span class={ "status " (st.status) } { (st.status) } }
                        td.num { (st.attempts) }
                        td.num { @if let Some(d) = st.duration_seconds { (format!("{d:.1}s")) } }
                        td.num { (layout::tokens(st.total_tokens)) }
                        td.num { @if let Some(u) = st.usd { (layout::usd(u)) } }
                        td { @if let Some(why) = &st.reason { (crate::secrets::mask(why)) } }
                        td { @if st.log.is_some() { a href={ (step_url(&r.id, &st.label)) "/log" } { "whole log" } } }
                        td { @if st.outputs.is_some() { a href={ "#outputs-" (i) } { "outputs" } } }
                    }
                }
            }
        }
        @if s.steps.iter().any(|st| st.outputs.is_some()) {
            h2 { "Outputs" }
            @for (i, st) in s.steps.iter().enumerate() {
                @if let Some(o) = &st.outputs {
                    details.outputs id={ "outputs-" (i) } open {
                        summary { (st.label) }
                        pre.outputs { (outputs_text(o)) }
                    }
                }
            }
        }
        h2 { "Log tails" }
        @for (i, st) in s.steps.iter().enumerate() {
            @let (text, end) = tail(h, st);
            details open[st.status == "running" || i + 1 == s.steps.len()] {
                summary { (st.label) }
                pre.log id={ "log-" (i) } data-step=(i) data-label=(st.label) data-offset=(end) { (text) }
            }
        }
        @if s.live {
            // The stream goes on after the last event the table was drawn from, not from the
            // file's length now: an event written since is sent, not skipped.
            div #live data-run=(r.id) data-offset=(s.events_offset) {}
            script src="/assets/live.js" {}
        }
    }
}

/// A job's outputs as the page shows them: indented JSON, cut after [`TAIL`] bytes, rendered.
fn outputs_text(outputs: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(outputs).unwrap_or_default();
    if text.len() > TAIL as usize {
        text = format!("{}\n…", cut_bytes(&text, TAIL as usize));
    }
    render(&text)
}

/// The last [`TAIL`] bytes of a step's log, from a line's start, rendered; and the log's length.
fn tail(h: &History, st: &StepView) -> (String, u64) {
    let Some(path) = st.log.as_deref().and_then(|p| h.confine(p).ok()) else {
        return (String::new(), 0);
    };
    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
    let from = len.saturating_sub(TAIL);
    match read_lines(&path, from, TAIL) {
        Ok((text, _)) => (condense(&text, &mut HashSet::new()), len),
        Err(_) => (String::new(), len),
    }
}

/// Whole lines of a log as `orch logs` shows them ([`render_log_line`]): `seen` holds the
/// messages whose usage was shown already, for a follower to pass from one read to the next.
pub fn condense(text: &str, seen: &mut HashSet<String>) -> String {
    let mut out = String::with_capacity(text.len() / 2);
    for line in text.lines() {
        if let Some(shown) = render_log_line(line, seen) {
            out.push_str(&shown);
            out.push('\n');
        }
    }
    out
}

/// Whole lines of `path` from `from` (skipping a partial first line when `from` is inside a
/// line), about `max` bytes, rendered for a page; and where the next page starts.
pub fn read_lines(path: &Path, from: u64, max: u64) -> std::io::Result<(String, u64)> {
    read(path, from, max, false)
}

/// For a follower of a step that may still be writing: as [`read_lines`], but a last line
/// without its newline is left for the next read while `running`.
pub fn read_new_lines(
    path: &Path,
    from: u64,
    max: u64,
    running: bool,
) -> std::io::Result<(String, u64)> {
    read(path, from, max, running)
}

fn read(path: &Path, from: u64, max: u64, hold_partial: bool) -> std::io::Result<(String, u64)> {
    // One byte before `from` tells whether `from` starts a line.
    let at = from.saturating_sub(1);
    let skip = (from - at) as usize;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        // Created at the step's first byte: a step that wrote nothing has no log file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), from)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(at))?;
    let mut buf = Vec::new();
    f.take(max + skip as u64).read_to_end(&mut buf)?;
    if buf.len() <= skip {
        return Ok((String::new(), from));
    }
    let mut start = skip;
    if from > 0 && buf.first() != Some(&b'\n') {
        start = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i + 1);
    }
    let full = (buf.len() - skip) as u64 == max;
    let mut end = buf.len();
    if (full || hold_partial) && buf.last() != Some(&b'\n') {
        end = match memchr::memrchr(b'\n', &buf[start..]) {
            Some(i) => start + i + 1,
            // One line longer than a page is shown in pieces; a partial one waits.
            None if full => buf.len(),
            None => start,
        };
    }
    let text = render(&String::from_utf8_lossy(&buf[start..end]));
    Ok((text, at + end as u64))
}

/// Log text as the pages show it: no terminal escapes, secrets masked (HTML escaping is the
/// template's).
pub fn render(text: &str) -> String {
    crate::secrets::mask_owned(crate::report::sanitize::sanitize_block(text).into_owned())
}

#[derive(Deserialize)]
pub struct LogParams {
    offset: Option<u64>,
}

/// A page of a step's log.
pub async fn log(
    State(app): State<Arc<App>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
    Query(p): Query<LogParams>,
) -> Response {
    off_runtime(move || {
        let (h, s) = summary(&app, &id)?;
        let missing = || layout::error(StatusCode::NOT_FOUND, "This step has no log.");
        let st = s.step(&step).ok_or_else(missing)?;
        let path = st.log.as_deref().ok_or_else(missing)?;
        let path = h.confine(path).map_err(|e| layout::error(StatusCode::FORBIDDEN, &e.to_string()))?;
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(_) => return Err(missing()),
        };
        let from = p.offset.unwrap_or(0).min(len);
        let (text, next) = read_lines(&path, from, LOG_PAGE).map_err(|_| missing())?;
        let base = format!("{}/log", step_url(&s.run.id, &st.label));
        Ok::<_, Response>(layout::page(
            &st.label,
            Nav::Runs,
            html! {
                h1 { "Log of " (st.label) }
                p { a href={ "/runs/" (s.run.id) } { "← run " code { (s.run.id) } }
                    " · bytes " (from) "–" (next) " of " (len) }
                div.pager {
                    @if from > 0 { a href={ (base) "?offset=" (from.saturating_sub(LOG_PAGE)) } { "← earlier" } }
                    @if next < len { a href={ (base) "?offset=" (next) } { "later →" } }
                    @if len > LOG_PAGE { a href={ (base) "?offset=" (len - LOG_PAGE) } { "end" } }
                }
                pre.log #log { (text) }
            },
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_follows_lose_no_line_and_hold_a_partial_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("log");
        std::fs::write(&path, "one\ntwo\nthree\nfou").expect("write");
        // Pages of 6 bytes, each from where the last ended: every whole line once.
        let (mut seen, mut at) = (String::new(), 0);
        loop {
            let (text, next) = read_lines(&path, at, 6).expect("read");
            if next == at {
                break;
            }
            seen.push_str(&text);
            at = next;
        }
        assert_eq!(seen, "one\ntwo\nthree\nfou");
        // A follower from a line's start keeps that line, and waits for the partial last one.
        assert_eq!(
            read_new_lines(&path, 4, 100, true).expect("read"),
            ("two\nthree\n".to_string(), 14)
        );
        assert_eq!(read_new_lines(&path, 14, 100, true).expect("read").1, 14);
        assert_eq!(
            read_new_lines(&path, 14, 100, false).expect("read").0,
            "fou"
        );
        // From inside a line: that line's rest is skipped.
        assert_eq!(read_lines(&path, 5, 100).expect("read").0, "three\nfou");
    }
}
