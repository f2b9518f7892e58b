//! `WS /ws/runs/{id}/`: every job of a run, live. The status of every job
//! (and, with `?output=true`, its output tagged with its host), then the
//! run's final status and a normal close.
//!
//! The store is the truth, the bus only a wake-up: on any status event of
//! one of its jobs the session reads the run again and sends what changed,
//! so a lost event (or a job skipped in another's transaction) costs at
//! most latency. Output comes from one subscription per job still
//! running, forwarded into one bounded queue; a job whose output has a
//! gap is read again from the store from the last line sent.

use std::collections::HashMap;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::response::Response;
use rje_bus::{JobEvent, Received};
use rje_domain::{Chunk, HostOutcome, JobId, Principal, RunId, Status};
use rje_proto::{RunCounts, RunMessage};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::extract::{Caller, QueryPairs};
use crate::metrics::Subscriber;
use crate::runs::{RunPath, find, require_hosts};
use crate::ws::{
    PING_EVERY, REPLAY_PAGE, close_with, next_check, revocation_checks, revoked_frame, send_within,
    upgrade_of,
};
use crate::{ApiError, AppState, ConnectionSlot};

/// Output deliveries waiting to be sent, for all the run's jobs together:
/// a slow client makes the per-job subscriptions fall behind, which is
/// told as a gap and read again from the store, never buffered here.
const OUTPUT_QUEUE: usize = 64;
/// How often a session reads its run again with no event: a safety net
/// for an event the bus lost, never the way news arrives.
const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RunPath(id): RunPath,
    query: QueryPairs,
    slot: Option<Extension<ConnectionSlot>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let output = match query.get("output") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(
                rje_domain::ValidationError::field("output", "must be true or false").into(),
            );
        }
    };
    // An unknown run is a plain 404, one outside the token's scope a 403,
    // whether or not the request is an upgrade.
    let run = find(&state, id).await?;
    require_hosts(&caller, &run.run.hosts, &state.settings.hosts)?;
    let ws = upgrade_of(ws)?;
    Ok(ws
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let _counted = Subscriber::new("run");
            let (forward, outputs) = mpsc::channel(OUTPUT_QUEUE);
            let mut session = RunSession {
                state,
                caller,
                id,
                socket,
                output,
                jobs: HashMap::new(),
                last_run: None,
                forward,
                forwarders: JoinSet::new(),
                followed: HashMap::new(),
            };
            let end = session.run(outputs).await;
            session.close(end).await;
        }))
}

/// Forwards the output events of `job` into the session's queue.
async fn follow_output(
    bus: &dyn rje_bus::Bus,
    job: JobId,
    forward: &mpsc::Sender<(JobId, Received<JobEvent>)>,
    forwarders: &mut JoinSet<()>,
) -> Option<AbortHandle> {
    let mut events = match bus.subscribe_job(job).await {
        Ok(events) => events,
        Err(err) => {
            tracing::warn!(%job, %err, "bus unavailable; this job's output is read at its end");
            return None;
        }
    };
    let forward = forward.clone();
    Some(forwarders.spawn(async move {
        loop {
            let received = events.recv().await;
            let closed = matches!(received, Received::Closed);
            let wanted = !matches!(received, Received::Message(JobEvent::Status(_)));
            if wanted && forward.send((job, received)).await.is_err() || closed {
                return;
            }
        }
    }))
}

enum End {
    Finished,
    ClientGone,
    Revoked,
    Deleted,
    Failed(String),
}

/// What the client has of one job.
struct Sent {
    host: String,
    status: Option<Status>,
    outcome: Option<HostOutcome>,
    last_seq: i64,
}

struct RunSession {
    state: AppState,
    caller: Principal,
    id: RunId,
    socket: WebSocket,
    output: bool,
    jobs: HashMap<JobId, Sent>,
    last_run: Option<(Status, RunCounts)>,
    /// Where the output subscriptions forward to.
    forward: mpsc::Sender<(JobId, Received<JobEvent>)>,
    forwarders: JoinSet<()>,
    /// The running jobs whose output is followed live: only those, so the
    /// subscriptions are bounded by the run's `max_parallel`, not its hosts.
    followed: HashMap<JobId, AbortHandle>,
}

impl RunSession {
    async fn run(&mut self, mut outputs: mpsc::Receiver<(JobId, Received<JobEvent>)>) -> End {
        let mut statuses = match self.state.bus.subscribe_status().await {
            Ok(statuses) => Some(statuses),
            Err(err) => {
                tracing::warn!(%err, "bus unavailable; the run's WebSocket sends what the store has only");
                None
            }
        };
        match self.sync().await {
            Ok(true) => return End::Finished,
            Ok(false) => {}
            Err(end) => return end,
        }
        let Some(statuses) = statuses.as_mut() else {
            return End::Failed("live updates are unavailable".into());
        };
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.tick().await;
        let mut checks = revocation_checks(&self.caller);
        loop {
            let step = tokio::select! {
                _ = resync.tick() => self.sync().await,
                () = next_check(&mut checks) => {
                    if self.state.authentication.still_valid(&self.caller, &*self.state.access).await {
                        Ok(false)
                    } else {
                        Err(End::Revoked)
                    }
                }
                received = statuses.recv() => match received {
                    Received::Message(event) if !self.jobs.contains_key(&event.job) => Ok(false),
                    Received::Message(_) | Received::Gap(_) => {
                        // One read of the run answers every event already
                        // waiting: a burst (a cancel, a failure limit that
                        // skips hundreds of hosts) costs one read, not one
                        // per job.
                        while statuses.try_recv().is_some() {}
                        self.sync().await
                    }
                    Received::Closed => Err(End::Failed("live updates ended".into())),
                },
                Some((job, received)) = outputs.recv() => self.on_output(job, received).await.map(|()| false),
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(End::ClientGone),
                    Some(Ok(_)) => Ok(false),
                },
                _ = ping.tick() => self
                    .send_message(Message::Ping(Default::default()))
                    .await
                    .map(|()| false),
            };
            match step {
                Ok(true) => return End::Finished,
                Ok(false) => {}
                Err(end) => return end,
            }
        }
    }

    /// Reads the run and sends what changed: each job's new status (after
    /// the rest of its output, with `?output=true`), then the run's status
    /// and counts. `Ok(true)` once the run is final and all was sent.
    async fn sync(&mut self) -> Result<bool, End> {
        let run = match find(&self.state, self.id).await {
            Ok(run) => run,
            Err(ApiError::RunNotFound) => return Err(End::Deleted),
            Err(err) => return Err(End::Failed(err.to_string())),
        };
        for job in &run.jobs {
            let sent = self.jobs.entry(job.id).or_insert_with(|| Sent {
                host: job.host.clone().unwrap_or_default(),
                status: None,
                outcome: None,
                last_seq: 0,
            });
            if sent.status == Some(job.status) && sent.outcome == job.outcome {
                continue;
            }
            if self.output && job.status == Status::Running && !self.followed.contains_key(&job.id)
            {
                // Subscribed before the store is read: nothing printed in
                // between is missed, and what both deliver is sent once.
                let bus = &*self.state.bus;
                if let Some(handle) =
                    follow_output(bus, job.id, &self.forward, &mut self.forwarders).await
                {
                    self.followed.insert(job.id, handle);
                }
            }
            if self.output && job.status != Status::Queued {
                self.catch_up_output(job.id).await?;
            }
            if job.status.is_final()
                && let Some(handle) = self.followed.remove(&job.id)
            {
                handle.abort();
                while self.forwarders.try_join_next().is_some() {}
            }
            self.send(&RunMessage::job(job)).await?;
            if let Some(sent) = self.jobs.get_mut(&job.id) {
                sent.status = Some(job.status);
                sent.outcome = job.outcome;
            }
        }
        let status = run.run.status();
        let counts = RunCounts::of(&run.run.tally);
        if self.last_run.as_ref() != Some(&(status, counts.clone())) {
            self.send(&RunMessage::run(&run.run)).await?;
            self.last_run = Some((status, counts));
        }
        Ok(status.is_final())
    }

    async fn on_output(&mut self, job: JobId, received: Received<JobEvent>) -> Result<(), End> {
        let Some(sent) = self.jobs.get(&job) else {
            return Ok(());
        };
        match received {
            Received::Message(JobEvent::Output { chunks, .. }) => {
                let last = sent.last_seq;
                let contiguous = chunks
                    .iter()
                    .find(|c| c.seq > last)
                    .is_none_or(|first| first.seq == last + 1);
                if !contiguous {
                    return self.catch_up_output(job).await;
                }
                for chunk in chunks.iter().filter(|c| c.seq > last) {
                    self.send_chunk(job, chunk).await?;
                }
                Ok(())
            }
            Received::Message(JobEvent::Status(_)) | Received::Closed => Ok(()),
            Received::Gap(_) | Received::Message(JobEvent::Resync { .. }) => {
                self.catch_up_output(job).await
            }
        }
    }

    /// Sends the output the store has of `job` after what the client has.
    async fn catch_up_output(&mut self, job: JobId) -> Result<(), End> {
        loop {
            let since = self.jobs.get(&job).map_or(0, |sent| sent.last_seq);
            let page = self
                .state
                .store
                .read_output(job, since, REPLAY_PAGE, None)
                .await
                .map_err(|err| End::Failed(err.to_string()))?;
            for chunk in &page.chunks {
                self.send_chunk(job, chunk).await?;
            }
            if page.chunks.len() < REPLAY_PAGE as usize {
                return Ok(());
            }
        }
    }

    async fn send_chunk(&mut self, job: JobId, chunk: &Chunk) -> Result<(), End> {
        let Some(sent) = self.jobs.get(&job) else {
            return Ok(());
        };
        let message = RunMessage::output(job, &sent.host, chunk);
        self.send(&message).await?;
        if let Some(sent) = self.jobs.get_mut(&job) {
            sent.last_seq = chunk.seq;
        }
        Ok(())
    }

    async fn send(&mut self, message: &RunMessage) -> Result<(), End> {
        let text = serde_json::to_string(message)
            .map_err(|err| End::Failed(format!("could not encode a message: {err}")))?;
        self.send_message(Message::Text(Utf8Bytes::from(text)))
            .await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), End> {
        send_within(
            &mut self.socket,
            message,
            self.state.settings.ws_send_timeout,
        )
        .await
        .map_err(|()| End::ClientGone)
    }

    async fn close(mut self, end: End) {
        let frame = match end {
            End::ClientGone => return,
            End::Finished => CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::from_static("run finished"),
            },
            End::Revoked => revoked_frame(),
            End::Deleted => CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::from_static("the run was deleted"),
            },
            End::Failed(reason) => {
                tracing::warn!(run = %self.id, %reason, "run WebSocket session failed");
                CloseFrame {
                    code: close_code::ERROR,
                    reason: Utf8Bytes::from_static("server error"),
                }
            }
        };
        close_with(&mut self.socket, frame, self.state.settings.ws_send_timeout).await;
    }
}
