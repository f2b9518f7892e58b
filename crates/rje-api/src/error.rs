//! The API's one error type and its one mapping to HTTP statuses and the
//! `{error, details}` body.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rje_domain::{Denied, FieldError, Status, ValidationError};
use rje_proto::ErrorBody;
use rje_store::StoreError;

/// Every way a request can fail, mapped to HTTP in [`IntoResponse`] below
/// and nowhere else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Validation(#[from] ValidationError),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// The token's role, scope or ownership does not cover the request.
    #[error("{0}")]
    Denied(#[from] Denied),
    /// A `Host` this server does not answer to without a token: a
    /// DNS-rebinding page's name.
    #[error(
        "this server does not answer to the host name {0:?}; add it to RJE_ALLOWED_HOSTS or use a token"
    )]
    MisdirectedHost(String),
    /// A WebSocket or a change sent by another site's page.
    #[error("cross-site request from {0} refused; allow its origin with RJE_CORS_ORIGINS")]
    CrossSite(String),
    #[error("job not found")]
    JobNotFound,
    #[error("no host named {0:?}")]
    HostNotFound(String),
    #[error("no token named {0:?}")]
    TokenNotFound(String),
    #[error("no schedule with the id or name {0:?}")]
    ScheduleNotFound(String),
    #[error("run not found")]
    RunNotFound,
    /// A run's step its status does not allow (a cancel of a run that
    /// ended, a retry of one still running).
    #[error(transparent)]
    RunConflict(#[from] rje_domain::RunConflict),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("not allowed while the job is {status}")]
    Conflict { status: Status },
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    /// An `Idempotency-Key` that made a job from another request.
    #[error("the Idempotency-Key {0:?} was used for another request")]
    KeyReused(String),
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("too many requests; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("store unavailable, try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) | ApiError::MisdirectedHost(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Denied(_) | ApiError::CrossSite(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::JobNotFound
            | ApiError::HostNotFound(_)
            | ApiError::TokenNotFound(_)
            | ApiError::ScheduleNotFound(_)
            | ApiError::RunNotFound
            | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. }
            | ApiError::RunConflict(_)
            | ApiError::NameTaken(_)
            | ApiError::KeyReused(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let details = match &self {
            ApiError::Validation(err) => err.details.clone(),
            ApiError::Conflict { status } => vec![FieldError {
                field: "status".into(),
                message: format!("is {status}"),
            }],
            ApiError::RunConflict(conflict) => vec![FieldError {
                field: "status".into(),
                message: conflict.to_string(),
            }],
            ApiError::NameTaken(_) => vec![FieldError {
                field: "name".into(),
                message: "is taken: choose another".into(),
            }],
            ApiError::KeyReused(_) => vec![FieldError {
                field: "Idempotency-Key".into(),
                message: "was used for another request: use a new key for a new job".into(),
            }],
            ApiError::Denied(denied) => {
                crate::metrics::denied(denied.reason());
                vec![FieldError {
                    field: denied.missing().into(),
                    message: denied.to_string(),
                }]
            }
            _ => Vec::new(),
        };
        match &self {
            // The cause is for operators, never for clients.
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "store unavailable"),
            _ => {}
        }
        let body = Json(ErrorBody {
            error: self.to_string(),
            details,
        });
        let mut response = (status, body).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: the connection cannot
            // carry another request.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::JobNotFound,
            StoreError::Conflict { status } => ApiError::Conflict { status },
            StoreError::NameTaken(name) => ApiError::NameTaken(name),
            StoreError::KeyReused(key) => ApiError::KeyReused(key),
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Fenced | StoreError::Internal(_) => ApiError::Internal(err.to_string()),
        }
    }
}

/// Answers the rejections of axum's own extractors (a path segment that is
/// not UTF-8, say) with the JSON error every other refusal has, instead of
/// their plain text.
pub(crate) async fn plain_rejections_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(plain && response.status().is_client_error()) {
        return response;
    }
    let status = response.status();
    // A rejection's text is one short sentence.
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    (
        status,
        Json(ErrorBody {
            error: message,
            details: Vec::new(),
        }),
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    // An unreachable store cannot be produced on demand with SQLite, so the
    // mapping itself is checked here.
    #[tokio::test]
    async fn store_failures_map_to_503_and_500_without_leaking_causes() {
        let (status, body) =
            body_of(StoreError::Unavailable("db.internal:5432 refused".into()).into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.to_string().contains("5432"), "{body}");

        let (status, body) =
            body_of(StoreError::Internal("UNIQUE constraint failed: jobs.id".into()).into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal error");
        assert_eq!(body["details"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn conflicts_name_the_status() {
        let (status, body) = body_of(
            StoreError::Conflict {
                status: Status::Running,
            }
            .into(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["details"][0]["field"], "status");
        assert_eq!(body["details"][0]["message"], "is Running");
    }
}
