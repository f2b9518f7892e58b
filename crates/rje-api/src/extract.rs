//! Extractors that fail with [`ApiError`], so that a malformed request gets
//! the same JSON error shape as every other failure.

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use rje_domain::JobId;
use serde_json::Value;

use crate::ApiError;
use crate::state::AppState;
use crate::strict_json::{self, StrictJsonError};

/// A request body that is a JSON object.
pub(crate) struct JsonObject(pub Value);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.settings.max_body_bytes;
        let within = state.settings.body_timeout;
        let bytes = tokio::time::timeout(within, Bytes::from_request(request, state))
            .await
            .map_err(|_| ApiError::RequestTimeout)?
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })?;
        let value = strict_json::parse(&bytes).map_err(|err| match err {
            StrictJsonError::Duplicate(path) => {
                rje_domain::ValidationError::field(&path, "appears more than once").into()
            }
            StrictJsonError::Inexact(path) => rje_domain::ValidationError::field(
                &path,
                "is a number outside the 64-bit integer range, which rje cannot keep exactly; send it as a string",
            )
            .into(),
            StrictJsonError::Syntax(err) => {
                ApiError::BadRequest(format!("request body is not valid JSON: {err}"))
            }
        })?;
        if !value.is_object() {
            return Err(ApiError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        }
        Ok(JsonObject(value))
    }
}

/// The `{id}` of a job route. A malformed id names no job: 404.
pub(crate) struct JobPath(pub JobId);

impl FromRequestParts<AppState> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::JobNotFound)?;
        JobId::parse(&raw).map(JobPath).ok_or(ApiError::JobNotFound)
    }
}

/// Query parameters as name/value pairs, in order.
pub(crate) struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl FromRequestParts<AppState> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::BadRequest(format!("malformed query string: {err}")))?;
        Ok(QueryPairs(pairs))
    }
}

/// Parses `since`, the last output seq a client already has.
pub(crate) fn parse_since(query: &QueryPairs) -> Result<i64, ApiError> {
    match query.get("since") {
        None => Ok(0),
        Some(text) => text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            rje_domain::ValidationError::field("since", "must be a whole number, 0 or more").into()
        }),
    }
}

/// `application/json` or a `+json` type, parameters aside. Every body rje
/// takes is JSON.
pub(crate) fn is_json_media_type(value: &axum::http::HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// Who the request is, as authentication found: every guarded route has
/// one; a request without one is not let through.
pub(crate) struct Caller(pub rje_domain::Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<rje_domain::Principal>()
            .cloned()
            .map(Caller)
            .ok_or(ApiError::Unauthorized)
    }
}
