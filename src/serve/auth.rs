//! The token check: with a token configured, every request must carry it — as
//! `Authorization: Bearer TOKEN`, as the `orch_token` cookie, or as `?token=TOKEN`, which also
//! sets the cookie so that the page's links, its stylesheet and its event streams carry it.
//!
//! Owns nothing else: it never looks at what is asked for, and answers 401 with no detail.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

const COOKIE: &str = "orch_token";

/// `routes`, answering 401 to every request without `token`.
pub fn guard(routes: Router, token: String) -> Router {
    routes.layer(middleware::from_fn_with_state(Arc::new(token), check))
}

async fn check(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|c| same(c, &token));
    let query = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|p| p.strip_prefix("token="))
        .find(|t| same(t, &token))
        .is_some();
    let allowed = bearer.is_some_and(|b| same(b, &token)) || cookie.is_some() || query;
    if !allowed {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is needed: open the dashboard's address with ?token=TOKEN\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if query
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            token.as_str()
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Compares in time that depends on the lengths only, not on where the texts differ.
fn same(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_compares_whole_texts() {
        assert!(super::same("abc", "abc"));
        assert!(!super::same("abd", "abc"));
        assert!(!super::same("ab", "abc"));
        assert!(!super::same("", "abc"));
    }
}
