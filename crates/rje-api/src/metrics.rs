//! `GET /metrics`: Prometheus' text format, rendered by this handler (no
//! second listener). Counters and histograms are this process's own; the
//! queue's gauges are read from the store at each scrape, so any API
//! process answers for the whole deployment.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rje_domain::{HostKind, Priority, Status};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::Guarded;
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Buckets in seconds, from a fast local job to a long one.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The process's recorder, installed on first use. A process has one
/// global recorder; a second app in the same process (tests) shares it.
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = [
            ("rje_job_start_delay_seconds", LATENCY_BUCKETS),
            ("rje_job_duration_seconds", DURATION_BUCKETS),
            ("rje_http_request_duration_seconds", HTTP_BUCKETS),
        ]
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                // Only an empty bucket list fails, and these are not empty.
                .expect("buckets are not empty")
        });
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(err) => {
                tracing::warn!(%err, "another metrics recorder is installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("rje_jobs_created_total", "Jobs submitted to this process.");
    describe_counter!("rje_runs_created_total", "Runs started on this process.");
    describe_histogram!("rje_run_hosts", "Hosts per run started on this process.");
    describe_counter!(
        "rje_job_outcomes_total",
        "Jobs that ended, by outcome as an operator reads it (Success, Failed, TimedOut, Unreachable, AuthFailed, Cancelled, Skipped)."
    );
    describe_counter!(
        "rje_jobs_finished_total",
        "Jobs that reached a final status in this process, by status."
    );
    describe_gauge!(
        "rje_jobs_queued",
        "Jobs waiting now, in the whole deployment."
    );
    describe_gauge!(
        "rje_jobs_running",
        "Jobs running now, in the whole deployment."
    );
    describe_histogram!(
        "rje_job_start_delay_seconds",
        Unit::Seconds,
        "From submit to the command's start."
    );
    describe_histogram!(
        "rje_job_duration_seconds",
        Unit::Seconds,
        "From the command's start to the job's end."
    );
    describe_counter!(
        "rje_job_output_bytes_total",
        Unit::Bytes,
        "Output stored by this process's worker."
    );
    describe_gauge!(
        "rje_websocket_subscribers",
        "WebSocket clients connected to this process."
    );
    describe_gauge!("rje_ssh_connections", "Open SSH connections per host.");
    describe_gauge!("rje_ssh_channels_in_use", "SSH channels in use per host.");
    describe_counter!(
        "rje_ssh_connect_failures_total",
        "Failed SSH connections and checks per host."
    );
    describe_counter!("rje_http_requests_total", "HTTP requests answered.");
    describe_counter!(
        "rje_api_denied_total",
        "Requests refused for the token's role, scope or ownership, by reason."
    );
    describe_counter!(
        "rje_audit_entries_total",
        "Changes recorded in the audit trail by this process."
    );
    describe_counter!(
        "rje_audit_write_failures_total",
        "Changes this process could not record in the audit trail."
    );
    describe_counter!(
        "rje_jobs_pruned_total",
        "Finished jobs deleted by this process, by trigger (retention, request)."
    );
    describe_counter!(
        "rje_job_reruns_total",
        "Automatic retries of failed jobs (retry_on_failure) queued by this process's worker."
    );
    describe_counter!(
        "rje_schedule_fires_total",
        "Fire times this process won, by outcome: fired, caught_up (a missed fire run once), skipped (overlap), missed."
    );
    describe_counter!(
        "rje_schedule_missed_fires_total",
        "Fire times that passed while no scheduler ran and were never fired (counted by the process that noticed)."
    );
    describe_histogram!(
        "rje_schedule_fire_delay_seconds",
        Unit::Seconds,
        "From a fire time to the job's creation."
    );
    describe_histogram!(
        "rje_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (to the head of a streamed body)."
    );
}

/// Prometheus' text format (see docs/METRICS.md for every metric).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "service",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        Guarded,
    ),
    security(("bearer" = []))
)]
async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let handle = handle();
    let counts = state.store.count_active().await?;
    for priority in Priority::ALL {
        for (status, name) in [
            (Status::Queued, "rje_jobs_queued"),
            (Status::Running, "rje_jobs_running"),
        ] {
            let jobs = counts
                .iter()
                .filter(|c| c.status == status && c.priority == *priority)
                .map(|c| c.jobs)
                .sum::<u64>();
            metrics::gauge!(name, "priority" => priority.as_str()).set(jobs as f64);
        }
    }
    for host in state
        .hosts
        .list()
        .into_iter()
        .filter(|h| h.kind == HostKind::Ssh)
    {
        let health = &host.health;
        let name = host.name.clone();
        metrics::gauge!("rje_ssh_connections", "host" => name.clone())
            .set(health.connections as f64);
        metrics::gauge!("rje_ssh_channels_in_use", "host" => name.clone())
            .set(health.channels_in_use as f64);
        metrics::counter!("rje_ssh_connect_failures_total", "host" => name)
            .absolute(health.connect_failures);
    }
    handle.run_upkeep();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}

/// A method as a label: the standard ones by name, any other as `other`,
/// so that a client sending made-up methods cannot make a series each
/// (every label of rje's comes from a closed set).
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// Counts and times every request by its route (the pattern, never the
/// path, so job ids do not make a series each) and status.
pub(crate) async fn track_requests(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let began = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "rje_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status,
    )
    .increment(1);
    metrics::histogram!(
        "rje_http_request_duration_seconds",
        "method" => method,
        "route" => route,
    )
    .record(began.elapsed().as_secs_f64());
    response
}

/// Counts a WebSocket subscriber for as long as it lives.
pub(crate) struct Subscriber(&'static str);

impl Subscriber {
    pub(crate) fn new(stream: &'static str) -> Self {
        metrics::gauge!("rje_websocket_subscribers", "stream" => stream).increment(1.0);
        Self(stream)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        metrics::gauge!("rje_websocket_subscribers", "stream" => self.0).decrement(1.0);
    }
}

/// A job submitted here.
pub(crate) fn job_created(priority: Priority, host: &str) {
    metrics::counter!(
        "rje_jobs_created_total",
        "priority" => priority.as_str(),
        "host" => host.to_owned(),
    )
    .increment(1);
}

/// A run started over `hosts` hosts.
pub(crate) fn run_created(hosts: usize) {
    metrics::counter!("rje_runs_created_total").increment(1);
    metrics::histogram!("rje_run_hosts").record(hosts as f64);
}

/// A request refused for `reason`: `role`, `host` or `owner`.
pub(crate) fn denied(reason: &'static str) {
    metrics::counter!("rje_api_denied_total", "reason" => reason).increment(1);
}

/// An audit entry written, or not.
pub(crate) fn audit_written(written: bool) {
    if written {
        metrics::counter!("rje_audit_entries_total").increment(1);
    } else {
        metrics::counter!("rje_audit_write_failures_total").increment(1);
    }
}

pub(crate) fn jobs_pruned(trigger: &'static str, deleted: u64) {
    metrics::counter!("rje_jobs_pruned_total", "trigger" => trigger).increment(deleted);
}

/// A fire time this process won: `outcome` is `fired`, `caught_up`,
/// `skipped` or `missed`; `delay` from the fire time to the job, for a
/// job made.
pub fn schedule_fire(outcome: &'static str, delay: Option<f64>) {
    metrics::counter!("rje_schedule_fires_total", "outcome" => outcome).increment(1);
    if let Some(delay) = delay {
        metrics::histogram!("rje_schedule_fire_delay_seconds").record(delay);
    }
}

/// Fire times that passed while no scheduler ran, never fired.
pub fn schedule_missed(count: u64) {
    metrics::counter!("rje_schedule_missed_fires_total").increment(count);
}
