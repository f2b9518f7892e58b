//! The bodies clients send: a new job and an edit. The server reads them
//! with the domain's rules (`NewJob::parse`, `JobPatch::parse`), which say
//! more than a type can; these types describe them for clients and the
//! OpenAPI document, with the limits of a server at its defaults.

use std::collections::BTreeMap;

use rje_domain::Priority;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /jobs/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// A shell command for `/bin/sh -c`: not blank, no NUL, at most
    /// `RJE_MAX_COMMAND_BYTES` (64 KiB) bytes.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 65536,
            pattern = r"^[^\x00]*[^\x00\s][^\x00]*$"
        )
    )]
    pub command: String,
    /// `Medium` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Seconds, from 1 to `RJE_MAX_TIMEOUT_SECONDS` (7 days); 60 when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800))]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// Kept for the original API; every job's output streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// A host of `GET /hosts/`; the default host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub host: Option<String>,
    /// Retries of a command that could not start (0 to 10); 3 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10))]
    pub max_retries: Option<u32>,
    /// Run the job again, as a new job linked by `retry_of`, when its
    /// command fails (a non-zero exit, a signal, the timeout), up to
    /// `max_retries` times, after a backoff; never after a cancel. `false`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_failure: Option<bool>,
}

/// `PUT` or `PATCH /jobs/{id}/`: the fields to change. A whole job as GET
/// shows it is accepted too, its other fields unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 65536,
            pattern = r"^[^\x00]*[^\x00\s][^\x00]*$"
        )
    )]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800))]
    pub timeout: Option<u32>,
    /// `null` clears them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub host: Option<String>,
}

/// `parameters`: at most 64 KiB of JSON. `env`, `cwd` and `allow_daemons`
/// change how the command runs; rje keeps any other key as it came, for the
/// client's own use, whatever JSON it holds. No key or string anywhere in
/// them, at any depth, may contain a NUL character (U+0000): stores keep
/// parameters as JSON text. The server refuses one with 400.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Parameters {
    /// Extra environment variables (names like `[A-Za-z_][A-Za-z0-9_]*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// The absolute directory the command starts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^/[^\x00]*$"))]
    pub cwd: Option<String>,
    /// Let processes that left the job's process group outlive its normal
    /// end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_daemons: Option<bool>,
    /// The client's own keys.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}
