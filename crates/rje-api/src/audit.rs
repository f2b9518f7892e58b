//! The audit trail: every request that changes something, once it got
//! past authentication, is appended to the store with who asked, from
//! where, what it touched and how it ended (refusals included). And
//! `GET /audit/`, an admin's page of it.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use rje_domain::{AuditEntry, AuditQuery, Principal};
use rje_proto::AuditResponse;
use rje_store::{Access, MAX_AUDIT_BATCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::QueryPairs;
use crate::openapi::Guarded;
use crate::{ApiError, AppState};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit))
}

/// What a handler touched that its path does not name (a new job's id, a
/// new token's name), put in its response for the trail.
#[derive(Clone)]
pub(crate) struct AuditTarget(pub String);

/// Records a change once it is answered: its entry is written before the
/// answer leaves, so that a client that saw its answer finds the entry.
/// A write that fails is logged and counted, and does not undo the change.
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let changes = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let principal = request.extensions().get::<Principal>().cloned();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let (Some(principal), Some(route), true) = (principal, route, changes) else {
        return Ok(next.run(request).await);
    };
    let (mut parts, body) = request.into_parts();
    let named = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| params.iter().next().map(|(_, value)| target_of(value)));
    let request = Request::from_parts(parts, body);
    let client = state.clients.client_address(&request).to_string();
    let method = request.method().to_string();
    // Waiting here for room costs nothing if the client leaves: nothing
    // has been changed yet.
    let admitted = state.audit.admit().await?;
    // The change and its entry run on together, whether or not the client
    // waits for the answer: a client that hangs up once the change is made
    // does not take the entry with it.
    tokio::spawn(async move {
        let _admitted = admitted;
        let response = next.run(request).await;
        let target = response
            .extensions()
            .get::<AuditTarget>()
            .map(|target| target.0.clone())
            .or(named);
        let entry = AuditEntry {
            at: Utc::now(),
            token: principal.name,
            client,
            method,
            route: route.as_str().to_owned(),
            target,
            status: response.status().as_u16(),
        };
        state.audit.append(entry).await;
        response
    })
    .await
    .map_err(|err| ApiError::Internal(format!("a change's task failed: {err}")))
}

/// Writes the audit trail's entries as they come, each write taking all
/// those that arrived meanwhile (up to [`MAX_AUDIT_BATCH`]): under a flood
/// of changes the trail costs one write per batch rather than one per
/// change, and each change still waits for its entry to be stored.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    access: Arc<dyn Access>,
    /// Started at the first entry, on the runtime that serves requests.
    queue: Arc<OnceLock<mpsc::Sender<Pending>>>,
    /// Changes under way with their entries: bounded, so that a store that
    /// stalls holds back new changes rather than pile them up in memory,
    /// and counted, so that a stopping server waits for their entries.
    in_flight: Arc<Semaphore>,
}

/// An entry waiting for its write, and whom to tell how it went.
type Pending = (AuditEntry, oneshot::Sender<bool>);

impl AuditWriter {
    /// Entries waiting at most: past them a change waits for room, so that
    /// a store that cannot keep up slows changes rather than fill memory.
    const QUEUE: usize = 4 * MAX_AUDIT_BATCH;

    /// Changes under way at once, entries included.
    const IN_FLIGHT: u32 = 1024;

    pub(crate) fn new(access: Arc<dyn Access>) -> Self {
        Self {
            access,
            queue: Arc::new(OnceLock::new()),
            in_flight: Arc::new(Semaphore::new(Self::IN_FLIGHT as usize)),
        }
    }

    /// Room for one more change; it is held until its entry is written.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable("the server is stopping".into()))
    }

    /// Waits, at most `within`, until every change under way has its entry
    /// written; then takes no more. For a server that stops.
    pub(crate) async fn settle(&self, within: std::time::Duration) {
        let all = self.in_flight.acquire_many(Self::IN_FLIGHT);
        match tokio::time::timeout(within, all).await {
            Ok(Ok(permits)) => permits.forget(),
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                under_way = Self::IN_FLIGHT as usize - self.in_flight.available_permits(),
                "stopping with changes whose audit entries are not written yet"
            ),
        }
        self.in_flight.close();
    }

    /// Stores `entry`; once this returns it is in the trail, or its write
    /// failed and was logged and counted.
    pub(crate) async fn append(&self, entry: AuditEntry) {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(Self::QUEUE);
            tokio::spawn(write_batches(self.access.clone(), receiver));
            sender
        });
        let (done, written) = oneshot::channel();
        let stored = queue.send((entry, done)).await.is_ok() && written.await.unwrap_or(false);
        crate::metrics::audit_written(stored);
    }
}

/// The writer's loop: waits for an entry, takes those queued behind it,
/// writes them at once, and tells each sender.
async fn write_batches(access: Arc<dyn Access>, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_AUDIT_BATCH);
    while receiver.recv_many(&mut batch, MAX_AUDIT_BATCH).await > 0 {
        let entries: Vec<AuditEntry> = batch.iter().map(|(entry, _)| entry.clone()).collect();
        let written = access.append_audit(&entries).await;
        if let Err(err) = &written {
            tracing::error!(%err, entries = entries.len(), "could not record changes in the audit trail");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(written.is_ok());
        }
    }
}

/// The most of a path's own text an entry keeps: job ids, host and token
/// names are far shorter, and a made-up path must not grow the trail.
const MAX_TARGET_CHARS: usize = 100;

/// A path parameter as the trail keeps it: at most [`MAX_TARGET_CHARS`],
/// and printable (see [`rje_domain::printable`]).
fn target_of(value: &str) -> String {
    let head: String = value.chars().take(MAX_TARGET_CHARS).collect();
    let mut kept = rje_domain::printable(&head);
    if value.chars().nth(MAX_TARGET_CHARS).is_some() {
        kept.push('…');
    }
    kept
}

/// The audit trail's query parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the document; the handler parses the pairs.
struct AuditParams {
    /// Entries per page.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Entries to skip.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    offset: Option<u64>,
    /// Only this token's entries (its name).
    #[param(max_length = 200, pattern = "^[^\\x00]*$")]
    token: Option<String>,
    /// Only this route's (its pattern, as entries show it: `/jobs/{id}/cancel`).
    #[param(max_length = 200, pattern = "^[^\\x00]*$")]
    route: Option<String>,
}

/// The audit trail, newest first: every change asked of the API, who
/// asked and how it ended.
#[utoipa::path(
    get,
    path = "/audit",
    operation_id = "audit_trail",
    tag = "access",
    params(AuditParams),
    responses((status = 200, description = "A page of the trail", body = AuditResponse), Guarded),
    security(("bearer" = []))
)]
async fn audit(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<AuditResponse>, ApiError> {
    let query = AuditQuery::parse(query.iter())?;
    let page = state.access.audit(&query).await?;
    Ok(Json(AuditResponse {
        entries: page.entries,
        total_count: page.total_count,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_kept_short_and_printable() {
        assert_eq!(target_of("web-1"), "web-1");
        assert_eq!(target_of("a\u{1b}[2Jb\0c"), "a\\u{1b}[2Jb\\u{0}c");
        assert_eq!(target_of("\u{202e}x"), "\\u{202e}x");
        assert_eq!(target_of("\u{61c}\u{feff}é"), "\\u{61c}\\u{feff}\\u{e9}");
        let kept = target_of(&"a".repeat(60_000));
        assert_eq!(kept.chars().count(), MAX_TARGET_CHARS + 1);
        assert!(kept.ends_with('…'));
    }
}
