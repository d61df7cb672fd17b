//! The operator token: on a listener bound to a non-loopback address every operator request
//! must carry it (`Authorization: Bearer <token>`, or `?token=` where a browser or an
//! `EventSource` cannot set headers); on loopback it is not needed. A missing or wrong token is
//! a 401 in the usual error shape.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Error;
use crate::error::ErrorKind;

/// When the operator listener demands the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenPolicy {
    /// Required unless the listener is bound to a loopback address (the default).
    #[default]
    Auto,
    /// Always required (tests of the token on loopback; cautious installations).
    Always,
    /// Never required. Only for loopback-only set-ups such as `aegis demo`.
    Never,
}

/// Whether a listener bound to `bound` requires the token under `policy`. An unspecified
/// address (`0.0.0.0`, `::`) is reachable from other machines, so it requires it.
pub fn token_required(policy: TokenPolicy, bound: SocketAddr) -> bool {
    match policy {
        TokenPolicy::Always => true,
        TokenPolicy::Never => false,
        TokenPolicy::Auto => !bound.ip().is_loopback(),
    }
}

/// Middleware state: the token requests must carry.
#[derive(Debug, Clone)]
pub struct RequiredToken(pub Arc<str>);

/// Rejects requests without the right token.
pub async fn require_token(
    State(token): State<RequiredToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = bearer(&request).or_else(|| query_token(&request));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), token.0.as_bytes()) => next.run(request).await,
        Some(_) => unauthorized(
            "the operator token is wrong; use the token in <data dir>/keys/token (shown in the server log when it was created)",
        ),
        None => unauthorized(
            "this server needs the operator token: send `Authorization: Bearer <token>` (or `?token=<token>`) with the token in <data dir>/keys/token",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    Error::new(ErrorKind::Unauthorized, "unauthorized", message).into_response()
}

fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| v.to_string())
    })
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_anything_else_does() {
        let on = |s: &str| token_required(TokenPolicy::Auto, s.parse().unwrap());
        assert!(!on("127.0.0.1:3000"));
        assert!(!on("127.0.0.2:3000"));
        assert!(!on("[::1]:3000"));
        assert!(on("0.0.0.0:3000"));
        assert!(on("[::]:3000"));
        assert!(on("192.168.1.10:3000"));
        let lo: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert!(token_required(TokenPolicy::Always, lo));
        assert!(!token_required(
            TokenPolicy::Never,
            "0.0.0.0:1".parse().unwrap()
        ));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
