//! Following one job over its WebSocket, resuming after a dropped
//! connection from the last seq received, so that no line is lost or
//! printed twice.

use std::time::Duration;

use futures_util::StreamExt;
use rje_domain::{Status, Stream};
use rje_proto::{WsKind, WsMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ClientError;
use crate::api::Api;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The longest a WebSocket handshake is waited for: a server whose
/// address drops packets would otherwise hold the client for the
/// system's TCP timeout (minutes). As long as the HTTP client's.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Consecutive failed connections before giving up; with the backoff below
/// that is about a minute without contact.
const MAX_FAILURES: u32 = 20;

/// What a followed job did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Output { stream: Stream, text: String },
    Status { status: Status },
}

pub(crate) struct JobFollower {
    api: Api,
    id: String,
    last_seq: i64,
    socket: Option<Socket>,
    finished: bool,
    failures: u32,
}

impl JobFollower {
    /// Follows job `id` from after output chunk `since`.
    pub(crate) fn new(api: Api, id: &str, since: i64) -> Self {
        Self {
            api,
            id: id.to_owned(),
            last_seq: since,
            socket: None,
            finished: false,
            failures: 0,
        }
    }

    /// The next event, or `None` once the job has finished and everything
    /// was received. Cancel-safe: dropping the future loses nothing.
    pub(crate) async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let socket = match &mut self.socket {
                Some(socket) => socket,
                None => {
                    let socket = self.connect().await?;
                    self.socket.insert(socket)
                }
            };
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    self.failures = 0;
                    let message: WsMessage = serde_json::from_str(&text).map_err(|err| {
                        ClientError::Server(format!("unexpected WebSocket message: {err}"))
                    })?;
                    if let Some(event) = self.accept(message) {
                        return Ok(Some(event));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Dropped before the final status: resume from last_seq.
                    self.socket = None;
                    if !self.finished {
                        tracing::debug!(job = %self.id, last_seq = self.last_seq, "WebSocket dropped; resuming");
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }

    fn accept(&mut self, message: WsMessage) -> Option<Event> {
        match message.kind {
            WsKind::Output => {
                let seq = message.seq.unwrap_or(self.last_seq + 1);
                if seq <= self.last_seq {
                    return None;
                }
                self.last_seq = seq;
                Some(Event::Output {
                    stream: message.stream.unwrap_or(Stream::Stdout),
                    text: message.log,
                })
            }
            WsKind::Status => {
                self.finished = message.status.is_final();
                Some(Event::Status {
                    status: message.status,
                })
            }
        }
    }

    async fn connect(&mut self) -> Result<Socket, ClientError> {
        loop {
            let path = format!("/ws/jobs/{}/?since={}", self.id, self.last_seq);
            match connect(&self.api, &path, &format!("job {}", self.id)).await? {
                Ok(socket) => return Ok(socket),
                Err(reason) => self.failed(reason).await?,
            }
        }
    }

    /// Counts a failed connection and waits before the next, or gives up.
    async fn failed(&mut self, reason: String) -> Result<(), ClientError> {
        self.failures += 1;
        if self.failures > MAX_FAILURES {
            return Err(ClientError::Unreachable {
                url: self.api.endpoint.base_url.clone(),
                reason,
            });
        }
        let pause = Duration::from_millis(100) * 2u32.pow(self.failures.min(5));
        tokio::time::sleep(pause.min(Duration::from_secs(3))).await;
        Ok(())
    }
}

/// One WebSocket handshake for `path`, whose resource `what` names (`job
/// ID`, `run ID`) for a 404. `Ok(Err(reason))`: it failed in a way that
/// may pass (no connection, a 5xx, no answer in time), worth trying
/// again; an answer that will not change (401, 404, another 4xx) is an
/// error.
pub(crate) async fn connect(
    api: &Api,
    path: &str,
    what: &str,
) -> Result<Result<Socket, String>, ClientError> {
    let request = api.ws_request(path)?;
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request));
    match attempt.await {
        Ok(Ok((socket, _))) => Ok(Ok(socket)),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            match status {
                401 => Err(ClientError::Unauthorized("WebSocket refused".into())),
                404 => Err(ClientError::NotFound(format!("{what} not found"))),
                400..=499 => Err(ClientError::BadInput(format!(
                    "WebSocket refused: HTTP {status}"
                ))),
                _ => Ok(Err(format!("HTTP {status}"))),
            }
        }
        Ok(Err(err)) => Ok(Err(err.to_string())),
        Err(_) => Ok(Err(format!(
            "no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}
