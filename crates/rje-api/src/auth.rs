//! Bearer-token authentication: one middleware in front of every route
//! except the health probes.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// Requires a configured bearer token on every route but the probes
/// `/health` and `/ready`, which reveal nothing but up or down. The
/// WebSocket also takes it as `?token=`, since browsers cannot set headers
/// on a WebSocket.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = &state.settings.tokens;
    if tokens.is_empty() || matches!(request.uri().path(), "/health" | "/ready") {
        return Ok(next.run(request).await);
    }
    let mut headers = request.headers().get_all(header::AUTHORIZATION).iter();
    let from_header = headers.next().map(|value| bearer_token(value.as_bytes()));
    if headers.next().is_some() {
        // Which one would count is a guess a proxy and rje could make
        // differently: refuse rather than pick.
        return Err(ApiError::BadRequest(
            "more than one Authorization header".into(),
        ));
    }
    let from_query = if request.uri().path().starts_with("/ws/") {
        request.uri().query().and_then(token_in_query)
    } else {
        None
    };
    let presented = match from_header {
        Some(header) => header,
        None => from_query,
    };
    match presented {
        Some(token) if is_valid(tokens, &token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is
/// case-insensitive (RFC 9110 §11.1); anything else presents no token.
fn bearer_token(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn token_in_query(query: &str) -> Option<String> {
    serde_urlencoded_pairs(query)
        .into_iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value)
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

/// Compares against every token in constant time, so that timing reveals
/// neither which token nor how much of one matched.
fn is_valid(tokens: &[String], presented: &str) -> bool {
    tokens.iter().fold(false, |found, token| {
        found | bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let tokens = vec!["alpha".to_owned(), "beta".to_owned()];
        assert!(is_valid(&tokens, "beta"));
        assert!(!is_valid(&tokens, "bet"));
        assert!(!is_valid(&tokens, "betaa"));
        assert!(!is_valid(&tokens, ""));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER t0k",
            "BeArEr   t0k ",
            "Bearer\tt0k",
        ] {
            assert_eq!(
                bearer_token(value.as_bytes()).as_deref(),
                Some("t0k"),
                "{value}"
            );
        }
        for value in ["Basic dXNlcg==", "Bearer", "t0k", "Bearert0k"] {
            assert_eq!(bearer_token(value.as_bytes()), None, "{value}");
        }
        assert_eq!(bearer_token(b"Bearer \xff"), None);
    }

    #[test]
    fn token_is_read_from_the_query() {
        assert_eq!(
            token_in_query("since=3&token=a%20b").as_deref(),
            Some("a b")
        );
        assert_eq!(token_in_query("since=3"), None);
    }
}
