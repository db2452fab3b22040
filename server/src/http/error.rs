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
    /// A platform acting as another: 403.
    #[error("{0}")]
    Forbidden(String),
    /// A body over the limit: 413.
    #[error("{0}")]
    TooLarge(String),
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
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
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
        let unauthorized = matches!(self, AppError::Unauthorized(_));
        let mut response = (self.status(), Json(serde_json::json!({ "error": message }))).into_response();
        if unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"palier\""));
        }
        // An error must not be cached: `N+1.snapshot.json` is a 404 only until it is written.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
