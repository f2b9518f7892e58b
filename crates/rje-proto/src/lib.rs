//! The public wire format of rje: every JSON body the HTTP API and the
//! WebSockets send or accept beyond the raw request objects, as plain serde
//! types. The server and every client share these, and nothing here knows
//! about HTTP, storage or execution, so a client depends on them alone.
//!
//! Field names and values are the original API's; everything rje adds is
//! an extra field.

mod access;
mod error;
mod job;
mod logs;
mod request;
mod run;
mod schedule;
mod service;
mod ws;

pub use access::{AuditResponse, TokenCreated, TokenListResponse, TokenRequest, WhoAmIResponse};
pub use error::ErrorBody;
pub use job::{JobListResponse, JobResponse, JobStatsResponse, PriorityCounts, StatusCounts};
pub use logs::{ChunkResponse, LogsResponse};
pub use request::{EditRequest, Parameters, SubmitRequest};
pub use run::{RunCounts, RunListResponse, RunMessage, RunRequest, RunResponse};
pub use schedule::{
    LastJob, PruneResponse, ScheduleEdit, ScheduleListResponse, ScheduleRequest, ScheduleResponse,
};
pub use service::{
    HealthResponse, HostListResponse, ReadyResponse, WorkerListResponse, WorkerResponse,
};
pub use ws::{EventMessage, WsKind, WsMessage};
