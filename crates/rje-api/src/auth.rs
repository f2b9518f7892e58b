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
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let from_query = if request.uri().path().starts_with("/ws/") {
        request.uri().query().and_then(token_in_query)
    } else {
        None
    };
    let presented = from_header.map(str::to_owned).or(from_query);
    match presented {
        Some(token) if is_valid(tokens, &token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
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
    fn token_is_read_from_the_query() {
        assert_eq!(
            token_in_query("since=3&token=a%20b").as_deref(),
            Some("a b")
        );
        assert_eq!(token_in_query("since=3"), None);
    }
}
