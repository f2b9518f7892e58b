//! Bearer-token authentication: one middleware in front of every route
//! except the health probes (and the docs, unless they are private).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// Requires a configured bearer token on every route it wraps (every
/// route but the probes, and the docs unless they are private). The
/// WebSocket also takes it as `?token=`, since browsers cannot set headers
/// on a WebSocket.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = &state.settings.tokens;
    if tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    match presented_token(&request)? {
        Some(token) if is_valid(tokens, &token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The token a request presents: the `Authorization: Bearer` header, or
/// `?token=` on a WebSocket route. Two `Authorization` headers are refused:
/// which one counts is a guess a proxy and rje could make differently.
pub(crate) fn presented_token<B>(
    request: &axum::http::Request<B>,
) -> Result<Option<String>, ApiError> {
    let mut headers = request.headers().get_all(header::AUTHORIZATION).iter();
    let from_header = headers.next().map(|value| bearer_token(value.as_bytes()));
    if headers.next().is_some() {
        return Err(ApiError::BadRequest(
            "more than one Authorization header".into(),
        ));
    }
    Ok(match from_header {
        Some(header) => header,
        None if request.uri().path().starts_with("/ws/") => {
            request.uri().query().and_then(token_in_query)
        }
        None => None,
    })
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

fn is_valid(tokens: &[String], presented: &str) -> bool {
    token_index(tokens, presented).is_some()
}

/// The place of `presented` among the tokens. Every token is compared, in
/// constant time, so that timing reveals neither which token nor how much
/// of one matched.
pub(crate) fn token_index(tokens: &[String], presented: &str) -> Option<usize> {
    tokens
        .iter()
        .enumerate()
        .fold(None, |found, (index, token)| {
            if bool::from(token.as_bytes().ct_eq(presented.as_bytes())) {
                Some(index)
            } else {
                found
            }
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
