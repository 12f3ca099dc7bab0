//! The live run page's server-sent event streams: a run's events, tailed from its events file
//! from an offset, and a step's log, tailed from an offset as condensed lines.
//!
//! Owns the tailing only. The events come through [`crate::history`]'s reader (whole lines, in
//! pages), a log through the run page's [`read_lines`](super::run::read_lines) (a page at a
//! time, never whole). A stream ends, with an `end` event, when the run has ended and everything
//! is sent; a run's `end` says its status as the ledger has it. Each event carries its end
//! offset as its id.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::App;

/// How often a file is looked at again when nothing new was there.
const POLL: Duration = Duration::from_millis(200);
/// Bytes read at once.
const CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
pub struct From {
    from: Option<u64>,
}

/// `GET /runs/{id}/events?from=OFFSET`: each event as `event: orch`, its JSON as data.
pub async fn events(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<From>,
) -> Response {
    let start = q.from.unwrap_or(0);
    let check = {
        let (app, id) = (Arc::clone(&app), id.clone());
        tokio::task::spawn_blocking(move || super::run::summary(&app, &id).map(|_| ())).await
    };
    if let Ok(Err(page)) = check {
        return page;
    }
    let s = stream::unfold((start, false), move |(offset, done)| {
        let (app, id) = (Arc::clone(&app), id.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let (app, id) = (Arc::clone(&app), id.clone());
                let page = tokio::task::spawn_blocking(move || {
                    let (h, run) = super::runs::find(&app, &id).ok()??;
                    let page = h.events(&run, offset, CHUNK).ok()?;
                    Some((page, ended(&run)))
                })
                .await
                .ok()
                .flatten();
                let (page, ended) = page?;
                if !page.events.is_empty() {
                    let next = page.next_offset;
                    let mut batch: Vec<Result<Event, Infallible>> = page
                        .events
                        .iter()
                        .map(|e| {
                            Ok(Event::default()
                                .event("orch")
                                .id(next.to_string())
                                .data(e.to_string()))
                        })
                        .collect();
                    // Ended here, not by the server closing: a closed stream is one the browser
                    // opens again (from where it first started, sending it all again).
                    if page.finished {
                        batch.push(Ok(end(ended.as_deref())));
                    }
                    return Some((stream::iter(batch), (next, page.finished)));
                }
                if let Some(status) = ended {
                    return Some((stream::iter(vec![Ok(end(Some(&status)))]), (offset, true)));
                }
                tokio::time::sleep(POLL).await;
            }
        }
    });
    sse(futures_util::StreamExt::flatten(s))
}

/// `GET /runs/{id}/steps/{label}/tail?from=OFFSET`: new lines of a step's log, condensed as the
/// run page's tail ([`condense`](super::run::condense)), as `event: log`.
pub async fn tail(
    State(app): State<Arc<App>>,
    UrlPath((id, step)): UrlPath<(String, String)>,
    Query(q): Query<From>,
) -> Response {
    let found = {
        let (app, id) = (Arc::clone(&app), id.clone());
        tokio::task::spawn_blocking(move || {
            let (h, s) = super::run::summary(&app, &id)?;
            let log = s.step(&step).and_then(|st| st.log.clone());
            let path = log.and_then(|p| h.confine(&p).ok());
            Ok::<_, Response>(path)
        })
        .await
    };
    let path = match found {
        Ok(Ok(Some(p))) => p,
        Ok(Err(page)) => return page,
        _ => {
            return super::layout::error(
                axum::http::StatusCode::NOT_FOUND,
                "This step has no log.",
            );
        }
    };
    let start = (q.from.unwrap_or(0), false, HashSet::new());
    let s = stream::unfold(start, move |(mut offset, done, mut seen)| {
        let (app, id, path) = (Arc::clone(&app), id.clone(), path.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let (app, id, path) = (Arc::clone(&app), id.clone(), path.clone());
                let read = tokio::task::spawn_blocking(move || {
                    let len = std::fs::metadata(&path).map_or(0, |m| m.len());
                    let running = super::runs::find(&app, &id)
                        .ok()
                        .flatten()
                        .is_some_and(|(_, r)| r.is_running());
                    if len <= offset {
                        return (None, running);
                    }
                    let got = super::run::read_new_lines(&path, offset, CHUNK as u64, running).ok();
                    (got.filter(|(_, next)| *next > offset), running)
                })
                .await
                .unwrap_or((None, false));
                match read {
                    (Some((text, next)), _) => {
                        let shown = super::run::condense(&text, &mut seen);
                        if shown.is_empty() {
                            // Lines that say nothing worth a line (a repeated usage).
                            offset = next;
                            continue;
                        }
                        // Whole lines; the page ends each event with its own newline.
                        let ev = Event::default()
                            .event("log")
                            .id(next.to_string())
                            .data(shown.strip_suffix('\n').unwrap_or(&shown));
                        return Some((Ok::<_, Infallible>(ev), (next, false, seen)));
                    }
                    (None, false) => {
                        return Some((
                            Ok(Event::default().event("end").data("{}")),
                            (offset, true, seen),
                        ));
                    }
                    (None, true) => tokio::time::sleep(POLL).await,
                }
            }
        }
    });
    sse(s)
}

/// How the ledger ended `run`, or `None` while it runs. The ledger records a run's end before
/// orch writes the results file and then `run_finished`, so a stream can see the run ended
/// with `run_finished` not (or never: a killed orch) in the events file.
fn ended(run: &crate::history::RunEntry) -> Option<String> {
    if run.is_running() {
        None
    } else if run.orphaned {
        Some("orphaned".into())
    } else {
        Some(run.status.clone())
    }
}

/// The stream's last event, `end`: the run's status as the ledger has it, which the page shows
/// (a page that saw no `run_finished` would otherwise stay `running`).
fn end(status: Option<&str>) -> Event {
    let data = match status {
        Some(s) => serde_json::json!({ "status": s }),
        None => serde_json::json!({}),
    };
    Event::default().event("end").data(data.to_string())
}

fn sse(s: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}
