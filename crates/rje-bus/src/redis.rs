//! The distributed bus: Redis pub/sub between processes, with the
//! in-process bus for delivery inside each one.
//!
//! Publishing never waits on Redis: messages go through a bounded queue to
//! a publisher task, and are dropped (and a resync announced later) when
//! Redis is away. Events a process publishes reach its own subscribers
//! directly, so nothing inside one process depends on Redis. When either
//! connection comes back after a loss, every subscriber is told to re-read
//! the store ([`JobEvent::Resync`]): the store is the truth, so a Redis
//! outage costs latency, never a job, a line or a cancel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use rje_domain::JobId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use crate::{Bus, BusError, JobEvent, MemoryBus, StatusEvent, Subscription};

/// Messages waiting to be published while Redis is slow or away.
const QUEUE: usize = 4096;
/// How long a connect or a command may take before Redis counts as away.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What travels over Redis.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The publishing process, which ignores its own messages.
    origin: String,
    message: Wire,
}

#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    Event(JobEvent),
    Work,
    Cancel(JobId),
    /// A publisher dropped messages while Redis was away.
    Resync,
}

pub struct RedisBus {
    local: Arc<MemoryBus>,
    origin: String,
    channel: String,
    queue: mpsc::Sender<Wire>,
    client: redis::Client,
    /// Set when a message could not be queued; the publisher announces a
    /// resync once it is through again.
    dropped: Arc<AtomicBool>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisBus {
    /// Connects to Redis at `url`. `namespace` names the channel, so that
    /// several deployments (or tests) can share one Redis. The first
    /// connection must succeed; later losses are survived.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, BusError> {
        let client = redis::Client::open(url)
            .map_err(|err| BusError::Unavailable(format!("bad Redis URL: {err}")))?;
        let channel = format!("{namespace}:bus");
        let local = Arc::new(MemoryBus::new());
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let (queue, pending) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicBool::new(false));

        let pubsub = connect_pubsub(&client, &channel).await?;
        let connection = connect(&client).await?;
        let subscriber = tokio::spawn(subscribe_loop(
            client.clone(),
            channel.clone(),
            origin.clone(),
            local.clone(),
            pubsub,
        ));
        let publisher = tokio::spawn(publish_loop(
            client.clone(),
            channel.clone(),
            origin.clone(),
            pending,
            dropped.clone(),
            connection,
        ));
        Ok(Self {
            local,
            origin,
            channel,
            queue,
            client,
            dropped,
            tasks: [subscriber, publisher],
        })
    }

    fn send(&self, message: Wire) {
        if self.queue.try_send(message).is_err() {
            // Redis is away or slow and the queue is full: drop, and make
            // sure every process re-reads the store once it is back.
            if !self.dropped.swap(true, Ordering::SeqCst) {
                tracing::warn!("Redis bus queue full; dropping messages until Redis catches up");
            }
        }
    }
}

async fn connect(client: &redis::Client) -> Result<redis::aio::MultiplexedConnection, BusError> {
    match timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(BusError::Unavailable(err.to_string())),
        Err(_) => Err(BusError::Unavailable(
            "timed out connecting to Redis".into(),
        )),
    }
}

async fn connect_pubsub(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, BusError> {
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match timeout(REDIS_TIMEOUT, subscribe).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(err)) => Err(BusError::Unavailable(err.to_string())),
        Err(_) => Err(BusError::Unavailable(
            "timed out subscribing to Redis".into(),
        )),
    }
}

async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    origin: String,
    local: Arc<MemoryBus>,
    first: redis::aio::PubSub,
) {
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(connection) = pubsub.take() else {
            match connect_pubsub(&client, &channel).await {
                Ok(connection) => {
                    tracing::info!("Redis bus reconnected; subscribers re-read the store");
                    backoff = Duration::from_millis(100);
                    pubsub = Some(connection);
                    // Whatever was published meanwhile is lost to us.
                    local.resync();
                }
                Err(err) => {
                    tracing::debug!(%err, "Redis bus still away");
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        let mut messages = connection.into_on_message();
        while let Some(message) = messages.next().await {
            let Ok(payload) = message.get_payload::<Vec<u8>>() else {
                continue;
            };
            match serde_json::from_slice::<Envelope>(&payload) {
                Ok(envelope) if envelope.origin == origin => {}
                Ok(envelope) => deliver(&local, envelope.message).await,
                Err(err) => tracing::warn!(%err, "ignoring a malformed Redis bus message"),
            }
        }
        tracing::warn!("Redis bus subscription lost; reconnecting");
    }
}

async fn deliver(local: &MemoryBus, message: Wire) {
    match message {
        Wire::Event(event) => local.publish(event).await,
        Wire::Work => local.announce_work().await,
        Wire::Cancel(job) => local.request_cancel(job).await,
        Wire::Resync => local.resync(),
    }
}

async fn publish_loop(
    client: redis::Client,
    channel: String,
    origin: String,
    mut pending: mpsc::Receiver<Wire>,
    dropped: Arc<AtomicBool>,
    first: redis::aio::MultiplexedConnection,
) {
    let mut connection = Some(first);
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let Some(conn) = connection.as_mut() else {
            match connect(&client).await {
                Ok(fresh) => {
                    tracing::info!("Redis bus publisher reconnected");
                    connection = Some(fresh);
                    backoff = Duration::from_millis(100);
                }
                Err(_) => {
                    // Keep the queue moving while away, so that memory
                    // stays bounded; every message now is lost.
                    while pending.try_recv().is_ok() {
                        lost = true;
                    }
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        if lost || dropped.swap(false, Ordering::SeqCst) {
            lost = !publish(conn, &channel, &origin, &Wire::Resync).await;
            if lost {
                connection = None;
            }
            continue;
        }
        let Some(message) = pending.recv().await else {
            return;
        };
        if !publish(conn, &channel, &origin, &message).await {
            tracing::warn!("Redis bus publish failed; reconnecting");
            lost = true;
            connection = None;
        }
    }
}

async fn publish(
    connection: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    origin: &str,
    message: &Wire,
) -> bool {
    let envelope = serde_json::json!({ "origin": origin, "message": message });
    let payload = envelope.to_string();
    let mut command = redis::cmd("PUBLISH");
    command.arg(channel).arg(payload);
    let sent = command.query_async::<i64>(connection);
    matches!(timeout(REDIS_TIMEOUT, sent).await, Ok(Ok(_)))
}

#[async_trait]
impl Bus for RedisBus {
    async fn ping(&self) -> Result<(), BusError> {
        let mut connection = connect(&self.client).await?;
        let command = redis::cmd("PING");
        let pong = command.query_async::<String>(&mut connection);
        match timeout(REDIS_TIMEOUT, pong).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(BusError::Unavailable(err.to_string())),
            Err(_) => Err(BusError::Unavailable("Redis did not answer PING".into())),
        }
    }

    async fn publish(&self, event: JobEvent) {
        self.local.publish(event.clone()).await;
        self.send(Wire::Event(event));
    }

    async fn subscribe_job(&self, job: JobId) -> Result<Subscription<JobEvent>, BusError> {
        self.local.subscribe_job(job).await
    }

    async fn subscribe_status(&self) -> Result<Subscription<StatusEvent>, BusError> {
        self.local.subscribe_status().await
    }

    async fn announce_work(&self) {
        self.local.announce_work().await;
        self.send(Wire::Work);
    }

    async fn subscribe_work(&self) -> Result<Subscription<()>, BusError> {
        self.local.subscribe_work().await
    }

    async fn request_cancel(&self, job: JobId) {
        self.local.request_cancel(job).await;
        self.send(Wire::Cancel(job));
    }

    async fn subscribe_cancels(&self) -> Result<Subscription<JobId>, BusError> {
        self.local.subscribe_cancels().await
    }
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("origin", &self.origin)
            .field("channel", &self.channel)
            .finish()
    }
}
