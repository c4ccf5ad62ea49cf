//! API errors: every failure becomes a status code plus a JSON body `{error, message}`.
//!
//! Internal errors carry their detail in a response extension only; the request-id middleware
//! logs it once with the request id and the client sees a generic message with that id.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zigral_store::StoreError;

/// The JSON body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unauthorized`, `not_found`, `invalid`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Detail of an internal error, attached to the response for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

/// An error returned by a handler.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    internal: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            internal: None,
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
    }
    pub fn too_many(m: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", m);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
    /// A server-side failure: logged once (with the request id) by the middleware; the client
    /// only learns that it happened.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        );
        e.internal = Some(detail.to_string());
        e
    }
    fn from_rejection(status: StatusCode, text: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::NOT_FOUND => "not_found",
            s if s.is_server_error() => return ApiError::internal(text),
            _ => "bad_request",
        };
        ApiError::new(status, code, text)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl From<crate::vdi::VdiError> for ApiError {
    fn from(e: crate::vdi::VdiError) -> Self {
        use crate::vdi::VdiError as V;
        let m = e.to_string();
        match e {
            V::UserQuota { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", m)
            }
            V::Capacity { .. } => ApiError::new(StatusCode::CONFLICT, "capacity", m),
            V::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "desktop_unavailable", m)
            }
            V::NotFound(_) => ApiError::not_found(m),
            V::Disabled => ApiError::forbidden(m),
            V::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Invalid(m) => ApiError::invalid(m),
            other => ApiError::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::from_rejection(r.status(), r.body_text())
    }
}
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::from_rejection(r.status(), r.body_text())
    }
}
impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        // A malformed query string is a client error whatever axum thinks.
        ApiError::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(d) = self.internal {
            resp.extensions_mut().insert(InternalDetail(d));
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// `axum::Json` whose rejections are JSON errors. A request body must be a JSON object (serde
/// would otherwise also build a struct from an array).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !v.is_object() {
            return Err(ApiError::invalid("the body must be a JSON object"));
        }
        serde_json::from_value(v)
            .map(Json)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections are JSON errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejections are JSON errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// The error responses every authenticated endpoint may return (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Malformed request (bad JSON, bad query string).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing, invalid, revoked or expired credentials.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Authenticated but not allowed (scope, ownership, admin only).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such resource.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Request body larger than the configured limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Well-formed but invalid values.
    #[response(status = 422)]
    Invalid(ErrorBody),
}
