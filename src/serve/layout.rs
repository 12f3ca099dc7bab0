//! The frame every page shares (title, navigation, stylesheet), the error pages, and the few
//! formats the pages use for figures.
//!
//! Owns how a page looks, never what it shows: each page module hands it its body.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Runs,
    Spend,
    Schedule,
}

/// A whole page.
pub fn page(title: &str, nav: Nav, body: Markup) -> Response {
    let entry = |n: Nav, href: &str, text: &str| {
        html! { a href=(href) class=[(n == nav).then_some("current")] { (text) } }
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · orch" }
                    link rel="stylesheet" href="/assets/style.css";
                }
                body {
                    nav {
                        span.brand { "orch" }
                        (entry(Nav::Runs, "/runs", "Runs"))
                        (entry(Nav::Spend, "/spend", "Spend"))
                        (entry(Nav::Schedule, "/schedule", "Schedule"))
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

/// A page saying what went wrong, with its status.
pub fn error(status: StatusCode, message: &str) -> Response {
    let mut r = page(
        status.canonical_reason().unwrap_or("error"),
        Nav::Runs,
        html! { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p { (message) } },
    );
    *r.status_mut() = status;
    r
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "There is nothing at this address.")
}

/// A ledger that cannot be read, as a page (the dashboard goes on serving the others).
pub fn ledger_error(dir: &std::path::Path, e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("The ledger of {} cannot be read: {e}", dir.display()),
    )
}

/// Dollars as people read them: two decimals, four below a cent.
pub fn usd(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// `text` HTML-escaped, for markup written by hand (the SVG drawings).
pub fn escape(text: &str) -> String {
    maud::html! { (text) }.into_string()
}

/// Tokens with thousands separated: 1 234 567.
pub fn tokens(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn figures_read_well() {
        assert_eq!(super::tokens(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(super::tokens(999), "999");
        assert_eq!(super::usd(1.234), "$1.23");
        assert_eq!(super::usd(0.00123), "$0.0012");
        assert_eq!(super::usd(0.0), "$0.00");
    }
}
