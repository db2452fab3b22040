//! The operator credential that guards the dashboard and `/metrics` (`serve
//! --admin-token-file`).
//!
//! HTTP Basic (any user name, the token as the password) or `Authorization: Bearer <token>`.
//! Basic rather than a login form with a session cookie: the pages are read-only GETs, so
//! there is no session to keep, expire or protect against cross-site requests, and every
//! client an operator uses speaks it as it is (a browser's own prompt, `curl -u`, Prometheus'
//! `basic_auth` or `authorization` scrape settings). Over anything but loopback it needs TLS
//! (`--tls-cert`) or a TLS reverse proxy, like the agents' tokens.

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::app::AppState;
use super::error::AppError;

/// The SHA-256 of the operator token: all the server keeps in memory.
#[derive(Clone)]
pub(crate) struct Operator {
    hash: [u8; 32],
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Operator(..)")
    }
}

impl Operator {
    pub(crate) fn new(token: &str) -> Operator {
        Operator { hash: Sha256::digest(token.trim().as_bytes()).into() }
    }

    fn admits(&self, presented: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        aws_lc_rs::constant_time::verify_slices_are_equal(&hash, &self.hash).is_ok()
    }
}

/// The token presented in `Authorization`, Basic (the password) or Bearer.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(b64) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// Ok when no operator credential is configured or the request carries it; 401 otherwise.
pub(crate) fn check(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(operator) = state.operator() else { return Ok(()) };
    match presented(headers) {
        Some(token) if operator.admits(&token) => Ok(()),
        Some(_) => Err(AppError::OperatorRequired("wrong operator credential".into())),
        None => Err(AppError::OperatorRequired("operators only: log in with the operator token (HTTP Basic, any user name)".into())),
    }
}

/// Whether the request carries the operator credential (false when none is configured).
pub(crate) fn is_operator(state: &AppState, headers: &HeaderMap) -> bool {
    state.operator().is_some_and(|o| presented(headers).is_some_and(|t| o.admits(&t)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn basic_and_bearer_carry_the_token() {
        let op = Operator::new("s3cret\n");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic b3BlcmF0b3I6czNjcmV0".parse().unwrap()); // operator:s3cret
        assert!(op.admits(&presented(&h).unwrap()));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(op.admits(&presented(&h).unwrap()));
        h.insert(header::AUTHORIZATION, "Basic b3BlcmF0b3I6d3Jvbmc=".parse().unwrap()); // operator:wrong
        assert!(!op.admits(&presented(&h).unwrap()));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(presented(&h).is_none());
    }
}
