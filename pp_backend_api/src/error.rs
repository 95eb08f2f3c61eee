//! The handlers' error type, and the JSON error body as an answer.
//!
//! Every error answer has the original project's shape, [`ErrorBody`] (pp_lib's contract):
//! `{"http_code": 404, "message": "no work with id 7"}`, with that status. Input errors say what was wrong; an unexpected failure is an
//! opaque 500 whose cause is logged once, here, with its chain; a database that cannot be reached
//! is a 503, so clients and load balancers know to retry.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
pub use pp_lib::contract::ErrorBody;

/// An [`ErrorBody`] as an actix answer: `ErrorBody::response(StatusCode::NOT_FOUND, "…")`.
pub trait ErrorResponse {
    /// The answer with this status and message, the status repeated in the body.
    fn response(status: StatusCode, message: impl Into<String>) -> HttpResponse;
}

impl ErrorResponse for ErrorBody {
    fn response(status: StatusCode, message: impl Into<String>) -> HttpResponse {
        HttpResponse::build(status).json(ErrorBody {
            http_code: status.as_u16(),
            message: message.into(),
        })
    }
}

/// `Retry-After` of a 503: soon enough for a passing overload, long enough not to add to it.
pub const RETRY_AFTER_SECONDS: &str = "1";

/// Every way a handler fails.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but contradicts an earlier one (an idempotency key reused).
    #[error("{0}")]
    Unprocessable(String),
    /// The database cannot be reached now; retrying later may succeed.
    #[error("database unavailable, retry later")]
    Unavailable(#[source] pp_lib::Error),
    /// Too many requests wait for the database: this one was not run (load shedding).
    #[error("the server is busy, retry later")]
    Busy,
    /// As many requests wait for works (`Prefer: wait`) as the server allows.
    #[error(
        "{0} requests already wait for works (PP_WAITERS_MAX); retry later, or ask without Prefer: wait"
    )]
    TooManyWaiting(usize),
    /// Anything unexpected. Its text is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::Busy | ApiError::TooManyWaiting(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Unavailable(cause) => log::warn!("database unavailable: {cause}"),
            ApiError::Internal(cause) => log::error!("request failed: {cause:#}"),
            _ => {}
        }
        let mut response = ErrorBody::response(self.status_code(), self.to_string());
        if let ApiError::Unavailable(_) | ApiError::Busy | ApiError::TooManyWaiting(_) = self {
            // Overload and outages pass: tell clients when to come back instead of hammering.
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

impl From<pp_lib::Error> for ApiError {
    fn from(error: pp_lib::Error) -> Self {
        match error {
            pp_lib::Error::Input(input) => ApiError::BadRequest(input.to_string()),
            pp_lib::Error::NotFound { .. } => ApiError::NotFound(error.to_string()),
            error if error.is_transient() => ApiError::Unavailable(error),
            error => ApiError::Internal(error.into()),
        }
    }
}

impl From<pp_lib::InputError> for ApiError {
    fn from(error: pp_lib::InputError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(anyhow::anyhow!("a database task did not finish: {error}"))
    }
}

/// 404 for a path no route has.
pub async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    ErrorBody::response(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.path()),
    )
}
