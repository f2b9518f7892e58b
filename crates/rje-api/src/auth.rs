//! Bearer-token authentication: one middleware in front of every route
//! except the health probes (and the docs, unless they are private). It
//! finds who a request is (a [`Principal`]) and hands it on in the
//! request's extensions; what the principal may do is decided after it
//! (`rules`, and the handlers for scopes and owners).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use rje_domain::{ENV_TOKEN_PREFIX, Principal, Role, Scope};
use rje_store::{Access, hash_secret, is_secret_shaped};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// How a process tells who presents a token: the tokens of its
/// configuration (each an admin), then the store's, shared by every
/// process and revoked at once (each request looks its token up).
pub(crate) struct Authentication {
    configured: Vec<String>,
    /// Each configured token's name, in the same order.
    configured_names: Vec<String>,
    /// Tokens are asked for: some are configured, or the store holds one.
    /// Once so, so until the process ends.
    required: AtomicBool,
    /// While none is, when the store was last asked whether it holds one.
    last_asked: tokio::sync::Mutex<Option<Instant>>,
    /// The names of the store's live tokens, as last read, for sessions
    /// that outlive their request (WebSockets): one read a second for all.
    live: tokio::sync::Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl Authentication {
    /// While a server runs without tokens, how often it asks the store
    /// whether one was made meanwhile (`rje tokens create --local`).
    const ASK_EVERY: Duration = Duration::from_secs(1);
    /// A configured secret shorter than this is worth a warning: guesses
    /// at it can be tested against its name.
    const STRONG_SECRET: usize = 32;

    pub(crate) fn new(configured: &[String], tokens_in_store: bool) -> Self {
        if configured
            .iter()
            .any(|secret| secret.len() < Self::STRONG_SECRET)
        {
            tracing::warn!(
                "RJE_API_TOKENS holds a token shorter than {} characters: read tokens see \
                 its name (env-…) and could test guesses at it; use random secrets, \
                 e.g. `openssl rand -hex 32`",
                Self::STRONG_SECRET
            );
        }
        Self {
            configured: configured.to_vec(),
            configured_names: configured
                .iter()
                .map(|secret| configured_name(secret))
                .collect(),
            required: AtomicBool::new(!configured.is_empty() || tokens_in_store),
            last_asked: tokio::sync::Mutex::new(None),
            live: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether a session that `principal` opened may go on: `false` once
    /// its store token was revoked (seen within a second). Configured
    /// tokens and servers without tokens are never revoked. While the
    /// store cannot be read, sessions go on: nothing else is decided then.
    pub(crate) async fn still_valid(&self, principal: &Principal, access: &dyn Access) -> bool {
        let Some(name) = principal.name.as_deref() else {
            return true;
        };
        if name.starts_with(ENV_TOKEN_PREFIX) {
            return true;
        }
        let mut live = self.live.lock().await;
        // A name missing from a recent read may be a token made since: only
        // a fresh read says it was revoked.
        if let Some((at, names)) = live.as_ref()
            && at.elapsed() < Self::ASK_EVERY
            && names.contains(name)
        {
            return true;
        }
        match access.tokens().await {
            Ok(tokens) => {
                let names: HashSet<String> = tokens.into_iter().map(|token| token.name).collect();
                let valid = names.contains(name);
                *live = Some((Instant::now(), Arc::new(names)));
                valid
            }
            Err(err) => {
                tracing::warn!(%err, "cannot tell whether a session's token is revoked");
                true
            }
        }
    }

    /// Whether a session of `principal` must be checked for revocation.
    pub(crate) fn may_be_revoked(principal: &Principal) -> bool {
        principal
            .name
            .as_deref()
            .is_some_and(|name| !name.starts_with(ENV_TOKEN_PREFIX))
    }

    /// A token was made here: from now on, tokens are asked for.
    pub(crate) fn require_tokens(&self) {
        self.required.store(true, Ordering::Relaxed);
    }

    /// Whether the server answers without a token: none is configured and
    /// the store held none when last asked (at most a second ago).
    pub(crate) async fn is_open(&self, access: &dyn Access) -> Result<bool, ApiError> {
        if self.required.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut last_asked = self.last_asked.lock().await;
        if last_asked.is_some_and(|at| at.elapsed() < Self::ASK_EVERY) {
            return Ok(true);
        }
        if access.has_tokens().await? {
            self.require_tokens();
            return Ok(false);
        }
        *last_asked = Some(Instant::now());
        Ok(true)
    }

    /// Who presents `secret`: a configured token's admin, a store token's
    /// principal, or `None` for a token that is neither.
    pub(crate) async fn principal_of(
        &self,
        secret: &str,
        access: &dyn Access,
    ) -> Result<Option<Principal>, ApiError> {
        if let Some(index) = token_index(&self.configured, secret) {
            return Ok(Some(Principal {
                name: self.configured_names.get(index).cloned(),
                role: Role::Admin,
                scope: Scope::everything(),
            }));
        }
        if !is_secret_shaped(secret) {
            return Ok(None);
        }
        // The store compares hashes, never the secret itself.
        match access.token_by_hash(&hash_secret(secret)).await? {
            Some(token) => {
                self.require_tokens();
                Ok(Some(token.principal()))
            }
            None => Ok(None),
        }
    }
}

/// The name a configured token goes by in `submitted_by` and the audit
/// trail, which read tokens see: 8 hex digits of a memory-hard hash of it.
/// A fast hash's would let anyone with a read token try guesses at a weak
/// configured secret offline at billions a second; Argon2id makes each
/// guess cost what it costs here once per start.
pub fn configured_name(secret: &str) -> String {
    // Fixed, valid parameters (OWASP's minimum memory, two passes): they
    // cannot fail, and a failure would only cost the name its digits.
    let mut digest = [0u8; 4];
    let named = argon2::Params::new(19 * 1024, 2, 1, Some(digest.len()))
        .map(|params| {
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        })
        .and_then(|argon| argon.hash_password_into(secret.as_bytes(), NAME_SALT, &mut digest));
    if let Err(err) = named {
        tracing::error!(%err, "cannot name a configured token");
    }
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{ENV_TOKEN_PREFIX}{hex}")
}

/// The same for every deployment, so that every process names a configured
/// token alike; its secrecy is not what protects the token.
const NAME_SALT: &[u8] = b"rje configured token name";

/// Finds who a request is, on every route it wraps (every route but the
/// probes, and the docs unless they are private). The WebSocket also takes
/// the token as `?token=`, since browsers cannot set headers on a
/// WebSocket. A server without tokens takes anyone (it listens on loopback
/// only), as before tokens had names: a token presented to it that it does
/// not know is not refused.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let auth = &state.authentication;
    let access = &*state.access;
    let principal = match presented_token(&request)? {
        Some(secret) => match auth.principal_of(&secret, access).await? {
            Some(principal) => principal,
            None if auth.is_open(access).await? => Principal::anyone(),
            None => return Err(ApiError::Unauthorized),
        },
        None if auth.is_open(access).await? => Principal::anyone(),
        None => return Err(ApiError::Unauthorized),
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
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

    fn is_valid(tokens: &[String], presented: &str) -> bool {
        token_index(tokens, presented).is_some()
    }

    #[test]
    fn a_configured_token_is_named_by_its_hash_not_by_itself() {
        let name = configured_name("root-secret");
        assert!(name.starts_with("env-") && name.len() == 12, "{name}");
        assert!(!name.contains("root"));
        assert_ne!(name, configured_name("other-secret"));
    }

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
