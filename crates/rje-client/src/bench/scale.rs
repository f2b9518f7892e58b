//! The scale runs of `rje bench`: many sleeping jobs at once
//! (`--sleepers`), many WebSocket subscribers of one job
//! (`--subscribers`), and a High job's start behind a backlog of Low ones
//! (`--priority-backlog`). Times come from the server's own `created_at`,
//! `started_at` and `completed_at` wherever the figure is the server's.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rje_domain::{JobId, Status};
use rje_proto::{JobResponse, WsKind, WsMessage};
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::Spread;
use crate::ClientError;
use crate::api::Api;

/// The resident memory of the server, read from /proc when the bench was
/// told its process (`--server-pid`, same machine).
#[derive(Debug, Clone, Copy)]
pub struct ServerProcess(pub Option<u32>);

impl ServerProcess {
    /// VmRSS and VmHWM (the peak so far), in MiB.
    fn memory(self) -> Option<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| kib / 1024.0)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

/// Submits `count` jobs of `body`, `concurrency` at once, in order of
/// their answers.
async fn submit_many(
    api: &Api,
    body: &serde_json::Value,
    count: u32,
    concurrency: u32,
) -> Result<Vec<JobResponse>, ClientError> {
    let next = Arc::new(AtomicU32::new(0));
    let tasks = (0..concurrency.min(count)).map(|_| {
        let (api, next, body) = (api.clone(), next.clone(), body.clone());
        tokio::spawn(async move {
            let mut made = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < count {
                made.push(api.create(&body).await?);
            }
            Ok::<_, ClientError>(made)
        })
    });
    let mut jobs = Vec::new();
    for result in futures_util::future::join_all(tasks).await {
        jobs.extend(result.map_err(|err| ClientError::Server(err.to_string()))??);
    }
    Ok(jobs)
}

/// Cancels `ids`, `concurrency` at once; a job already ended is fine.
async fn cancel_all(api: &Api, ids: Vec<JobId>, concurrency: u32) {
    let ids = Arc::new(std::sync::Mutex::new(ids));
    let tasks = (0..concurrency).map(|_| {
        let (api, ids) = (api.clone(), ids.clone());
        tokio::spawn(async move {
            loop {
                let Some(id) = ids.lock().ok().and_then(|mut ids| ids.pop()) else {
                    return;
                };
                let _ = api.cancel(&id.to_string()).await;
            }
        })
    });
    futures_util::future::join_all(tasks).await;
}

/// Every job of a list query, page after page by cursor.
async fn list_all(api: &Api, query: &str) -> Result<Vec<JobResponse>, ClientError> {
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_query = format!("{query}&limit=100&output=none");
        if let Some(cursor) = &cursor {
            page_query.push_str(&format!("&cursor={cursor}"));
        }
        let page = api.list(&page_query).await?;
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(jobs),
        }
    }
}

fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

#[derive(Debug, Clone, Serialize)]
pub struct Sleepers {
    pub jobs: u32,
    /// Jobs seen Running, with a start, by the server's account.
    pub started: usize,
    /// The server's `created_at` → `started_at`, per job.
    pub create_to_start: Spread,
    /// From the last job's `created_at` to the last `started_at`.
    pub last_start_after_last_submit_ms: f64,
    /// `GET /jobs/{id}/` while they run.
    pub get: Spread,
    /// `GET /jobs/list/?limit=10` while they run.
    pub list: Spread,
    pub rss_idle_mib: Option<f64>,
    pub rss_running_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
}

/// `count` jobs of `sleep seconds` at once: do they all start, how soon,
/// and what do reads cost while they run.
pub async fn sleepers(
    api: &Api,
    count: u32,
    seconds: u32,
    concurrency: u32,
    server: ServerProcess,
) -> Result<Sleepers, ClientError> {
    let idle = server.memory();
    let body = json!({ "command": format!("sleep {seconds}"), "timeout": seconds + 60 });
    let jobs = submit_many(api, &body, count, concurrency).await?;
    let ids: HashSet<JobId> = jobs.iter().map(|job| job.id).collect();
    // Started: read back until every job has a start or the sleep is half
    // over (a slot short would show as jobs never started).
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds.max(2)) / 2);
    let mut seen;
    loop {
        seen = list_all(api, "status=Running").await?;
        seen.retain(|job| ids.contains(&job.id) && job.started_at.is_some());
        if seen.len() == ids.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut get = Vec::new();
    let mut list = Vec::new();
    let sample: Vec<JobId> = ids.iter().copied().take(200).collect();
    for id in &sample {
        let began = Instant::now();
        api.job(&id.to_string()).await?;
        get.push(began.elapsed());
        let began = Instant::now();
        api.list("limit=10").await?;
        list.push(began.elapsed());
    }
    let running = server.memory();
    let last_created = jobs.iter().map(|job| job.created_at).max();
    let last_started = seen.iter().filter_map(|job| job.started_at).max();
    let report = Sleepers {
        jobs: count,
        started: seen.len(),
        create_to_start: Spread::of(
            seen.iter()
                .filter_map(|job| Some(between(job.created_at, job.started_at?)))
                .collect(),
        ),
        last_start_after_last_submit_ms: match (last_created, last_started) {
            (Some(created), Some(started)) => between(created, started).as_secs_f64() * 1000.0,
            _ => f64::NAN,
        },
        get: Spread::of(get),
        list: Spread::of(list),
        rss_idle_mib: idle.map(|(rss, _)| rss),
        rss_running_mib: running.map(|(rss, _)| rss),
        rss_peak_mib: running.map(|(_, peak)| peak),
    };
    cancel_all(api, ids.into_iter().collect(), concurrency).await;
    Ok(report)
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscribers {
    pub subscribers: u32,
    pub lines: u64,
    /// Subscribers that got every line once, in order, and the final status.
    pub complete: usize,
    /// From the first line any subscriber got to the last subscriber's
    /// final status.
    pub seconds: f64,
    pub rss_idle_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    /// What became of one more subscriber that never read: its close code,
    /// or how its connection ended.
    pub stalled_subscriber: String,
}

/// What one subscriber saw: lines in order, and the final status.
#[derive(Debug, Default)]
struct Seen {
    lines: u64,
    in_order: bool,
    finished: bool,
}

async fn subscribe(
    api: Api,
    id: JobId,
    first_line: Arc<std::sync::OnceLock<Instant>>,
) -> Result<Seen, ClientError> {
    let path = format!("/ws/jobs/{id}/");
    let (mut socket, _) = tokio_tungstenite::connect_async(api.ws_request(&path)?)
        .await
        .map_err(|err| ClientError::Server(err.to_string()))?;
    let mut seen = Seen {
        in_order: true,
        ..Seen::default()
    };
    let mut partial = String::new();
    while let Some(message) = socket.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let message: WsMessage = serde_json::from_str(&text)
            .map_err(|err| ClientError::Server(format!("unexpected message: {err}")))?;
        match message.kind {
            WsKind::Output => {
                first_line.get_or_init(Instant::now);
                partial.push_str(&message.log);
                // Whole lines only; a line cut between messages waits.
                let mut start = 0;
                while let Some(end) = partial[start..].find('\n') {
                    let line = &partial[start..start + end];
                    if line.parse::<u64>().ok() != Some(seen.lines + 1) {
                        seen.in_order = false;
                    }
                    seen.lines += 1;
                    start += end + 1;
                }
                partial.drain(..start);
            }
            WsKind::Status if message.status.is_final() => {
                seen.finished = true;
                break;
            }
            WsKind::Status => {}
        }
    }
    Ok(seen)
}

/// `count` subscribers of one job printing `lines` lines, all connected
/// before it prints; and one more that never reads.
pub async fn subscribers(
    api: &Api,
    count: u32,
    lines: u64,
    server: ServerProcess,
) -> Result<Subscribers, ClientError> {
    let idle = server.memory();
    // Time for every subscriber to connect before the first line.
    let wait = 2 + count / 250;
    let job = api
        .create(&json!({ "command": format!("sleep {wait}; seq 1 {lines}"), "timeout": 3600 }))
        .await?;
    let stalled =
        tokio_tungstenite::connect_async(api.ws_request(&format!("/ws/jobs/{}/", job.id))?)
            .await
            .map_err(|err| ClientError::Server(err.to_string()))?
            .0;
    let peak = Arc::new(std::sync::Mutex::new(0.0_f64));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let (Some((rss, _)), Ok(mut peak)) = (server.memory(), peak.lock()) {
                    *peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let first_line = Arc::new(std::sync::OnceLock::new());
    let tasks: Vec<_> = (0..count)
        .map(|_| tokio::spawn(subscribe(api.clone(), job.id, first_line.clone())))
        .collect();
    let mut complete = 0;
    for task in tasks {
        let seen = task
            .await
            .map_err(|err| ClientError::Server(err.to_string()))??;
        if seen.finished && seen.in_order && seen.lines == lines {
            complete += 1;
        }
    }
    let seconds = first_line
        .get()
        .map_or(f64::NAN, |first| first.elapsed().as_secs_f64());
    sampler.abort();
    let stalled_subscriber = stalled_end(stalled).await;
    Ok(Subscribers {
        subscribers: count,
        lines,
        complete,
        seconds,
        rss_idle_mib: idle.map(|(rss, _)| rss),
        rss_peak_mib: peak
            .lock()
            .ok()
            .map(|peak| *peak)
            .filter(|peak| *peak > 0.0),
        stalled_subscriber,
    })
}

/// Reads what the subscriber that never read was left: a close frame's
/// code, or the connection's end.
async fn stalled_end(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    let mut messages = 0_u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return match frame {
                    Some(frame) => format!(
                        "closed with code {} ({}) after {messages} messages",
                        u16::from(frame.code),
                        frame.reason
                    ),
                    None => format!("closed without a code after {messages} messages"),
                };
            }
            Ok(Some(Ok(_))) => messages += 1,
            Ok(Some(Err(err))) => return format!("dropped ({err}) after {messages} messages"),
            Ok(None) => return format!("connection ended after {messages} messages"),
            Err(_) => return format!("still open after {messages} messages"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PriorityUnderLoad {
    pub backlog: u32,
    pub samples: usize,
    /// High jobs left out: no Low job ended between their submit and
    /// their start (a slot was free already, or they never started).
    pub left_out: usize,
    /// Low jobs still queued when the last High job had started: the
    /// backlog was there all along.
    pub low_still_queued: usize,
    /// A High job's `started_at` after the moment a slot freed for it:
    /// the last `completed_at` of a Low job before its start, or its own
    /// `created_at` if that came later.
    pub slot_to_start: Spread,
}

/// `backlog` Low jobs of `sleep 0.5` keep every slot busy and a queue
/// waiting; High jobs submitted one by one must start as soon as a slot
/// frees, ahead of the whole backlog.
pub async fn priority_under_load(
    api: &Api,
    backlog: u32,
    samples: u32,
    concurrency: u32,
) -> Result<PriorityUnderLoad, ClientError> {
    let low = json!({ "command": "sleep 0.5", "priority": "Low", "timeout": 3600 });
    let lows = submit_many(api, &low, backlog, concurrency).await?;
    let high = json!({ "command": "true", "priority": "High", "timeout": 60 });
    let mut highs = Vec::new();
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(300)).await;
        highs.push(api.create(&high).await?.id);
    }
    // Each High job's own times, once it ended.
    let mut ended = Vec::new();
    for id in &highs {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = api.job(&id.to_string()).await?;
            if job.status.is_final() || Instant::now() > deadline {
                ended.push(job);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let low_ids: HashSet<JobId> = lows.iter().map(|job| job.id).collect();
    let low_still_queued = list_all(api, "status=Queued&priority=Low")
        .await?
        .iter()
        .filter(|job| low_ids.contains(&job.id))
        .count();
    // The Low jobs that ended meanwhile, newest first, by the server's
    // completed_at.
    let first_created = ended.iter().map(|job| job.created_at).min();
    let mut completions = Vec::new();
    let mut cursor: Option<String> = None;
    'pages: loop {
        let mut query = "ordering=-completed_at&limit=100&output=none".to_owned();
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let page = api.list(&query).await?;
        for job in page.jobs.iter().filter(|job| low_ids.contains(&job.id)) {
            let Some(at) = job.completed_at else { continue };
            if first_created.is_some_and(|first| at < first - chrono::Duration::seconds(1)) {
                break 'pages;
            }
            completions.push(at);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    completions.sort();
    let slot_to_start: Vec<Duration> = ended
        .iter()
        .filter(|job| job.status == Status::Success)
        .filter_map(|job| {
            let started = job.started_at?;
            // The slot it took: the last Low end before its start, if
            // that came after its submit.
            let freed = completions
                .iter()
                .rev()
                .find(|at| **at <= started)
                .filter(|at| **at >= job.created_at)?;
            Some(between(*freed, started))
        })
        .collect();
    let queued: Vec<JobId> = lows.iter().map(|job| job.id).collect();
    cancel_all(api, queued, concurrency).await;
    Ok(PriorityUnderLoad {
        backlog,
        samples: slot_to_start.len(),
        left_out: highs.len() - slot_to_start.len(),
        low_still_queued,
        slot_to_start: Spread::of(slot_to_start),
    })
}
