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
//! The status (contract 1) may also carry `components`, `level2_classes`, `repository_error`,
//! `due`, `holds` and `plan`; an older agent leaves them out.
//!
//! For operators (the operator credential, as the dashboard), the fleet view of
//! [`crate::fleet`] as JSON:
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /bundles/{id}/{version}` | `{"bundle", "counts", "platforms"}`: where each platform stands |
//! | `GET /platforms/{name}` | `{"platform", "contract_mismatch", "plan", "receipts"}` |
//!
//! Refusals, each with `{"error": "..."}` and nothing stored: 401 no or unknown token (counted
//! per `X-Palier-Platform` name claimed, shown on the dashboard), 403 a receipt for another
//! platform, 400 malformed JSON, unknown fields or invalid values (text with control, format
//! or bidi characters), 404 a fix request's `bundle` that is not published, 413 a body over
//! [`MAX_BODY`], 422 a receipt naming more than [`MAX_RECEIPT_BUNDLES`] bundles or one that is
//! not published, 429 with `Retry-After` over a per-minute quota, 507 over the platform's
//! stored-size quota, 503 no store (`serve` without `--db`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jiff::Timestamp;
use palier_bundle::{BundleId, BundleMetadata, BundleRef, BundleState, Component, PlatformId};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::app::AppState;
use super::dashboard;
use super::error::AppError;
use super::limits::Kind;
use super::operator;
use crate::error::Error;
use crate::fleet::{Fleet, PlatformView};
use crate::repo;
use crate::store::{FixRequest, NewReceipt, OUTCOMES, PlatformContract, ReceiptStored, RollbackReport, Status, Store};

/// Largest request body: 1 MiB.
pub const MAX_BODY: usize = 1 << 20;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/fix-requests", post(create_fix_request).get(list_fix_requests))
        .route("/receipts", post(create_receipt))
        .route("/status", post(set_status))
        .route("/bundles/{id}/{version}", get(bundle_view))
        .route("/platforms/{name}", get(platform_view))
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
}

/// Most bundle versions a status's plan may list (a repository's whole history is a few
/// hundred; 1,000 with the longest ids fill 235 KB of the 1 MiB body).
pub const MAX_PLAN_BUNDLES: usize = 5000;

/// Most bundles a receipt may name (an intervention applies a handful).
pub const MAX_RECEIPT_BUNDLES: usize = 100;

/// The header an agent may send with its platform name, so that a refused token is counted
/// against the platform it claims to be.
pub const PLATFORM_HEADER: &str = "x-palier-platform";

/// The platform the request's bearer token belongs to.
pub(crate) struct Caller(PlatformId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let store = store(state)?;
        let refused = |why: &str| {
            // Counted per claimed platform name (a well-formed one), else per source address.
            let claimed = parts.headers.get(PLATFORM_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| PlatformId::new(v.trim()).ok());
            let key = match claimed {
                Some(p) => p.to_string(),
                None => parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map_or_else(|| "unknown source".to_owned(), |c| format!("source {}", c.0.ip())),
            };
            if state.failed_tokens().record(&key, state.clock().now()) {
                state.view().store_changed();
                tracing::warn!(claimed = %key, why, "refused an API request: wrong token (counted on the dashboard; re-issue with `palier-server platform token NAME`)");
            }
            AppError::Unauthorized(why.to_owned())
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(refused("missing Authorization: Bearer <token>"));
        };
        let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty() && t.len() <= 256) else {
            return Err(refused("Authorization must be Bearer <token>"));
        };
        let token = token.to_owned();
        match blocking(move || store.authenticate(&token)).await? {
            Some(p) => Ok(Caller(p)),
            None => Err(refused("unknown API token")),
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

/// Take one of the caller's tokens of `kind`: 429 with `Retry-After` past the quota.
fn quota(state: &AppState, caller: &PlatformId, kind: Kind) -> Result<(), AppError> {
    state.rates().take(caller.as_str(), kind, state.clock().now()).map_err(|(message, retry_after_s)| {
        tracing::debug!(platform = %caller, ?kind, retry_after_s, "over quota");
        AppError::TooMany { message, retry_after_s }
    })
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

/// The body of a request, after the caller was authenticated and took a token of its `kind`
/// quota (so 401 comes before 429, 413 and 400).
async fn caller_and_body<T: DeserializeOwned>(state: &AppState, request: axum::extract::Request, kind: Kind) -> Result<(PlatformId, T), AppError> {
    let (mut parts, body) = request.into_parts();
    let Caller(caller) = Caller::from_request_parts(&mut parts, state).await?;
    quota(state, &caller, kind)?;
    check_length(&parts)?;
    Ok((caller, json_body(body).await?))
}

/// Unicode format characters (category Cf: bidi controls, zero-width characters, the BOM,
/// tags...) and the line and paragraph separators: invisible, or reordering what follows.
pub fn is_format(c: char) -> bool {
    matches!(
        c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E
            | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
    )
}

/// One line of text: trimmed, 1 to `max` bytes, no control character, no format or bidi
/// character.
fn one_line(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.chars().any(|c| c.is_control() || is_format(c)) {
        return Err(AppError::BadRequest(format!("{field}: must be one line of 1 to {max} bytes, without control, format or bidi characters")));
    }
    Ok(v.to_owned())
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
    let (caller, body): (_, NewFixRequest) = caller_and_body(&state, request, Kind::FixRequest).await?;
    let component = Component::new(&body.component).map_err(|e| AppError::BadRequest(format!("component: {e}")))?;
    let summary = one_line("summary", &body.summary, 200)?;
    let store = store(&state)?;
    let quota_bytes = state.rates().limits().stored_bytes_per_platform;
    let (s, c) = (store.clone(), caller.clone());
    let stored = blocking(move || s.stored_bytes(&c)).await?;
    if stored.saturating_add(summary.len() as u64) > quota_bytes {
        return Err(AppError::StoreFull(format!("platform {caller} holds {stored} bytes, its quota is {quota_bytes}: nothing more is stored")));
    }
    let bundle = match body.bundle.as_deref() {
        Some(b) => Some(fix_bundle(&state, b, &component).await?),
        None => None,
    };
    if let Some(b) = &bundle {
        link(&state, b, &caller).await?;
    }
    let now = state.clock().now();
    let fr = blocking(move || store.add_fix_request(&caller, &component, &summary, bundle.as_ref(), now)).await?;
    state.view().store_changed();
    tracing::debug!(id = %fr.id, platform = %fr.platform, bundle = fr.bundle.as_deref().unwrap_or("-"), "fix request");
    Ok((StatusCode::CREATED, axum::Json(fr)).into_response())
}

/// The bundle a fix request names: `ID@VERSION`, or a bare `ID` for its newest published
/// version; refused when not published (404), yanked, or of another component (400).
async fn fix_bundle(state: &AppState, text: &str, component: &Component) -> Result<BundleRef, AppError> {
    let view = dashboard::repo_view(state, None).await;
    let found = if text.contains('@') {
        let wanted: BundleRef = text.parse().map_err(|e| AppError::BadRequest(format!("bundle: {e}")))?;
        view.find(&wanted).ok_or_else(|| AppError::NotFound(format!("bundle {wanted} is not published")))?
    } else {
        let id = BundleId::new(text).map_err(|e| AppError::BadRequest(format!("bundle: {e}")))?;
        view.bundles
            .iter()
            .filter(|p| p.meta.manifest.id == id)
            .max_by(|a, b| a.meta.manifest.version.cmp(&b.meta.manifest.version))
            .ok_or_else(|| AppError::NotFound(format!("bundle {id} is not published (no version of it)")))?
    };
    let m = &found.meta.manifest;
    let key = format!("{}@{}", m.id, m.version);
    if found.meta.state == BundleState::Yanked {
        return Err(AppError::BadRequest(format!("bundle {key} is yanked: it fixes nothing any more; name the version that replaces it")));
    }
    if &m.component != component {
        return Err(AppError::BadRequest(format!("bundle {key} changes component {}, not {component}: name a bundle of {component}", m.component)));
    }
    key.parse().map_err(|e| AppError::BadRequest(format!("bundle: {e}")))
}

/// Add `platform` to a published bundle's reporters, on the repository thread: in the
/// bundle's report marker (the online `reports` key; the bundle's bin, signed with the offline
/// bins key, is left as it is), or, in a repository without the `reports` role, in its signed
/// `reported_by`. A bundle that is not published is a 404.
async fn link(state: &AppState, bundle: &BundleRef, platform: &PlatformId) -> Result<(), AppError> {
    let (paths, now) = (state.paths().clone(), state.clock().now());
    let (b, p) = (bundle.clone(), platform.clone());
    let outcome = state
        .repo()
        .run(move || async move {
            if crate::halts::has_marker_role(&paths, crate::repo::REPORTS)? {
                return crate::halts::link(&paths, &b, &p, now).await;
            }
            repo::update(&paths, &b, now, move |m| Ok(m.reported_by.insert(p))).await.map(|(_, changed)| changed)
        })
        .await
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the repository thread stopped")))?;
    match outcome {
        Ok(_) => Ok(()),
        Err(Error::Refused(msg)) if msg.starts_with(&format!("bundle {bundle} is not published")) => {
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
    let (caller, body): (_, serde_json::Value) = caller_and_body(&state, request, Kind::Receipt).await?;
    if !body.is_object() {
        return Err(AppError::BadRequest("invalid request: a receipt is a JSON object".into()));
    }
    if body.get("bundles").and_then(|b| b.as_array()).is_some_and(|b| b.len() > MAX_RECEIPT_BUNDLES) {
        return Err(AppError::Unprocessable(format!("bundles: a receipt names at most {MAX_RECEIPT_BUNDLES} bundles")));
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
    if let Some(r) = &head.reason
        && (r.len() > 4096 || r.chars().any(is_format))
    {
        return Err(AppError::BadRequest("reason: at most 4096 bytes, without format or bidi characters".into()));
    }
    let bundles = head
        .bundles
        .iter()
        .map(|b| b.parse::<BundleRef>().map_err(|e| AppError::BadRequest(format!("bundles: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if !bundles.is_empty() {
        let view = dashboard::repo_view(&state, None).await;
        if let Some(unknown) = bundles.iter().find(|b| view.find(b).is_none()) {
            return Err(AppError::Unprocessable(format!("bundles: {unknown} is not published in this repository")));
        }
    }
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
    let quota_bytes = state.rates().limits().stored_bytes_per_platform;
    let stored = {
        let (store, receipt) = (store.clone(), receipt.clone());
        blocking(move || store.add_receipt_within(&receipt, now, quota_bytes)).await?
    };
    let status = match stored {
        ReceiptStored::Stored => StatusCode::CREATED,
        ReceiptStored::Duplicate => StatusCode::OK,
        ReceiptStored::OverQuota { stored } => {
            tracing::warn!(platform = %receipt.platform, stored, quota = quota_bytes, "receipt refused: the platform's storage quota is full");
            return Err(AppError::StoreFull(format!(
                "platform {} holds {stored} bytes, its quota is {quota_bytes}: the receipt is not stored",
                receipt.platform
            )));
        }
    };
    let stored = stored == ReceiptStored::Stored;
    if stored {
        state.view().store_changed();
    }
    tracing::debug!(id = %receipt.id, platform = %receipt.platform, outcome = %receipt.outcome, stored, "receipt");
    if stored && receipt.outcome == "rolled-back" {
        for bundle in &receipt.bundles {
            if let Err(e) = auto_halt(&state, &store, bundle).await {
                tracing::error!(bundle = %bundle, error = %e, "auto-halt failed; tried again at the next rollback receipt or status");
            }
        }
    }
    Ok((status, axum::Json(serde_json::json!({ "id": receipt.id, "stored": stored }))).into_response())
}

/// Whether the improvement axis of `contract` admits `meta` for `platform`: the agent's own
/// policy, [`palier_policy::plan`], asked about this one bundle as if it were active
/// and not installed, so that only the improvement rules can exclude it.
fn contract_admits(contract: &PlatformContract, platform: &str, meta: &BundleMetadata) -> bool {
    use palier_policy::{self as policy, Contract, Level, Reason, Stability};
    let (Ok(improvement), Ok(platform)) = (contract.improvement_axis(), PlatformId::new(platform)) else { return false };
    let Ok(level) = Level::new(i64::from(contract.stability)) else { return false };
    let contract = Contract { platform, timezone: jiff::tz::TimeZone::UTC, improvement, stability: Stability::new(level) };
    let mut meta = meta.clone();
    meta.state = BundleState::Active;
    // Any release: the Moodle rule comes after the improvement rules.
    let release = meta.manifest.version.clone();
    let plan = policy::plan(&contract, std::slice::from_ref(&meta), &[], &release, Timestamp::UNIX_EPOCH);
    !plan.bundles.iter().any(|d| matches!(d.reason, Some(Reason::NotReported | Reason::ComponentNotSelected | Reason::ClassNotAllowed)))
}

/// Halt `bundle` in the signed metadata once enough platforms rolled it back. A rollback
/// counts only from a platform whose registered contract admits the bundle and that had it
/// (a status of it named the bundle as due, installed or held; an older agent, which does not
/// report what is due, is taken at its receipt). The threshold counts distinct platforms and,
/// with `--halt-share`, a share of the platforms that applied it. A bundle already halted or
/// yanked is left as it is; done once per bundle version. Logged at warn, with the receipts.
///
/// This is the one place the server decides a halt.
pub(crate) async fn auto_halt(state: &AppState, store: &Arc<Store>, bundle: &BundleRef) -> Result<(), AppError> {
    let view = dashboard::repo_view(state, None).await;
    let Some(published) = view.find(bundle) else { return Ok(()) };
    if published.meta.state != BundleState::Active {
        return Ok(());
    }
    let (s, b) = (store.clone(), bundle.clone());
    let (reports, applied, done) = blocking(move || Ok((s.rollback_reports(&b)?, s.applied_on(&b)?, s.auto_halted(&b)?))).await?;
    if done {
        return Ok(());
    }
    let counted: Vec<&RollbackReport> = reports
        .iter()
        .filter(|r| r.contract.as_ref().is_some_and(|c| contract_admits(c, &r.platform, &published.meta)) && (r.had_it || !r.reports_due))
        .collect();
    let ignored: Vec<&str> = reports.iter().filter(|r| !counted.iter().any(|c| c.platform == r.platform)).map(|r| r.platform.as_str()).collect();
    let threshold = state.halt_threshold() as usize;
    #[allow(clippy::cast_precision_loss)]
    let share_met = state.options().halt_share.is_none_or(|share| counted.len() as f64 >= share * applied.len() as f64);
    if counted.len() < threshold || !share_met {
        if !ignored.is_empty() {
            tracing::debug!(bundle = %bundle, ignored = ?ignored, "rollbacks not counted: the platform's contract does not admit the bundle, or it never had it");
        }
        return Ok(());
    }
    let platforms: Vec<String> = counted.iter().map(|r| r.platform.clone()).collect();
    let receipts: Vec<String> = counted.iter().flat_map(|r| r.receipts.iter().map(move |id| format!("{}/{id}", r.platform))).collect();
    let reason = format!("auto-halt: rolled back on {}", platforms.join(", "));
    let (paths, now) = (state.paths().clone(), state.clock().now());
    let (b, why) = (bundle.clone(), reason.clone());
    let outcome = state
        .repo()
        // A halt marker, signed by the online `halts` key: the bundle's own metadata and
        // its bin stay as the release manager signed them.
        .run(move || async move { crate::halts::halt(&paths, &b, &why, now).await })
        .await
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the repository thread stopped")))?;
    match outcome {
        Ok(changed) => {
            tracing::warn!(
                bundle = %bundle,
                platforms = %platforms.join(","),
                receipts = %receipts.join(","),
                applied_on = applied.len(),
                changed,
                "auto-halt: the bundle is halted for every platform (resume it with `palier-server resume`)"
            );
            let (s, b) = (store.clone(), bundle.clone());
            blocking(move || s.record_auto_halt(&b, &platforms, &receipts, now)).await?;
            state.view().store_changed();
            Ok(())
        }
        // The repository changed under the view: nothing to halt.
        Err(Error::Refused(msg)) if msg.starts_with(&format!("bundle {bundle} is not published")) => Ok(()),
        Err(e) => Err(AppError::internal(e)),
    }
}

async fn set_status(State(state): State<AppState>, request: axum::extract::Request) -> Result<Response, AppError> {
    let (caller, mut status): (_, Status) = caller_and_body(&state, request, Kind::Status).await?;
    for (name, level) in [("improvement_level", status.improvement_level), ("stability_level", status.stability_level)] {
        if !(1..=3).contains(&level) {
            return Err(AppError::BadRequest(format!("{name}: must be 1, 2 or 3, not {level}")));
        }
    }
    if let Some(o) = &status.last_outcome {
        one_line("last_outcome", o, 200)?;
    }
    // The agent's own error text: kept to its first 500 bytes rather than losing the status.
    if let Some(e) = &status.repository_error {
        status.repository_error = Some(one_line("repository_error", truncated(e, 500), 500)?);
    }
    const MAX_LISTED: usize = 1000;
    let lists = [("installed", Some(&status.installed)), ("due", status.due.as_ref())];
    for (name, list) in lists {
        let list = list.map_or(&[][..], Vec::as_slice);
        if list.len() > MAX_LISTED {
            return Err(AppError::BadRequest(format!("{name}: more than {MAX_LISTED} bundles")));
        }
        for i in list {
            format!("{}@{}", i.id, i.version).parse::<BundleRef>().map_err(|e| AppError::BadRequest(format!("{name}: {e}")))?;
        }
    }
    let holds = status.holds.as_deref().unwrap_or_default();
    if holds.len() > MAX_LISTED {
        return Err(AppError::BadRequest(format!("holds: more than {MAX_LISTED} bundles")));
    }
    for h in holds {
        format!("{}@{}", h.id, h.version).parse::<BundleRef>().map_err(|e| AppError::BadRequest(format!("holds: {e}")))?;
        one_line("holds: since", &h.since, 64)?;
        one_line("holds: reason", truncated(&h.reason, 500), 500)?;
    }
    for (name, list) in [("components", &status.components), ("level2_classes", &status.level2_classes)] {
        let list = list.as_deref().unwrap_or_default();
        if list.len() > 200 {
            return Err(AppError::BadRequest(format!("{name}: more than 200 entries")));
        }
        for c in list {
            one_line(name, c, 64)?;
        }
    }
    if let Some(e) = &status.repository_error {
        tracing::debug!(platform = %caller, error = %e, "the agent cannot verify the repository");
    }
    if let Some(plan) = &mut status.plan {
        if plan.bundles.len() > MAX_PLAN_BUNDLES {
            return Err(AppError::BadRequest(format!("plan: more than {MAX_PLAN_BUNDLES} bundles")));
        }
        // The compact form has no `detail`; an agent that sends one does not get it stored.
        for d in &mut plan.bundles {
            d.detail = None;
        }
    }
    let store = store(&state)?;
    let now = state.clock().now();
    let (s, c) = (store.clone(), caller.clone());
    blocking(move || s.set_status(&c, &status, now)).await?;
    state.view().store_changed();
    // What the status says the platform had may complete the evidence for a halt.
    let (s, c) = (store.clone(), caller.clone());
    let rolled_back = blocking(move || s.rolled_back_by(&c)).await?;
    for b in rolled_back.iter().filter_map(|b| b.parse::<BundleRef>().ok()) {
        if let Err(e) = auto_halt(&state, &store, &b).await {
            tracing::error!(bundle = %b, error = %e, "auto-halt failed; tried again at the next rollback receipt or status");
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/bundles/{id}/{version}`: where each platform stands for a published bundle
/// (operators only; 404 for a bundle that is not published).
async fn bundle_view(State(state): State<AppState>, headers: axum::http::HeaderMap, Path((id, version)): Path<(String, String)>) -> Result<Response, AppError> {
    operator::check(&state, &headers)?;
    let wanted: BundleRef = format!("{id}@{version}").parse().map_err(|e| AppError::BadRequest(format!("bundle: {e}")))?;
    let view = dashboard::repo_view(&state, None).await;
    let Some(published) = view.find(&wanted) else {
        return Err(AppError::NotFound(format!("bundle {wanted} is not published")));
    };
    let meta = published.meta.clone();
    let store = store(&state)?;
    let fleet = blocking(move || Fleet::load(&store)).await?;
    Ok(axum::Json(fleet.bundle_view(&meta)).into_response())
}

/// `GET /api/v1/platforms/{name}`: a platform's record, latest plan and recent receipts
/// (operators only; 404 for a platform that is not registered).
async fn platform_view(State(state): State<AppState>, headers: axum::http::HeaderMap, Path(name): Path<String>) -> Result<Response, AppError> {
    operator::check(&state, &headers)?;
    let name = PlatformId::new(&name).map_err(|e| AppError::BadRequest(format!("platform: {e}")))?;
    let store = store(&state)?;
    let shown = name.clone();
    match blocking(move || PlatformView::load(&store, &name)).await? {
        Some(view) => Ok(axum::Json(view).into_response()),
        None => Err(AppError::NotFound(format!("no platform {shown} is registered"))),
    }
}
