//! Access control on the wire: who a token is, tokens, and the audit trail.

use rje_domain::{AuditEntry, Role, Token};
use serde::{Deserialize, Serialize};

/// `GET /whoami/`: the principal a request's token makes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmIResponse {
    /// The token's name; `null` when the server runs without tokens.
    pub name: Option<String>,
    pub role: Role,
    /// The hosts the token may run on and see (with those of `labels`);
    /// both empty: every host.
    pub hosts: Vec<String>,
    pub labels: Vec<String>,
    /// Whether the server asks for tokens at all.
    pub auth: bool,
}

/// `POST /tokens/`: what to create.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1 to 64 letters, digits, `-`, `_` or `.`; `env-…` is reserved for
    /// the tokens of `RJE_API_TOKENS`.
    pub name: String,
    pub role: Role,
    /// Hosts the token may run on and see; with `labels` empty too: every
    /// host. An admin token has no scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts carrying any of these labels are in the scope too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// `POST /tokens/`'s answer: the token, and its secret this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: Token,
    /// The bearer token to present. Shown only in this answer: the store
    /// keeps its SHA-256.
    pub secret: String,
}

/// `GET /tokens/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenListResponse {
    pub tokens: Vec<Token>,
}

/// `GET /audit/`: a page of the audit trail, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResponse {
    pub entries: Vec<AuditEntry>,
    pub total_count: u64,
}
