//! The schedule page: each cron service's schedule, next fire times and last results, from the
//! records the services keep in `<state>/services/` ([`crate::report::service_file`]).
//!
//! Owns only the page. A record whose process is gone (a service killed with SIGKILL) is shown
//! as stopped, never removed: the dashboard is read-only.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::App;
use super::layout::{self, Nav};
use crate::report::service_file;

pub async fn page(State(app): State<Arc<App>>) -> Response {
    let dirs = app.state_dirs.clone();
    let records = tokio::task::spawn_blocking(move || {
        dirs.iter()
            .flat_map(|d| service_file::read_all(d))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    layout::page(
        "Schedule",
        Nav::Schedule,
        html! {
            h1 { "Schedule" }
            @if records.is_empty() {
                p.empty { "No cron service has run from these state folders. Start one with "
                    code { "orch run" } " on a manifest with a " code { "[schedule] cron" } "." }
            }
            @for (r, alive) in &records {
                section.service {
                    h2 { (r.name) " " span class=(if *alive { "status running" } else { "status cancelled" }) {
                        @if *alive { "running" } @else { "stopped" } } }
                    p { code { (r.cron) } " in " (r.zone) " · pid " (r.pid) " · since "
                        (r.started_at.format("%Y-%m-%d %H:%M:%S UTC")) " · " (r.manifest.display()) }
                    h3 { "Next fire times" }
                    @if *alive {
                        ul.fires { @for at in &r.next { li { (at.format("%Y-%m-%d %H:%M:%S %:z")) } } }
                    } @else {
                        p { "None: the service is not running." }
                    }
                    h3 { "Last results" }
                    @if r.last.is_empty() { p { "No fire time has come yet." } }
                    @else {
                        table {
                            thead { tr { th { "fire time" } th { "result" } th.num { "seconds" } } }
                            tbody { @for o in &r.last { tr {
                                td { (o.at.format("%Y-%m-%d %H:%M:%S UTC")) }
                                @match (&o.exit_code, &o.skipped) {
                                    (Some(0), _) => td { span.status.completed { "exit 0" } },
                                    (Some(c), _) => td { span.status.failed { "exit " (c) } },
                                    (None, Some(why)) => td { span.status.skipped { "skipped" } " " (why) },
                                    (None, None) => td { "?" },
                                }
                                td.num { @if let Some(s) = o.seconds { (format!("{s:.1}")) } }
                            } } }
                        }
                    }
                }
            }
        },
    )
}
