//! Schedules as clients create and read them, and the answer of a prune.

use chrono::{DateTime, Utc};
use rje_domain::{JobId, Misfire, Overlap, Priority, ScheduleId, Status};
use serde::{Deserialize, Serialize};

use crate::request::Parameters;

/// `POST /schedules/` and `PUT /schedules/{id}/` (for `PATCH`, any subset
/// of these fields). The job fields are those of `POST /jobs/`, with the
/// same rules and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Unique; letters, digits, `.`, `_` and `-`, starting with a letter or
    /// a digit, and not shaped like a UUID (routes take the id or the name).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    )]
    pub name: String,
    /// 5 fields (minute hour day month weekday), 6 with seconds first, or
    /// an alias: `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
    /// `@midnight`, `@hourly`. Read on the wall clock of `timezone`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, example = "*/5 * * * *")
    )]
    pub cron: String,
    /// An IANA time zone name; `UTC` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, example = "Europe/Paris")
    )]
    pub timezone: Option<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 65536,
            pattern = r"^[^\x00]*[^\x00\s][^\x00]*$"
        )
    )]
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 604800))]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10))]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_failure: Option<bool>,
    /// What a fire time does while the schedule's last job is Queued or
    /// Running: `allow` (fire anyway; the default), `skip` (fire nothing,
    /// and record the skip), `queue` (fire a job that waits for the last
    /// one to end: the schedule's jobs run one at a time, in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// What a fire time that passed while no rje ran does: `skip` (the
    /// default: fire at the next fire time) or `run_once` (one catch-up
    /// job for the latest missed fire time; never one per missed fire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<Misfire>,
    /// `false` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// `PATCH /schedules/{id}/`: the fields to change, those of
/// [`ScheduleRequest`]; the others stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub timezone: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10))]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<Misfire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// The newest job a schedule fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastJob {
    pub id: JobId,
    pub status: Status,
}

/// A schedule as the API returns it: its definition, with every default
/// filled in, and what it will do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleResponse {
    pub id: ScheduleId,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub command: String,
    pub priority: Priority,
    pub timeout: u32,
    pub host: String,
    pub parameters: Option<serde_json::Value>,
    pub max_retries: u32,
    pub retry_on_failure: bool,
    pub overlap: Overlap,
    pub misfire: Misfire,
    pub paused: bool,
    /// The next five fire times (RFC 3339, UTC); none while paused.
    pub next_fire_times: Vec<String>,
    pub last_job: Option<LastJob>,
    /// The name of the token that made the schedule; its jobs are
    /// submitted in that name.
    pub created_by: Option<String>,
    #[serde(with = "rje_domain::wire_time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rje_domain::wire_time")]
    pub modified_at: DateTime<Utc>,
}

/// `GET /schedules/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleListResponse {
    pub schedules: Vec<ScheduleResponse>,
    pub total_count: u64,
}

/// `POST /jobs/prune/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PruneResponse {
    /// How many finished jobs were deleted, with their output.
    pub deleted: u64,
}
