//! The HTTP listener: every connection within limits, so that no client,
//! hostile or careless, can hold the server's connections or file
//! descriptors. A connection has a bounded time to send each request head
//! (which is also how long a kept-alive connection may idle between
//! requests); request bodies have their own deadline (in the API's
//! extractor); past `max_connections` a new connection is answered 503 at
//! once and closed. Accept failures (the descriptor limit) are logged once
//! per streak, not in a loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a write to the client may stay blocked (the client not
    /// reading) before the connection is dropped: a response, or a
    /// WebSocket's messages after the upgrade.
    pub send_timeout: Duration,
    /// Connections served at once; more are refused with a 503.
    pub max_connections: usize,
    /// How long a connection may take to deliver a complete request head,
    /// counted from when it is ready for one: a new connection, or a
    /// kept-alive one after its last response (the idle timeout).
    pub header_timeout: Duration,
    /// How long in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// What the listener serves: the API's router, or any service like it.
pub trait App:
    tower::Service<Request, Response = axum::response::Response, Error = Infallible>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The answer to a connection past the limit: short, JSON like every error,
/// and closing.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 63\r\n\r\n\
{\"error\":\"too many connections, try again later\",\"details\":[]}\n";

impl ConnectionLimits {
    /// These limits, with the connection cap lowered to what `descriptors`
    /// (the open file limit in force) allows: each connection holds one,
    /// and the store, the bus, SSH and the jobs' pipes need theirs.
    pub fn within_descriptor_limit(mut self, descriptors: u64) -> Self {
        let room = usize::try_from(descriptors.saturating_sub(256))
            .unwrap_or(usize::MAX)
            .max(16);
        if self.max_connections > room {
            tracing::warn!(
                configured = self.max_connections,
                used = room,
                descriptors,
                "RJE_MAX_CONNECTIONS is above what the file descriptor limit allows; lowered"
            );
            self.max_connections = room;
        }
        self
    }
}

/// Raises the soft limit on open files to the hard limit, as servers do:
/// the default soft limit (often 1024) is far below what the connection
/// cap and a worker's jobs may need. Returns the limit in force.
pub fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(err) => {
                tracing::warn!(%err, soft, hard, "could not raise the open file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(err) => {
            tracing::warn!(%err, "could not read the open file limit");
            1024
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests
/// finish within the grace.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    S: App,
    S::Future: Send,
{
    // HTTP/1.1 only: hyper's automatic version detection waits for a
    // first byte with no timeout at all, which is exactly the idle
    // connection this module exists to close.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut refusing = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and the like: say so once, then wait for a
                // descriptor to free up without spinning.
                if failing_since.is_none() {
                    tracing::warn!(%err, "cannot accept connections (file descriptor limit?)");
                    failing_since = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(since) = failing_since.take() {
            tracing::info!(after = ?since.elapsed(), "accepting connections again");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !refusing {
                tracing::warn!(
                    limit = limits.max_connections,
                    "connection limit reached; refusing new ones"
                );
                refusing = true;
            }
            refuse(&tcp);
            continue;
        };
        if refusing && slots.available_permits() > limits.max_connections / 10 {
            tracing::info!("below the connection limit again");
            refusing = false;
        }
        if let Err(err) = tcp.set_nodelay(true) {
            // Small messages (a status, a WebSocket close) must not wait for
            // the peer's delayed ACK.
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        // Requests carry the slot too: a WebSocket keeps it after the
        // upgrade, when this connection's task has already ended.
        let slot = rje_api::ConnectionSlot(Arc::new(slot));
        let service = hyper_service(app.clone(), peer, slot.clone());
        let mut connection = builder
            .serve_connection(
                TokioIo::new(StallGuard::new(tcp, limits.send_timeout)),
                service,
            )
            .with_upgrades();
        let stopping = shutdown.clone();
        connections.spawn(async move {
            let ended = tokio::select! {
                ended = &mut connection => ended,
                () = stopping.cancelled() => {
                    // Finish the request in flight, take no other.
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%err, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open at the end of the shutdown grace");
    }
}

/// A connection whose writes may not stay blocked longer than `limit`: a
/// client that stops reading would otherwise hold its slot, its socket and
/// the response's buffers for as long as it liked (a few such clients hold
/// every slot). Any write that makes progress starts the clock again, so a
/// slow but steady reader is never cut off.
struct StallGuard {
    tcp: TcpStream,
    limit: Duration,
    /// Set while a write is blocked: when it must have moved by.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn new(tcp: TcpStream, limit: Duration) -> Self {
        Self {
            tcp,
            limit,
            stalled: None,
        }
    }

    /// After a write that could not proceed: fails once it has been
    /// blocked for longer than the limit.
    fn blocked(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        let limit = self.limit;
        let deadline = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for StallGuard {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for StallGuard {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf) {
            std::task::Poll::Pending => self.blocked(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs) {
            std::task::Poll::Pending => self.blocked(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Answers a connection past the limit without reading from it. The socket
/// is new and its send buffer empty, so the write does not block.
fn refuse(tcp: &TcpStream) {
    let _ = tcp.try_write(TOO_MANY);
}

fn hyper_service<S>(
    app: S,
    peer: SocketAddr,
    slot: rje_api::ConnectionSlot,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone
where
    S: App,
    S::Future: Send,
{
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request.extensions_mut().insert(slot.clone());
        app.clone().oneshot(request)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(TOO_MANY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("too many"));
    }
}
