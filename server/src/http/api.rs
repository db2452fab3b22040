//! The control-plane API under `/api/v1/`, for agents. Every call carries
//! `Authorization: Bearer <token>` and acts only as the platform the token belongs to.
//!
//! | call | body | answer |
//! | --- | --- | --- |
//! | `POST /fix-requests` | `{"component", "summary", "bundle"?}` | 201, the fix request |
//! | `GET /fix-requests` | | 200, `{"fix_requests": [...]}`: the caller's own |
//! | `POST /receipts` | the agent's receipt | 201 stored, 200 already stored (same `id`) |
//! | `POST /status` | levels, installed bundles, next intervention, last outcome | 204 |
//!
//! Refusals, each with `{"error": "..."}` and nothing stored: 401 no or unknown token, 403 a
//! receipt for another platform, 400 malformed JSON, unknown fields or invalid values, 404 a
//! `bundle` that is not published, 413 a body over [`MAX_BODY`], 503 no store (`serve` without
//! `--db`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jiff::Timestamp;
use palier_bundle::{BundleRef, BundleState, Component, PlatformId};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::app::AppState;
use super::error::AppError;
use crate::error::Error;
use crate::repo;
use crate::store::{FixRequest, NewReceipt, OUTCOMES, Status, Store};

/// Largest request body: 1 MiB.
pub const MAX_BODY: usize = 1 << 20;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/fix-requests", post(create_fix_request).get(list_fix_requests))
        .route("/receipts", post(create_receipt))
        .route("/status", post(set_status))
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
}

/// The platform the request's bearer token belongs to.
pub(crate) struct Caller(PlatformId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let store = store(state)?;
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| AppError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| AppError::Unauthorized("Authorization must be Bearer <token>".into()))?
            .to_owned();
        match blocking(move || store.authenticate(&token)).await? {
            Some(p) => Ok(Caller(p)),
            None => Err(AppError::Unauthorized("unknown API token".into())),
        }
    }
}

fn store(state: &AppState) -> Result<Arc<Store>, AppError> {
    state
        .store()
        .cloned()
        .ok_or_else(|| AppError::Unavailable("the control plane is off: this server runs without a store (serve --db FILE)".into()))
}

/// Run store work on the blocking pool; a store error is a 500 (logged, not shown).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> crate::Result<T> + Send + 'static) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f).await.map_err(AppError::internal)?.map_err(AppError::internal)
}

/// Read a JSON body of at most [`MAX_BODY`] bytes into `T`.
async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, AppError> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(AppError::TooLarge(format!("request body is larger than {MAX_BODY} bytes")));
        }
        Err(e) => return Err(AppError::BadRequest(format!("cannot read the request body: {e}"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => AppError::BadRequest(format!("malformed JSON: {e}")),
            Category::Data => AppError::BadRequest(format!("invalid request: {e}")),
        }
    })
}

/// Refuse a body announced larger than the limit before reading it.
fn check_length(parts: &Parts) -> Result<(), AppError> {
    let announced = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > MAX_BODY as u64 => Err(AppError::TooLarge(format!("request body is larger than {MAX_BODY} bytes"))),
        _ => Ok(()),
    }
}

/// The body of a request, after the caller was authenticated (so 401 comes before 413 and 400).
async fn caller_and_body<T: DeserializeOwned>(state: &AppState, request: axum::extract::Request) -> Result<(PlatformId, T), AppError> {
    let (mut parts, body) = request.into_parts();
    let Caller(caller) = Caller::from_request_parts(&mut parts, state).await?;
    check_length(&parts)?;
    Ok((caller, json_body(body).await?))
}

/// One line of text: trimmed, 1 to `max` bytes, no control character.
fn one_line(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(AppError::BadRequest(format!("{field}: must be one line of 1 to {max} bytes")));
    }
    Ok(v.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewFixRequest {
    component: String,
    summary: String,
    #[serde(default)]
    bundle: Option<String>,
}

async fn create_fix_request(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, AppError> {
    let (caller, body): (_, NewFixRequest) = caller_and_body(&state, request).await?;
    let component = Component::new(&body.component).map_err(|e| AppError::BadRequest(format!("component: {e}")))?;
    let summary = one_line("summary", &body.summary, 200)?;
    let bundle: Option<BundleRef> = body.bundle.as_deref().map(str::parse).transpose().map_err(|e| AppError::BadRequest(format!("bundle: {e}")))?;
    if let Some(b) = &bundle {
        link(&state, b, &caller).await?;
    }
    let store = store(&state)?;
    let now = state.clock().now();
    let fr = blocking(move || store.add_fix_request(&caller, &component, &summary, bundle.as_ref(), now)).await?;
    tracing::info!(id = %fr.id, platform = %fr.platform, bundle = fr.bundle.as_deref().unwrap_or("-"), "fix request");
    Ok((StatusCode::CREATED, axum::Json(fr)).into_response())
}

/// Add `platform` to a published bundle's `reported_by` (re-signed when it was not there yet).
/// A bundle that is not published is a 404.
async fn link(state: &AppState, bundle: &BundleRef, platform: &PlatformId) -> Result<(), AppError> {
    let (paths, now) = (state.paths().clone(), state.clock().now());
    let (b, p) = (bundle.clone(), platform.clone());
    let handle = tokio::runtime::Handle::current();
    let found = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = found.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        handle.block_on(repo::update(&paths, &b, now, move |m| {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(m.reported_by.insert(p))
        }))
    })
    .await
    .map_err(AppError::internal)?;
    match outcome {
        Ok(_) => Ok(()),
        Err(Error::Refused(msg)) if !found.load(std::sync::atomic::Ordering::Relaxed) && msg.starts_with(&format!("bundle {bundle} is not published")) => {
            Err(AppError::NotFound(format!("bundle {bundle} is not published")))
        }
        Err(e) => Err(AppError::internal(e)),
    }
}

async fn list_fix_requests(State(state): State<AppState>, Caller(caller): Caller) -> Result<Response, AppError> {
    let store = store(&state)?;
    let list: Vec<FixRequest> = blocking(move || store.fix_requests_of(&caller)).await?;
    Ok(axum::Json(serde_json::json!({ "fix_requests": list })).into_response())
}

/// What the server reads of a receipt; the rest of the body is stored as sent.
#[derive(Debug, Deserialize)]
struct ReceiptHead {
    id: String,
    platform: String,
    outcome: String,
    bundles: Vec<String>,
    started_at: Timestamp,
    finished_at: Timestamp,
    #[serde(default)]
    reason: Option<String>,
}

async fn create_receipt(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, AppError> {
    let (caller, body): (_, serde_json::Value) = caller_and_body(&state, request).await?;
    if !body.is_object() {
        return Err(AppError::BadRequest("invalid request: a receipt is a JSON object".into()));
    }
    let head: ReceiptHead = serde_json::from_value(body.clone()).map_err(|e| AppError::BadRequest(format!("invalid receipt: {e}")))?;
    if head.platform != caller.as_str() {
        return Err(AppError::Forbidden(format!("platform {caller} cannot send a receipt for platform {:?}", head.platform)));
    }
    let id_ok = !head.id.is_empty() && head.id.len() <= 128 && head.id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !id_ok {
        return Err(AppError::BadRequest("id: expected 1 to 128 of A-Z a-z 0-9 . _ - :".into()));
    }
    if !OUTCOMES.contains(&head.outcome.as_str()) {
        return Err(AppError::BadRequest(format!("outcome {:?}: expected one of {}", head.outcome, OUTCOMES.join(", "))));
    }
    let bundles = head
        .bundles
        .iter()
        .map(|b| b.parse::<BundleRef>().map_err(|e| AppError::BadRequest(format!("bundles: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let receipt = NewReceipt {
        id: head.id,
        platform: caller,
        outcome: head.outcome,
        bundles,
        reason: head.reason,
        started_at: head.started_at,
        finished_at: head.finished_at,
        body,
    };
    let store = store(&state)?;
    let now = state.clock().now();
    let stored = {
        let (store, receipt) = (store.clone(), receipt.clone());
        blocking(move || store.add_receipt(&receipt, now)).await?
    };
    let status = if stored { StatusCode::CREATED } else { StatusCode::OK };
    tracing::info!(id = %receipt.id, platform = %receipt.platform, outcome = %receipt.outcome, stored, "receipt");
    if stored && receipt.outcome == "rolled-back" {
        for bundle in &receipt.bundles {
            if let Err(e) = auto_halt(&state, &store, bundle).await {
                tracing::error!(bundle = %bundle, error = %e, "auto-halt failed; tried again at the next rollback receipt");
            }
        }
    }
    Ok((status, axum::Json(serde_json::json!({ "id": receipt.id, "stored": stored }))).into_response())
}

/// Halt `bundle` in the signed metadata once `halt_threshold` distinct platforms rolled it back.
/// A bundle already halted or yanked (by hand) is left as it is; done once per bundle version.
async fn auto_halt(state: &AppState, store: &Arc<Store>, bundle: &BundleRef) -> Result<(), AppError> {
    let (s, b) = (store.clone(), bundle.clone());
    let (platforms, done) = blocking(move || Ok((s.rolled_back_on(&b)?, s.auto_halted(&b)?))).await?;
    if done || platforms.len() < state.halt_threshold() as usize {
        return Ok(());
    }
    let reason = format!("auto-halt: rolled back on {}", platforms.join(", "));
    let (paths, now) = (state.paths().clone(), state.clock().now());
    let (b, why) = (bundle.clone(), reason.clone());
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        handle.block_on(repo::update(&paths, &b, now, move |m| {
            if m.state != BundleState::Active {
                return Ok(false);
            }
            m.state = BundleState::Halted;
            m.state_reason = Some(why);
            Ok(true)
        }))
    })
    .await
    .map_err(AppError::internal)?;
    match outcome {
        Ok((_, changed)) => {
            tracing::warn!(bundle = %bundle, %reason, changed, "auto-halt");
            let (s, b) = (store.clone(), bundle.clone());
            blocking(move || s.record_auto_halt(&b, &platforms, now)).await
        }
        // A receipt may name a bundle this repository does not hold: nothing to halt.
        Err(Error::Refused(msg)) if msg.starts_with(&format!("bundle {bundle} is not published")) => Ok(()),
        Err(e) => Err(AppError::internal(e)),
    }
}

async fn set_status(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, AppError> {
    let (caller, status): (_, Status) = caller_and_body(&state, request).await?;
    for (name, level) in [("improvement_level", status.improvement_level), ("stability_level", status.stability_level)] {
        if !(1..=3).contains(&level) {
            return Err(AppError::BadRequest(format!("{name}: must be 1, 2 or 3, not {level}")));
        }
    }
    if let Some(o) = &status.last_outcome {
        one_line("last_outcome", o, 200)?;
    }
    if status.installed.len() > 10_000 {
        return Err(AppError::BadRequest("installed: more than 10000 bundles".into()));
    }
    for i in &status.installed {
        format!("{}@{}", i.id, i.version).parse::<BundleRef>().map_err(|e| AppError::BadRequest(format!("installed: {e}")))?;
    }
    let store = store(&state)?;
    let now = state.clock().now();
    blocking(move || store.set_status(&caller, &status, now)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
