//! The server's one error type and its translation to HTTP, as the Hub does it.
//!
//! Every error carries a status, an optional `X-Error-Code` (the codes clients map to typed
//! exceptions) and a message sent both as `X-Error-Message` and as the JSON `error` field.
//! 5xx details are logged and never sent.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use tessera_protocol::{IdError, error_codes, headers};
use tessera_store::StoreError;

/// An error answer of the Hub or CAS API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Option<&'static str>,
    message: String,
    headers: Vec<(HeaderName, String)>,
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, code: None, message: message.into(), headers: Vec::new(), extra: None }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 for a missing or invalid Hub token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 without a code (CAS objects).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 503 with `Retry-After`, for a request refused because a concurrency cap is reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, message);
        e.headers.push((axum::http::header::RETRY_AFTER, "5".to_owned()));
        e
    }

    /// 413 for a body over its limit.
    pub fn too_large(limit: u64) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, format!("Request body larger than {limit} bytes"))
    }

    /// Repo missing or not visible: 401 for anonymous callers, 404 otherwise (Hub semantics).
    pub fn repo_not_found(authenticated: bool) -> Self {
        let status = if authenticated { StatusCode::NOT_FOUND } else { StatusCode::UNAUTHORIZED };
        let mut e = Self::new(
            status,
            "Repository not found. Make sure the repo id is right and that you have access to it.",
        );
        e.code = Some(error_codes::REPO_NOT_FOUND);
        e
    }

    /// 404 `RevisionNotFound`.
    pub fn revision_not_found(rev: &str) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, format!("Invalid rev id: {rev}"));
        e.code = Some(error_codes::REVISION_NOT_FOUND);
        e
    }

    /// 404 `EntryNotFound`, with the commit it was looked up at when known.
    pub fn entry_not_found(path: &str, commit: Option<&str>) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, format!("Entry not found: {path}"));
        e.code = Some(error_codes::ENTRY_NOT_FOUND);
        if let Some(c) = commit {
            e.headers.push((HeaderName::from_static(headers::X_REPO_COMMIT), c.to_owned()));
        }
        e
    }

    /// 500; the cause is logged here and replaced by a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// Adds a JSON field to the error body (e.g. `url` on a create-repo 409).
    pub fn with_field(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.get_or_insert_with(Default::default).insert(key.to_owned(), value.into());
        self
    }

    /// Sets the error code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message sent to the client (generic for 5xx; the cause is in the log).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Status and message as the client sees them (5xx causes were logged, never shown).
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}

/// Keeps a message usable as a header value: printable ASCII only, bounded.
fn header_safe(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(500)
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::info!(status = self.status.as_u16(), message = %header_safe(&self.message), "refused");
        }
        let mut body = self.extra.unwrap_or_default();
        body.insert("error".into(), self.message.clone().into());
        let mut map = HeaderMap::new();
        if let Some(code) = self.code {
            map.insert(headers::X_ERROR_CODE, HeaderValue::from_static(code));
        }
        if let Ok(v) = HeaderValue::from_str(&header_safe(&self.message)) {
            map.insert(headers::X_ERROR_MESSAGE, v);
        }
        // Errors that can be answered before the request body is read (auth, size): close the
        // connection, so a client does not reuse it with the unread body still in flight.
        let early = matches!(self.status.as_u16(), 401 | 403 | 413)
            || self.code == Some(error_codes::REPO_NOT_FOUND);
        if early {
            map.insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                map.insert(name, v);
            }
        }
        (self.status, map, axum::Json(serde_json::Value::Object(body))).into_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hub_semantics() {
        let r = ApiError::repo_not_found(false).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[headers::X_ERROR_CODE], "RepoNotFound");
        let r = ApiError::entry_not_found("a", Some("c")).into_response();
        assert_eq!(r.headers()[headers::X_REPO_COMMIT], "c");
        let r = ApiError::internal("secret path /x").into_response();
        assert_eq!(r.headers()[headers::X_ERROR_MESSAGE], "Internal server error");
        assert_eq!(header_safe("a\nb\u{e9}"), "a?b?");
    }
}
