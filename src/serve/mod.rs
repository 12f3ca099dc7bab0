//! `orch serve`: a local web dashboard over one or more state folders — the runs, one run's
//! graph and logs (live over server-sent events while it runs), spend and the schedule.
//!
//! Owns the HTTP server, its routes and the token check. It is read-only: it never writes to a
//! state folder, never starts or stops a run, and never builds a path from request text — a
//! run is found by its id among the runs the history knows, a step by its number, and every
//! file it opens is confined to its state folder ([`crate::history`]). Pages are rendered on
//! the server (maud, which escapes every value; charts as SVG), so the tables work without
//! JavaScript; one small embedded script makes the run page live. No asset comes from the
//! network.

// A handler's error is the page that says what went wrong (an axum `Response`, 128 bytes):
// built once per request, never on a hot path.
#![allow(clippy::result_large_err)]

mod assets;
mod auth;
mod chart;
mod graph;
mod layout;
mod live;
mod run;
mod runs;
mod schedule;
mod spend;
mod window;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::cli::ServeArgs;
use crate::errors::Error;

/// `orch serve` with every flag checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    /// Absolute state folders, in the order given.
    pub state_dirs: Vec<PathBuf>,
    /// The token every request must carry; required when `bind` is not a loopback address.
    pub token: Option<String>,
}

impl ServeConfig {
    pub fn from_args(a: ServeArgs) -> Result<ServeConfig, Error> {
        let bind: SocketAddr = a.bind.parse().map_err(|e| Error::BadFlag {
            flag: "--bind",
            value: a.bind.clone(),
            reason: format!("it is not an address and port ({e})"),
            help: "give an IP address and a port: 127.0.0.1:8765, [::1]:8765, 0.0.0.0:8080".into(),
        })?;
        let token = match (a.token, &a.token_file) {
            (Some(t), _) => Some(t),
            (None, Some(file)) => Some(read_token_file(file)?),
            (None, None) => None,
        };
        if let Some(t) = &token
            && t.trim().is_empty()
        {
            return Err(Error::BadFlag {
                flag: if a.token_file.is_some() {
                    "--token-file"
                } else {
                    "--token"
                },
                value: String::new(),
                reason: "the token is empty".into(),
                help: "use a long random token: `openssl rand -hex 32`".into(),
            });
        }
        if token.is_none() && !bind.ip().is_loopback() {
            return Err(Error::BadFlag {
                flag: "--bind",
                value: a.bind,
                reason: "it is not a loopback address, and no token was given".into(),
                help: "pass --token TOKEN or --token-file FILE (every request must then carry \
                       it), or bind to 127.0.0.1"
                    .into(),
            });
        }
        let dirs = if a.state_dirs.is_empty() {
            vec![PathBuf::from(".orch")]
        } else {
            a.state_dirs
        };
        let state_dirs = dirs
            .iter()
            .map(|d| crate::config::absolute_state_dir(d))
            .collect::<Result<_, _>>()?;
        Ok(ServeConfig {
            bind,
            state_dirs,
            token: token.map(|t| t.trim().to_string()),
        })
    }
}

fn read_token_file(file: &std::path::Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("cannot read the token file {}", file.display()), e))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// What every handler sees.
pub struct App {
    pub state_dirs: Vec<PathBuf>,
}

/// The dashboard's routes, behind the token check when there is a token.
pub fn router(config: &ServeConfig) -> Router {
    let app = Arc::new(App {
        state_dirs: config.state_dirs.clone(),
    });
    let routes = Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/runs") }))
        .route("/runs", get(runs::page))
        .route("/runs/{id}", get(run::page))
        .route("/runs/{id}/events", get(live::events))
        .route("/runs/{id}/graph", get(run::graph))
        .route("/runs/{id}/steps/{step}/log", get(run::log))
        .route("/runs/{id}/steps/{step}/tail", get(live::tail))
        .route("/spend", get(spend::page))
        .route("/schedule", get(schedule::page))
        .route("/assets/{name}", get(assets::asset))
        .fallback(layout::not_found)
        .with_state(app);
    match &config.token {
        Some(token) => auth::guard(routes, token.clone()),
        None => routes,
    }
}

/// Serves until SIGINT or SIGTERM. Prints the address it listens on (one line, for people and
/// for tests waiting for it).
pub fn run(config: ServeConfig) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {}", config.bind), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the bound address", e))?;
        crate::report::emit(&format!("orch serve: listening on http://{local}/\n"));
        axum::serve(listener, router(&config))
            .with_graceful_shutdown(stopped())
            .await
            .map_err(|e| Error::io("the dashboard's server failed", e))
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
