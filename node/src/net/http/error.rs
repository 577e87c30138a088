//! Errors of the HTTP API: a status code, a class (a stable word clients
//! can match on) and a message for people, rendered as
//! `{"error": {"class": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError as WireError, ErrorCode};

/// One error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub class: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, class: &'static str, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            class,
            message: message.into(),
        }
    }

    /// 400: a malformed query parameter or path.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// 400: a malformed job or node id.
    pub fn bad_id(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, "bad-id", message)
    }

    /// 404: nothing by that name or id.
    pub fn not_found(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// 503: the node cannot answer now (stopping, engine busy, at a bound).
    pub fn unavailable(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: a broken invariant.
    pub fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An engine error, with the status its code deserves.
    pub fn from_wire(e: WireError) -> HttpError {
        let (status, class) = match e.code {
            ErrorCode::NoJob => (StatusCode::NOT_FOUND, "not-found"),
            ErrorCode::NoModule => (StatusCode::NOT_FOUND, "not-found"),
            ErrorCode::BadId => (StatusCode::BAD_REQUEST, "bad-id"),
            ErrorCode::Err => (StatusCode::BAD_REQUEST, "bad-request"),
            ErrorCode::NoAuth => (StatusCode::UNAUTHORIZED, "no-auth"),
            ErrorCode::Leaving => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        HttpError::new(status, class, e.message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "class": self.class, "message": self.message } })
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
