//! The one error type of the HTTP layer: a JSON body `{"error": "..."}`, a message for 4xx,
//! nothing internal for 500 (the cause goes to the log).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No token, or a token of no platform: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// The dashboard or `/metrics` without the operator credential: 401 with a Basic challenge.
    #[error("{0}")]
    OperatorRequired(String),
    /// A platform acting as another: 403.
    #[error("{0}")]
    Forbidden(String),
    /// A body over the limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// Well-formed but refused (a receipt naming too many bundles, or unpublished ones): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// Over a quota: 429 with `Retry-After`.
    #[error("{message}")]
    TooMany { message: String, retry_after_s: u64 },
    /// The platform's stored-size quota is full: 507 (the agent keeps what it sent).
    #[error("{0}")]
    StoreFull(String),
    /// The service cannot do its job right now (e.g. expired metadata): 503.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// Not found, naming the request path (shortened, it is the client's input).
    pub fn not_found(path: &str) -> Self {
        let mut shown: String = path.chars().take(200).collect();
        if shown.len() < path.len() {
            shown.push_str("...");
        }
        AppError::NotFound(format!("not found: {shown}"))
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::OperatorRequired(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::StoreFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let message = match &self {
            AppError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (self.status(), Json(serde_json::json!({ "error": message }))).into_response();
        let headers = response.headers_mut();
        match &self {
            AppError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"palier\""));
            }
            AppError::OperatorRequired(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"palier operators\", charset=\"UTF-8\""));
            }
            AppError::TooMany { retry_after_s, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            _ => {}
        }
        // An error must not be cached: `N+1.snapshot.json` is a 404 only until it is written.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
