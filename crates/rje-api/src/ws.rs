//! `WS /ws/jobs/{id}/`: a job's output and status, live. Subscribe first,
//! then replay from the store, then forward live events, dropping those
//! already sent and re-reading the store on any gap. A slow client only
//! falls behind and catches up from the store: it never stalls a job, and
//! its buffer is bounded.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::response::Response;
use axum::routing::get;
use rje_bus::{JobEvent, Received};
use rje_domain::{Chunk, JobId, Principal, Status};
use rje_proto::{EventMessage, WsMessage};
use utoipa_axum::router::OpenApiRouter;

use crate::extract::{Caller, JobPath, QueryPairs, parse_since};
use crate::metrics::Subscriber;
use crate::{ApiError, AppState, ConnectionSlot};

/// Chunks read from the store per round trip while replaying.
pub(crate) const REPLAY_PAGE: u32 = 256;
/// Keeps idle connections (and the proxies between) alive, and finds dead
/// clients.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);
/// How soon a session learns that its token was revoked.
const REVOCATION_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A tick every [`REVOCATION_CHECK_EVERY`] for a session whose token may
/// be revoked; none for one whose token cannot be.
pub(crate) fn revocation_checks(caller: &Principal) -> Option<tokio::time::Interval> {
    crate::auth::Authentication::may_be_revoked(caller).then(|| {
        let mut every = tokio::time::interval(REVOCATION_CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every
    })
}

/// Waits for the next revocation check; never, without checks.
pub(crate) async fn next_check(checks: &mut Option<tokio::time::Interval>) {
    match checks {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The close a session whose token was revoked gets.
pub(crate) fn revoked_frame() -> CloseFrame {
    CloseFrame {
        code: close_code::POLICY,
        reason: Utf8Bytes::from_static("the token was revoked"),
    }
}

/// Described in the document's prose: OpenAPI cannot model a WebSocket.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/ws/jobs/{id}", get(upgrade))
        .route("/ws/jobs", get(events_upgrade))
        .route("/ws/runs/{id}", get(crate::run_ws::upgrade))
}

/// A request that is not a WebSocket upgrade is a plain 400, with the
/// error body every other refusal has.
pub(crate) fn upgrade_of(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|rejection| {
        ApiError::BadRequest(format!("a WebSocket upgrade is needed here: {rejection}"))
    })
}

/// `WS /ws/jobs/`: every job's status changes, live. For dashboards and
/// load generators that watch many jobs over one connection.
async fn events_upgrade(
    State(state): State<AppState>,
    Caller(caller): Caller,
    slot: Option<Extension<ConnectionSlot>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    Ok(upgrade_of(ws)?
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            events_session(state, caller, socket).await;
        }))
}

async fn events_session(state: AppState, caller: Principal, mut socket: WebSocket) {
    let within = state.settings.ws_send_timeout;
    let _counted = Subscriber::new("events");
    let mut events = match state.bus.subscribe_status().await {
        Ok(events) => events,
        Err(err) => {
            tracing::warn!(%err, "bus unavailable; closing the event stream");
            let frame = CloseFrame {
                code: close_code::ERROR,
                reason: Utf8Bytes::from_static("live updates are unavailable"),
            };
            let _ = tokio::time::timeout(within, socket.send(Message::Close(Some(frame)))).await;
            return;
        }
    };
    if send_event(&mut socket, &EventMessage::Ready, within)
        .await
        .is_err()
    {
        return;
    }
    let mut checks = revocation_checks(&caller);
    loop {
        let message = tokio::select! {
            () = next_check(&mut checks) => {
                if state.authentication.still_valid(&caller, &*state.access).await {
                    continue;
                }
                let close = Message::Close(Some(revoked_frame()));
                let _ = tokio::time::timeout(within, socket.send(close)).await;
                return;
            }
            received = events.recv() => match received {
                // A scoped token hears only of its hosts' jobs.
                Received::Message(event)
                    if !caller.sees(event.host.as_deref(), &state.settings.hosts) => continue,
                Received::Message(event) => EventMessage::Status {
                    job_id: event.job,
                    status: event.status,
                    timestamp: event.at,
                    exit_code: event.exit_code,
                    error: event.error,
                },
                Received::Gap(missed) => EventMessage::Gap { missed },
                Received::Closed => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        if send_event(&mut socket, &message, within).await.is_err() {
            return;
        }
    }
}

async fn send_event(
    socket: &mut WebSocket,
    message: &EventMessage,
    within: Duration,
) -> Result<(), ()> {
    let text = serde_json::to_string(message).map_err(|_| ())?;
    send_within(socket, Message::Text(Utf8Bytes::from(text)), within).await
}

/// Sends one message, giving up on a client that does not take it in
/// time: one that stopped reading would otherwise hold its buffers and
/// its socket for as long as it liked.
pub(crate) async fn send_within(
    socket: &mut WebSocket,
    message: Message,
    within: Duration,
) -> Result<(), ()> {
    match tokio::time::timeout(within, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(()),
        Err(_) => {
            tracing::debug!(?within, "WebSocket client stopped reading; dropping it");
            Err(())
        }
    }
}

async fn upgrade(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JobPath(id): JobPath,
    query: QueryPairs,
    slot: Option<Extension<ConnectionSlot>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let since = parse_since(&query)?;
    let ws = upgrade_of(ws)?;
    // An unknown job is a plain 404, one outside the token's scope a 403,
    // before any upgrade.
    let job = state.store.get_meta(id).await?;
    caller.require_sight(&job, &state.settings.hosts)?;
    Ok(ws
        .max_message_size(64 * 1024)
        // Each message is written as it comes, not gathered up to 128 KiB
        // first: what a subscriber holds is one message, and a thousand
        // subscribers of one job hold a thousand, not 128 MiB.
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let _counted = Subscriber::new("job");
            let mut session = Session {
                state,
                caller,
                id,
                socket,
                last_seq: since,
                last_status: None,
            };
            let end = session.run().await;
            session.close(end).await;
        }))
}

/// How a session ends.
enum End {
    /// The job finished and everything was sent.
    Finished,
    /// The client went away.
    ClientGone,
    /// Something on our side failed.
    Failed(String),
    /// The session's token was revoked.
    Revoked,
    /// The job moved to a host outside the token's scope.
    OutOfScope,
    /// The job was deleted while followed.
    Deleted,
}

struct Session {
    state: AppState,
    /// Who opened the session: it ends when the token is revoked.
    caller: Principal,
    id: JobId,
    socket: WebSocket,
    /// The last output seq the client has.
    last_seq: i64,
    last_status: Option<Status>,
}

impl Session {
    async fn run(&mut self) -> End {
        let mut events = match self.state.bus.subscribe_job(self.id).await {
            Ok(events) => Some(events),
            Err(err) => {
                tracing::warn!(%err, "bus unavailable; the WebSocket replays from the store only");
                None
            }
        };
        match self.catch_up().await {
            Ok(true) => return End::Finished,
            Ok(false) => {}
            Err(end) => return end,
        }
        let Some(events) = events.as_mut() else {
            return End::Failed("live updates are unavailable".into());
        };
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut checks = revocation_checks(&self.caller);
        loop {
            let step = tokio::select! {
                () = next_check(&mut checks) => self.check_still_allowed().await.map(|()| false),
                received = events.recv() => self.on_event(received).await,
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(End::ClientGone),
                    // Clients have nothing to say; pings are answered by the
                    // WebSocket layer itself.
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

    /// Ends the session once its token is revoked, or once its job left
    /// the token's scope (an admin moved it while it was queued).
    async fn check_still_allowed(&mut self) -> Result<(), End> {
        let state = &self.state;
        if !state
            .authentication
            .still_valid(&self.caller, &*state.access)
            .await
        {
            return Err(End::Revoked);
        }
        // Only a queued job can be moved to another host: once it runs, its
        // host is fixed, and the store need not be asked every second.
        let movable = matches!(self.last_status, None | Some(Status::Queued));
        if self.caller.scope.is_everything() || !movable {
            return Ok(());
        }
        let job = match state.store.get_meta(self.id).await {
            Ok(job) => job,
            Err(rje_store::StoreError::NotFound) => return Err(End::Deleted),
            Err(err) => return Err(End::Failed(err.to_string())),
        };
        if self.caller.sees(job.host.as_deref(), &state.settings.hosts) {
            Ok(())
        } else {
            Err(End::OutOfScope)
        }
    }

    /// Handles one bus delivery; `Ok(true)` once the job is finished and
    /// everything has been sent.
    async fn on_event(&mut self, received: Received<JobEvent>) -> Result<bool, End> {
        match received {
            Received::Message(JobEvent::Output { chunks, .. }) => {
                let contiguous = chunks
                    .iter()
                    .find(|c| c.seq > self.last_seq)
                    .is_none_or(|first| first.seq == self.last_seq + 1);
                if !contiguous {
                    return self.catch_up().await;
                }
                for chunk in chunks.iter() {
                    if chunk.seq > self.last_seq {
                        self.send_chunk(chunk).await?;
                    }
                }
                Ok(false)
            }
            Received::Message(JobEvent::Status(event)) if event.status.is_final() => {
                // The store has all output by now: send the rest from there,
                // then the final status.
                self.catch_up().await
            }
            Received::Message(JobEvent::Status(event)) => {
                self.send_status(
                    WsMessage::status(event.status, event.at, event.exit_code, event.error)
                        .retried_as(event.retried_as),
                )
                .await?;
                Ok(false)
            }
            Received::Gap(missed) => {
                tracing::debug!(job = %self.id, missed, "WebSocket client fell behind; catching up");
                self.catch_up().await
            }
            Received::Message(JobEvent::Resync { .. }) => self.catch_up().await,
            Received::Closed => {
                self.catch_up().await?;
                Err(End::Failed("live updates ended".into()))
            }
        }
    }

    /// Sends everything the store has after `last_seq`, then the job's
    /// status if it changed. `Ok(true)` when the job is finished.
    async fn catch_up(&mut self) -> Result<bool, End> {
        // The status is read before the output: if the job was finished
        // then, the output read next is all there is.
        let job = self
            .state
            .store
            .get_meta(self.id)
            .await
            .map_err(|err| End::Failed(err.to_string()))?;
        loop {
            let page = self
                .state
                .store
                .read_output(self.id, self.last_seq, REPLAY_PAGE, None)
                .await
                .map_err(|err| End::Failed(err.to_string()))?;
            for chunk in &page.chunks {
                self.send_chunk(chunk).await?;
            }
            if page.chunks.len() < REPLAY_PAGE as usize {
                break;
            }
        }
        let at = job.completed_at.unwrap_or(job.modified_at);
        let retried_as = job.automatic_retry();
        self.send_status(
            WsMessage::status(job.status, at, job.exit_code, job.error).retried_as(retried_as),
        )
        .await?;
        Ok(job.status.is_final())
    }

    async fn send_chunk(&mut self, chunk: &Chunk) -> Result<(), End> {
        let frame = self
            .state
            .frames
            .output(self.id, chunk)
            .map_err(|err| End::Failed(format!("could not encode a message: {err}")))?;
        self.send_message(Message::Text(frame)).await?;
        self.last_seq = chunk.seq;
        Ok(())
    }

    /// Sends a status message unless the client already has this status.
    async fn send_status(&mut self, message: WsMessage) -> Result<(), End> {
        let status = message.status;
        if self.last_status == Some(status) {
            return Ok(());
        }
        self.send(&message).await?;
        self.last_status = Some(status);
        Ok(())
    }

    async fn send(&mut self, message: &WsMessage) -> Result<(), End> {
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
                reason: Utf8Bytes::from_static("job finished"),
            },
            End::Revoked => revoked_frame(),
            End::Deleted => CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::from_static("the job was deleted"),
            },
            End::OutOfScope => CloseFrame {
                code: close_code::POLICY,
                reason: Utf8Bytes::from_static("the job left the token's scope"),
            },
            End::Failed(reason) => {
                tracing::warn!(job = %self.id, %reason, "WebSocket session failed");
                CloseFrame {
                    code: close_code::ERROR,
                    reason: Utf8Bytes::from_static("server error"),
                }
            }
        };
        close_with(&mut self.socket, frame, self.state.settings.ws_send_timeout).await;
    }
}

/// Sends `frame`, then gives the client a moment to answer the close, as
/// the protocol asks, without waiting on a client that never does.
pub(crate) async fn close_with(socket: &mut WebSocket, frame: CloseFrame, within: Duration) {
    if send_within(socket, Message::Close(Some(frame)), within)
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
