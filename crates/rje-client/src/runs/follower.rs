//! Following a run over its WebSocket (`/ws/runs/{id}/`), and by polling
//! `GET /runs/{id}/` once a second while the WebSocket is down.
//!
//! The run's WebSocket cannot resume where it stopped: a new connection
//! starts again with every job's status and, with `?output=true`, every
//! job's output from its first line. So what was passed on is remembered
//! (each job's status and outcome, the last output chunk of each, the
//! run's status and counts), and what a new connection repeats is dropped:
//! each change is passed on once, and no line twice.
//!
//! No output comes while polling. So when a poll finds the run final and
//! output is wanted, the run's WebSocket is connected once more: it
//! replays every job's output from the start, then the final statuses,
//! then closes, and the dedup lets through only what was not printed. Only
//! if that last connection fails does the follow end without it, and
//! [`Watch::output_missing`] says so.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use rje_domain::{HostOutcome, JobId, Status};
use rje_proto::{RunCounts, RunMessage, RunResponse};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::ClientError;
use crate::api::Api;
use crate::follow::{Socket, connect};

/// How long a connection may stay silent before it is taken for dead. The
/// server pings every 30 s, so a live one never is; a half-open TCP
/// connection (a laptop's suspend, a NAT forgetting it) otherwise never
/// ends.
const SILENCE: Duration = Duration::from_secs(75);

/// How often the run is read while the WebSocket is down.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Consecutive polls that could not reach the server before giving up:
/// a minute without contact, as a followed job gets.
const MAX_POLL_FAILURES: u32 = 60;

/// What was passed on of one job.
#[derive(Debug, Default)]
struct Seen {
    state: Option<(Status, Option<HostOutcome>)>,
    last_seq: i64,
}

/// What the caller may read of a follower whose messages it consumes as
/// [`RunFollower::messages`].
#[derive(Debug)]
pub(crate) struct Watch {
    live: AtomicBool,
    output_missing: AtomicBool,
}

/// Live until a connection is known to have failed: the first handshake
/// under way is not a lost connection.
impl Default for Watch {
    fn default() -> Self {
        Self {
            live: AtomicBool::new(true),
            output_missing: AtomicBool::new(false),
        }
    }
}

impl Watch {
    /// Whether the WebSocket is up (else the run is being polled, and no
    /// output comes until it is up again).
    pub(crate) fn live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether the run ended while the WebSocket was down and the last
    /// connection, for the output that came meanwhile, failed: some of
    /// the output wanted may never have been passed on.
    pub(crate) fn output_missing(&self) -> bool {
        self.output_missing.load(Ordering::Relaxed)
    }
}

pub(crate) struct RunFollower {
    api: Api,
    id: String,
    output: bool,
    /// Set through [`Self::set_socket`], which keeps `watch.live` with it.
    socket: Option<Socket>,
    watch: Arc<Watch>,
    /// The WebSocket dropped or could not be had: read the run over HTTP
    /// before the next connection.
    poll_first: bool,
    /// No connection before this (a poll's pause).
    next_connect: Option<Instant>,
    poll_failures: u32,
    /// The run as a poll found it final while output was wanted: the
    /// last connection is under way for the output, and this is what is
    /// passed on instead if it fails.
    last_chance: Option<RunResponse>,
    dedup: Dedup,
    pending: VecDeque<RunMessage>,
}

impl RunFollower {
    /// Follows run `id`, with every job's output when `output`.
    pub(crate) fn new(api: Api, id: &str, output: bool) -> Self {
        Self {
            api,
            id: id.to_owned(),
            output,
            socket: None,
            watch: Arc::default(),
            poll_first: false,
            next_connect: None,
            poll_failures: 0,
            last_chance: None,
            dedup: Dedup::default(),
            pending: VecDeque::new(),
        }
    }

    /// What the caller may read of the follower meanwhile.
    pub(crate) fn watch(&self) -> Arc<Watch> {
        self.watch.clone()
    }

    /// Every change, until the run is final and that was passed on (or
    /// an error, the last item). The stream keeps the step under way
    /// (a handshake, a poll, a pause, the silence timer) when the future
    /// of its next item is dropped, as `select!` does every time another
    /// branch wins (the live view's clock, every 100 ms): with
    /// [`Self::next`] itself, a handshake slower than that would start
    /// again forever and a silent connection never be taken for dead.
    pub(crate) fn messages(self) -> impl Stream<Item = Result<RunMessage, ClientError>> {
        futures_util::stream::unfold(Some(self), |follower| async move {
            let mut follower = follower?;
            match follower.next().await {
                Ok(Some(message)) => Some((Ok(message), Some(follower))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }

    fn set_socket(&mut self, socket: Option<Socket>) {
        self.watch.live.store(socket.is_some(), Ordering::Relaxed);
        self.socket = socket;
    }

    /// The next change, or `None` once the run is final and that was
    /// passed on. Dropping the future loses no message, but the step
    /// under way starts again: [`Self::messages`] is for `select!`.
    pub(crate) async fn next(&mut self) -> Result<Option<RunMessage>, ClientError> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Ok(Some(message));
            }
            if self.dedup.finished {
                return Ok(None);
            }
            let Some(socket) = self.socket.as_mut() else {
                self.reconnect().await?;
                continue;
            };
            match tokio::time::timeout(SILENCE, socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let message: RunMessage = serde_json::from_str(&text).map_err(|err| {
                        ClientError::Server(format!("unexpected run WebSocket message: {err}"))
                    })?;
                    if let Some(message) = self.dedup.accept(message) {
                        return Ok(Some(message));
                    }
                }
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => {
                    // Dropped before the run's final status (which ends
                    // the loop above): read it over HTTP, then connect
                    // again; or, if this was the last connection, end
                    // with what the poll read.
                    self.set_socket(None);
                    if self.last_chance.is_some() {
                        self.without_output("the last connection dropped");
                    } else {
                        tracing::debug!(run = %self.id, "run WebSocket dropped; polling");
                        self.poll_first = true;
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Without a WebSocket: a poll when one is due, else a connection.
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        if self.poll_first {
            self.poll_first = false;
            self.poll().await?;
            if self.last_chance.is_none() {
                self.next_connect = Some(Instant::now() + POLL_EVERY);
            }
            return Ok(());
        }
        if let Some(at) = self.next_connect.take() {
            tokio::time::sleep_until(at).await;
        }
        let path = format!(
            "/ws/runs/{}/{}",
            self.id,
            if self.output { "?output=true" } else { "" }
        );
        let attempt = connect(&self.api, &path, &format!("run {}", self.id)).await;
        match attempt {
            Ok(Ok(socket)) => self.set_socket(Some(socket)),
            // The run is known final: a failure costs only the output.
            Ok(Err(reason)) if self.last_chance.is_some() => self.without_output(&reason),
            Err(err) if self.last_chance.is_some() => self.without_output(&err.to_string()),
            Ok(Err(reason)) => {
                tracing::debug!(run = %self.id, %reason, "no run WebSocket; polling");
                self.poll_first = true;
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// The last connection failed: ends with the run as the poll found it,
    /// told as missing output.
    fn without_output(&mut self, reason: &str) {
        if let Some(run) = self.last_chance.take() {
            tracing::debug!(run = %self.id, %reason, "no output after the run ended");
            self.watch.output_missing.store(true, Ordering::Relaxed);
            let changed = self.dedup.changes(&run);
            self.pending.extend(changed);
        }
    }

    /// Reads the run and queues what changed. A server out of reach is
    /// tried again (it may be restarting) up to [`MAX_POLL_FAILURES`]
    /// times in a row; any other failure ends the following.
    async fn poll(&mut self) -> Result<(), ClientError> {
        match self.api.run(&self.id).await {
            Ok(run) if self.output && run.status.is_final() => {
                // What the jobs wrote since the WebSocket dropped came to
                // no one: held back, the final statuses wait for the last
                // connection, which brings it (and them) at once.
                self.poll_failures = 0;
                self.last_chance = Some(run);
                Ok(())
            }
            Ok(run) => {
                self.poll_failures = 0;
                let changed = self.dedup.changes(&run);
                self.pending.extend(changed);
                Ok(())
            }
            Err(
                err @ (ClientError::Unreachable { .. }
                | ClientError::Unavailable(_)
                | ClientError::Server(_)),
            ) => {
                self.poll_failures += 1;
                if self.poll_failures > MAX_POLL_FAILURES {
                    Err(err)
                } else {
                    Ok(())
                }
            }
            Err(err) => Err(err),
        }
    }
}

/// What was passed on of a run, and the rule that lets through only what
/// is new.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    jobs: HashMap<JobId, Seen>,
    last_run: Option<(Status, RunCounts)>,
    /// The run's final status was passed on.
    pub(crate) finished: bool,
}

impl Dedup {
    /// `message`, unless it repeats what was passed on already.
    pub(crate) fn accept(&mut self, message: RunMessage) -> Option<RunMessage> {
        match &message {
            RunMessage::Job {
                job_id,
                status,
                outcome,
                ..
            } => {
                let seen = self.jobs.entry(*job_id).or_default();
                let state = Some((*status, *outcome));
                if seen.state == state {
                    return None;
                }
                seen.state = state;
            }
            RunMessage::Output { job_id, seq, .. } => {
                let seen = self.jobs.entry(*job_id).or_default();
                if *seq <= seen.last_seq {
                    return None;
                }
                seen.last_seq = *seq;
            }
            RunMessage::Run { status, counts, .. } => {
                let run = Some((*status, counts.clone()));
                if self.last_run == run {
                    return None;
                }
                self.last_run = run;
                self.finished = status.is_final();
            }
        }
        Some(message)
    }

    /// The messages a WebSocket would have sent for what changed between
    /// what was passed on and `run` as read over HTTP: its jobs', then
    /// the run's. Never output, which only the WebSocket carries.
    pub(crate) fn changes(&mut self, run: &RunResponse) -> Vec<RunMessage> {
        let jobs = run.jobs.iter().map(|job| RunMessage::Job {
            job_id: job.id,
            host: job.host.clone().unwrap_or_default(),
            status: job.status,
            outcome: job.outcome,
            exit_code: job.exit_code,
            error: job.error.clone(),
            timestamp: job.modified_at,
        });
        let status = RunMessage::Run {
            status: run.status,
            counts: run.counts.clone(),
            completed_at: run.completed_at,
        };
        jobs.chain(std::iter::once(status))
            .filter_map(|message| self.accept(message))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::view::tests::{job_message, output_message, run_response};

    fn run_message(status: Status, success: u64, running: u64) -> RunMessage {
        RunMessage::Run {
            status,
            counts: RunCounts {
                success,
                running,
                ..RunCounts::default()
            },
            completed_at: None,
        }
    }

    #[test]
    fn a_new_connection_repeats_nothing() {
        let mut dedup = Dedup::default();
        let first = [
            job_message(1, "web-1", Status::Running, None),
            output_message(1, "web-1", 1, "a\n"),
            output_message(1, "web-1", 2, "b\n"),
            run_message(Status::Running, 0, 1),
        ];
        for message in first.clone() {
            assert!(dedup.accept(message).is_some());
        }
        // The server starts again from the first line: only what is new
        // passes.
        let again: Vec<_> = first
            .into_iter()
            .chain([
                output_message(1, "web-1", 3, "c\n"),
                job_message(1, "web-1", Status::Success, Some(HostOutcome::Success)),
                run_message(Status::Success, 1, 0),
            ])
            .filter_map(|message| dedup.accept(message))
            .collect();
        assert_eq!(again.len(), 3);
        assert!(matches!(again[0], RunMessage::Output { seq: 3, .. }));
        assert!(dedup.finished);
    }

    #[test]
    fn a_poll_tells_only_the_changes() {
        let mut dedup = Dedup::default();
        let mut run = run_response(&["web-1", "web-2"]);
        assert_eq!(
            dedup.changes(&run).len(),
            3,
            "every job and the run, the first time"
        );
        assert!(dedup.changes(&run).is_empty());
        run.jobs[1].status = Status::Failed;
        run.jobs[1].outcome = Some(HostOutcome::Unreachable);
        run.counts.queued = 1;
        run.counts.unreachable = 1;
        let changed = dedup.changes(&run);
        assert_eq!(changed.len(), 2);
        assert!(matches!(
            &changed[0],
            RunMessage::Job { host, outcome: Some(HostOutcome::Unreachable), .. } if host == "web-2"
        ));
        assert!(!dedup.finished);
    }

    /// A server that answers a script: each WebSocket connection in turn
    /// gets its messages, then a normal close or, when `drop`, a dropped
    /// connection; `GET /runs/{id}/` the run, whatever the connection;
    /// anything else, and a WebSocket past the script, a 404.
    struct FakeServer {
        sockets: std::sync::Mutex<VecDeque<(Vec<RunMessage>, bool)>>,
        run: RunResponse,
        polls: std::sync::atomic::AtomicUsize,
        /// How long each WebSocket handshake takes: a distant server.
        delay: Duration,
    }

    async fn serve(server: std::sync::Arc<FakeServer>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    let mut head = vec![0u8; 2048];
                    let seen = stream.peek(&mut head).await.unwrap();
                    let head = String::from_utf8_lossy(&head[..seen]).into_owned();
                    let script = head
                        .starts_with("GET /ws/runs/")
                        .then(|| server.sockets.lock().unwrap().pop_front())
                        .flatten();
                    if let Some((messages, drop)) = script {
                        tokio::time::sleep(server.delay).await;
                        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                        for message in messages {
                            let text = serde_json::to_string(&message).unwrap();
                            futures_util::SinkExt::send(&mut socket, Message::text(text))
                                .await
                                .unwrap();
                        }
                        if !drop {
                            let _ = socket.close(None).await;
                        }
                        return;
                    }
                    let mut request = vec![0u8; 4096];
                    let _ = stream.read(&mut request).await.unwrap();
                    let (status, body) = if head.starts_with("GET /runs/") {
                        server
                            .polls
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        ("200 OK", serde_json::to_string(&server.run).unwrap())
                    } else {
                        ("404 Not Found", r#"{"error": "run not found"}"#.to_owned())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(answer.as_bytes()).await.unwrap();
                });
            }
        });
        url
    }

    fn follower(url: String, output: bool) -> RunFollower {
        let api = Api::new(crate::config::Endpoint {
            base_url: url,
            token: None,
        });
        RunFollower::new(api, "0195f5a4-1a2b-7c3d-8e4f-0123456789ab", output)
    }

    #[tokio::test]
    async fn a_dropped_connection_is_polled_then_resumed_without_repeats() {
        let mut run = run_response(&["web-1", "web-2"]);
        run.jobs[0].status = Status::Running;
        run.jobs[1].status = Status::Failed;
        run.jobs[1].outcome = Some(HostOutcome::Failed);
        run.counts = RunCounts {
            failed: 1,
            running: 1,
            ..RunCounts::default()
        };
        let web_2_failed = dedup_job(&run, 1);
        let first = vec![
            job_message(1, "web-1", Status::Running, None),
            output_message(1, "web-1", 1, "a\n"),
            run_message(Status::Running, 0, 1),
        ];
        let second = vec![
            job_message(1, "web-1", Status::Running, None),
            output_message(1, "web-1", 1, "a\n"),
            output_message(1, "web-1", 2, "b\n"),
            web_2_failed.clone(),
            job_message(1, "web-1", Status::Success, Some(HostOutcome::Success)),
            run_message(Status::Failed, 1, 0),
        ];
        let server = std::sync::Arc::new(FakeServer {
            sockets: std::sync::Mutex::new(VecDeque::from([(first, true), (second, false)])),
            run,
            polls: Default::default(),
            delay: Duration::ZERO,
        });
        let mut follower = follower(serve(server.clone()).await, true);
        let mut got = Vec::new();
        let within = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(message) = follower.next().await.unwrap() {
                got.push(message);
            }
        });
        within.await.expect("the run ends");
        let kinds: Vec<String> = got
            .iter()
            .map(|message| match message {
                RunMessage::Job { host, status, .. } => format!("job {host} {status}"),
                RunMessage::Output { seq, .. } => format!("output {seq}"),
                RunMessage::Run { status, .. } => format!("run {status}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "job web-1 Running",
                "output 1",
                "run Running",
                // The poll, while the WebSocket was down.
                "job web-2 Failed",
                "run Running",
                // The second connection: only what is new.
                "output 2",
                "job web-1 Success",
                "run Failed",
            ]
        );
        assert_eq!(server.polls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Runs `follower` to its end: what it passed on, in short.
    async fn follow_to_the_end(mut follower: RunFollower) -> Vec<String> {
        let mut got = Vec::new();
        let within = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(message) = follower.next().await.unwrap() {
                got.push(match message {
                    RunMessage::Job { host, status, .. } => format!("job {host} {status}"),
                    RunMessage::Output { host, seq, .. } => format!("output {host} {seq}"),
                    RunMessage::Run { status, .. } => format!("run {status}"),
                });
            }
        });
        within.await.expect("the run ends");
        got
    }

    /// A run of web-1 and web-2 that ended (Success) while the first
    /// connection, which had passed on web-1's first line, was down; and
    /// that connection's messages.
    fn ended_while_down() -> (RunResponse, Vec<RunMessage>) {
        let mut run = run_response(&["web-1", "web-2"]);
        run.status = Status::Success;
        for job in &mut run.jobs {
            job.status = Status::Success;
            job.outcome = Some(HostOutcome::Success);
        }
        run.counts = RunCounts {
            success: 2,
            ..RunCounts::default()
        };
        let first = vec![
            job_message(1, "web-1", Status::Running, None),
            output_message(1, "web-1", 1, "a\n"),
            run_message(Status::Running, 0, 1),
        ];
        (run, first)
    }

    #[tokio::test]
    async fn output_written_while_down_comes_by_a_last_connection() {
        let (run, first) = ended_while_down();
        // The server's replay of a final run: every status, every line
        // from the first, the run's status, a normal close.
        let last = vec![
            dedup_job(&run, 0),
            dedup_job(&run, 1),
            output_message(1, "web-1", 1, "a\n"),
            output_message(1, "web-1", 2, "b\n"),
            output_message(2, "web-2", 1, "c\n"),
            run_message(Status::Success, 2, 0),
        ];
        let server = std::sync::Arc::new(FakeServer {
            sockets: std::sync::Mutex::new(VecDeque::from([(first, true), (last, false)])),
            run,
            polls: Default::default(),
            delay: Duration::ZERO,
        });
        let follower = follower(serve(server.clone()).await, true);
        let watch = follower.watch();
        assert_eq!(
            follow_to_the_end(follower).await,
            [
                "job web-1 Running",
                "output web-1 1",
                "run Running",
                // The poll found the run final: nothing of it passed on
                // until the last connection, which repeats nothing.
                "job web-1 Success",
                "job web-2 Success",
                "output web-1 2",
                "output web-2 1",
                "run Success",
            ]
        );
        assert_eq!(server.polls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(!watch.output_missing());
    }

    #[tokio::test]
    async fn a_failed_last_connection_ends_with_the_poll_and_says_so() {
        let (run, first) = ended_while_down();
        // The last connection refused (404, past the script), or dropped
        // halfway through its replay.
        let halfway = vec![
            dedup_job(&run, 0),
            output_message(1, "web-1", 1, "a\n"),
            output_message(1, "web-1", 2, "b\n"),
        ];
        for last in [None, Some((halfway, true))] {
            let dropped = last.is_some();
            let server = std::sync::Arc::new(FakeServer {
                sockets: std::sync::Mutex::new(
                    std::iter::once((first.clone(), true)).chain(last).collect(),
                ),
                run: run.clone(),
                polls: Default::default(),
                delay: Duration::ZERO,
            });
            let follower = follower(serve(server.clone()).await, true);
            let watch = follower.watch();
            let mut expected = vec!["job web-1 Running", "output web-1 1", "run Running"];
            if dropped {
                expected.extend(["job web-1 Success", "output web-1 2"]);
            } else {
                expected.push("job web-1 Success");
            }
            expected.extend(["job web-2 Success", "run Success"]);
            assert_eq!(follow_to_the_end(follower).await, expected, "{dropped}");
            assert_eq!(server.polls.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert!(watch.output_missing(), "{dropped}");
        }
    }

    #[tokio::test]
    async fn without_output_a_final_poll_ends_the_follow() {
        let (run, first) = ended_while_down();
        let server = std::sync::Arc::new(FakeServer {
            sockets: std::sync::Mutex::new(VecDeque::from([(first, true)])),
            run,
            polls: Default::default(),
            delay: Duration::ZERO,
        });
        let follower = follower(serve(server.clone()).await, false);
        let watch = follower.watch();
        let got = follow_to_the_end(follower).await;
        assert_eq!(got.last().map(String::as_str), Some("run Success"));
        assert!(!watch.output_missing(), "none was wanted");
    }

    /// Job `n` of `run` as the WebSocket tells it.
    fn dedup_job(run: &RunResponse, n: usize) -> RunMessage {
        let job = &run.jobs[n];
        RunMessage::Job {
            job_id: job.id,
            host: job.host.clone().unwrap_or_default(),
            status: job.status,
            outcome: job.outcome,
            exit_code: job.exit_code,
            error: job.error.clone(),
            timestamp: job.modified_at,
        }
    }

    #[tokio::test]
    async fn a_run_gone_is_an_error_not_a_wait() {
        let server = std::sync::Arc::new(FakeServer {
            sockets: Default::default(),
            run: run_response(&["web-1"]),
            polls: Default::default(),
            delay: Duration::ZERO,
        });
        let mut follower = follower(serve(server).await, false);
        let err = tokio::time::timeout(Duration::from_secs(20), follower.next())
            .await
            .expect("an answer")
            .unwrap_err();
        assert!(matches!(err, ClientError::NotFound(_)), "{err}");
    }

    #[tokio::test]
    async fn a_slow_handshake_is_not_lost_to_the_view_s_clock() {
        let mut run = run_response(&["web-1"]);
        run.status = Status::Success;
        let server = std::sync::Arc::new(FakeServer {
            sockets: std::sync::Mutex::new(VecDeque::from([(
                vec![run_message(Status::Success, 1, 0)],
                false,
            )])),
            run,
            polls: Default::default(),
            delay: Duration::from_millis(300),
        });
        let messages = follower(serve(server).await, false).messages();
        let mut messages = std::pin::pin!(messages);
        // As `follow_run` does: the view redrawn every 100 ms meanwhile.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let within = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    message = messages.next() => {
                        if message.transpose().unwrap().is_none() {
                            break;
                        }
                    }
                    _ = tick.tick() => {}
                }
            }
        });
        within.await.expect("the run ends");
    }
}
