//! The API's one error type: every failure becomes a status and a JSON body that names the
//! problem (`{"error": "...", "field": "..."}`), and is logged here, once.

use axum::Json;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::wire::InputError;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    TooLarge {
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The `Host` names another server (DNS rebinding): 421.
    #[error("{0}")]
    MisdirectedRequest(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A body in an encoding the route does not take: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    UriTooLong(String),
    /// The client took too long to send its request, or the request too long to answer.
    #[error("{0}")]
    Timeout(String),
    /// Over a rate limit; retry after this many seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
    /// The request is valid but the server is not set up for it.
    #[error("{0}")]
    Conflict(String),
    /// The server cannot take the request now; `reason` names why, for `/metrics`.
    #[error("{message}")]
    Unavailable {
        message: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::TooLarge {
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    /// A short, stable name for why the request was refused, for `/metrics`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "invalid",
            Self::TooLarge { .. } => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MisdirectedRequest(_) => "foreign_host",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::UriTooLong(_) => "uri_too_long",
            Self::Conflict(_) => "conflict",
            Self::Timeout(_) => "timeout",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable { reason, .. } => reason,
            Self::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // A full disk or a lost database fails every request alike: one line a second.
            static FAILURES: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new();
            if let Some(held_back) = FAILURES.allow() {
                tracing::error!(%status, error = %self, held_back, "request failed");
            }
        } else {
            tracing::debug!(%status, error = %self, "request rejected");
        }
        let body = match &self {
            Self::BadRequest {
                message,
                field: Some(field),
            }
            | Self::TooLarge {
                message,
                field: Some(field),
            } => json!({ "error": message, "field": field }),
            other => json!({ "error": other.to_string() }),
        };
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(Rejected(self.reason()));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(seconds.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Marks a response as a refusal, with its reason; counted by `api::front_door`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejected(pub &'static str);

/// Store errors split by what the client should do: the unavailable ones are 503 with
/// `Retry-After` and a message that says what is wrong without the database's own text (that
/// goes to the log); a bug or a broken constraint is 500, logged with an id the body gives, so
/// a report can be matched to its log line and a hook client does not retry it as an outage.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let unavailable = |message: &str, reason| {
            if let StoreError::Unwritable(detail)
            | StoreError::Unreachable(detail)
            | StoreError::Busy(detail) = &e
            {
                static UNAVAILABLE: crate::telemetry::LogLimiter =
                    crate::telemetry::LogLimiter::new();
                if let Some(held_back) = UNAVAILABLE.allow() {
                    tracing::warn!(reason, detail = %detail, held_back, "store unavailable");
                }
            }
            Self::Unavailable {
                message: message.to_owned(),
                reason,
            }
        };
        match &e {
            StoreError::Closed => unavailable("the server is shutting down", "shutting_down"),
            StoreError::AtSizeLimit(_) => Self::Unavailable {
                message: e.to_string(),
                reason: "size_limit",
            },
            StoreError::Overloaded => unavailable(
                "the write queue is full: retry after the Retry-After delay",
                "queue_full",
            ),
            StoreError::ReadTimeout => Self::bad_request(
                "the query ran past the read time budget: narrow it with since/until or filters",
            ),
            StoreError::Unwritable(_) => unavailable(
                "the disk is full or the database cannot be written; nothing was stored",
                "unwritable",
            ),
            StoreError::Unreachable(_) => unavailable(
                "the database cannot be reached; nothing was stored",
                "store_unreachable",
            ),
            StoreError::Busy(_) => unavailable("the database is busy", "store_busy"),
            StoreError::Internal(detail) | StoreError::Foreign(detail) => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                tracing::error!(error_id = %id, detail = %detail, "store error");
                Self::Internal(format!(
                    "the store failed to complete the request (a bug, not an outage: retrying \
                     will not help); the server's log has it as error_id {id}"
                ))
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(e) => e.into(),
            ServiceError::InvalidRange(message) => Self::bad_request(message),
            ServiceError::Refused(refusal) => Self::field(refusal.field, refusal.message),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        if e.too_large {
            ApiError::TooLarge {
                message: e.message,
                field: e.field,
            }
        } else {
            ApiError::BadRequest {
                message: e.message,
                field: e.field,
            }
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large("request body is larger than the configured limit")
        } else {
            Self::bad_request(format!("could not read the request body: {rejection}"))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(format!("malformed query string: {rejection}"))
    }
}
