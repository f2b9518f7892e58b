use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use rje::{RunningServer, Settings};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long any wait in a test may take before the test fails. Generous:
/// a slow machine makes tests slow, never red.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// `rje bench` small enough for a test: 20 jobs, 5 timed one at a time,
/// 3 first-output samples, 2 cancels and a 20,000-line log, with the
/// baseline, as JSON.
pub const SMALL_BENCH: &[&str] = &[
    "bench",
    "--jobs",
    "20",
    "--concurrency",
    "4",
    "--latency-jobs",
    "5",
    "--output-samples",
    "3",
    "--cancel-samples",
    "2",
    "--log-lines",
    "20000",
    "--baseline",
    "--json",
];

/// A real rje server on a free loopback port with a database of its own.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub token: Option<String>,
    server: Option<RunningServer>,
}

/// Settings for tests: a fresh database, a free port, short grace times.
pub fn test_settings(dir: &Path) -> Settings {
    let mut settings = Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("rje.db").display()),
        kill_grace: Duration::from_secs(1),
        ..Settings::default()
    };
    settings.worker.poll_every = Duration::from_millis(250);
    settings.worker.retry_base = Duration::from_millis(100);
    settings.api.cancel_wait = Duration::from_secs(10);
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("temp dir"), configure).await
}

/// A server on the database `dir` holds already (`rje.db`), as a test
/// prepared it.
pub async fn spawn_app_in(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(dir.path());
    configure(&mut settings);
    let token = settings.api.tokens.first().cloned();
    let server = RunningServer::start(settings).await.expect("server starts");
    TestApp {
        addr: server.addr(),
        client: reqwest::Client::new(),
        dir,
        token,
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.authorized(self.client.post(self.url(path)).json(body))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.authorized(self.client.get(self.url(path)))
            .send()
            .await
            .expect("request")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.authorized(request).send().await.expect("request")
    }

    /// Submits a job and returns it as created.
    pub async fn submit(&self, body: Value) -> Value {
        let response = self.post("/jobs/", &body).await;
        assert_eq!(response.status(), 201, "submit {body}");
        response.json().await.unwrap()
    }

    pub async fn submit_command(&self, command: &str) -> String {
        id_of(&self.submit(json!({ "command": command })).await)
    }

    /// A GET answered as plain text (`Accept: text/plain`).
    pub async fn text(&self, path: &str) -> reqwest::Response {
        self.authorized(
            self.client
                .get(self.url(path))
                .header("accept", "text/plain"),
        )
        .send()
        .await
        .expect("request")
    }

    pub async fn job(&self, id: &str) -> Value {
        let response = self.get(&format!("/jobs/{id}/")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn cancel(&self, id: &str) -> reqwest::Response {
        self.send(reqwest::Method::POST, &format!("/jobs/{id}/cancel/"), None)
            .await
    }

    /// Polls a job until `done` holds for it.
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {what}: {job}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_final(&self, id: &str) -> Value {
        self.wait_for(id, "final", is_final).await
    }

    /// Waits until the job's command has started (its process id is known).
    pub async fn wait_started(&self, id: &str) -> Value {
        self.wait_for(id, "started", |job| job["remote_process_id"].is_string())
            .await
    }

    /// Stops the server gracefully; the returned directory keeps its
    /// database for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
        self.dir
    }
}

/// Whether a job (as JSON) has reached a final status.
pub fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("Success" | "Failed" | "Cancelled")
    )
}

pub fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_owned()
}

/// Everything a WebSocket session delivered, and how it closed.
pub struct WsSession {
    pub messages: Vec<Value>,
    pub close: Option<CloseCode>,
}

impl WsSession {
    pub fn output(&self) -> String {
        self.messages
            .iter()
            .filter(|m| m["type"] == "output")
            .map(|m| m["log"].as_str().unwrap())
            .collect()
    }

    pub fn seqs(&self) -> Vec<i64> {
        self.messages
            .iter()
            .filter(|m| m["type"] == "output")
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    }

    pub fn statuses(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m["type"] == "status")
            .map(|m| m["status"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Connects and reads until the server closes the connection.
pub async fn ws_read_all(url: impl AsRef<str>) -> WsSession {
    let url = url.as_ref();
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects");
    let mut session = WsSession {
        messages: Vec::new(),
        close: None,
    };
    let read = async {
        while let Some(message) = socket.next().await {
            match message.expect("WebSocket message") {
                Message::Text(text) => session
                    .messages
                    .push(serde_json::from_str(&text).expect("message is JSON")),
                Message::Close(frame) => {
                    session.close = frame.map(|f| f.code);
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the WebSocket closes when the job is done");
    session
}

/// Live processes (not zombies) in process group `pgid`, from `ps`.
pub fn live_processes_in_group(pgid: &str) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-e", "-o", "pgid=,stat=,pid=,args="])
        .output()
        .expect("ps runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let mut fields = line.split_whitespace();
            fields.next() == Some(pgid) && !fields.next().is_some_and(|s| s.starts_with('Z'))
        })
        .map(str::to_owned)
        .collect()
}

/// Waits until process group `pgid` has no live process left.
pub async fn wait_group_gone(pgid: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !live_processes_in_group(pgid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            live_processes_in_group(pgid)
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// `{prefix}1\n` … `{prefix}{n}\n`: what a job printing numbered lines
/// prints.
pub fn numbered_lines(prefix: &str, n: u32) -> String {
    (1..=n).map(|i| format!("{prefix}{i}\n")).collect()
}

/// Lines of a file, for tests whose jobs append to one.
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn assert_unique(lines: &[String]) {
    let unique: HashSet<_> = lines.iter().collect();
    assert_eq!(unique.len(), lines.len(), "a line appears twice: {lines:?}");
}

/// `seq 1 n` as text.
pub fn seq_text(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// Metric samples by series, e.g. `rje_jobs_queued{priority="High"}`.
pub type Samples = std::collections::BTreeMap<String, f64>;

/// Prometheus' text format, as a scraper reads it: `series → value`, with
/// every sample line checked to parse.
pub fn scrape(text: &str) -> Samples {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// The sum of the series of `name` whose labels include all of `labels`.
pub fn total(samples: &Samples, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, value)| value)
        .sum()
}

/// A job as a worker killed -9 after claiming it leaves it: created in the
/// store at `db` from `body`, claimed with a lease already gone by the
/// time a server looks. The caller leaves its files and marks its start.
/// Returns the store, the job's id and the claimed attempt.
pub async fn claim_as_a_lost_worker(
    db: &Path,
    body: &Value,
    hosts: &rje_domain::HostNames,
) -> (rje_store::SqliteStore, rje_domain::JobId, u32) {
    use rje_domain::{Limits, NewJob, WorkerId};
    use rje_store::{Jobs, Queue, SqliteStore};

    let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let new = NewJob::parse(body, &Limits::default(), hosts).unwrap();
    let created = store.create(new).await.unwrap();
    let claimed = store
        .claim(&WorkerId::generate(), 1, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, created.id);
    (store, created.id, claimed[0].job.attempts)
}

/// The outcome of a run that ended (not let go, which no test here does).
pub fn ended(ran: rje_exec::Ran) -> rje_domain::Outcome {
    match ran {
        rje_exec::Ran::Ended(outcome) => outcome,
        rje_exec::Ran::LetGo => panic!("the run was let go"),
    }
}
