//! The distributed deployment: real `rje` processes against the
//! PostgreSQL and Redis of this machine, each test in a schema and a bus
//! namespace of its own.

use std::process::Stdio;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

use rje_testkit::{OwnRedis, TestSchema, free_port};

use crate::helpers::*;

fn redis_url() -> String {
    std::env::var("RJE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PostgreSQL schema and a Redis namespace for one test, and the rje
/// processes it starts.
struct Cluster {
    database_url: String,
    redis_url: String,
    namespace: String,
    processes: Vec<Child>,
    apis: Vec<String>,
    client: reqwest::Client,
    /// Dropped after the processes are killed, with the fields.
    schema: TestSchema,
}

impl Cluster {
    async fn new() -> Self {
        Self::with_redis(redis_url()).await
    }

    async fn with_redis(redis_url: String) -> Self {
        let schema = TestSchema::create("rje_it").await;
        let database_url = schema.url.clone();
        rje::server::migrate(&database_url)
            .await
            .expect("migrations");
        Self {
            database_url,
            redis_url,
            namespace: format!("rje-it-{}", schema.name),
            schema,
            processes: Vec::new(),
            apis: Vec::new(),
            client: reqwest::Client::new(),
        }
    }

    fn command(&self, subcommand: &str, extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rje"));
        command
            .arg(subcommand)
            .env_remove("RJE_API_TOKENS")
            .env("RJE_BIND", "127.0.0.1:0")
            .env("RJE_DATABASE_URL", &self.database_url)
            .env("RJE_REDIS_URL", &self.redis_url)
            .env("RJE_BUS_NAMESPACE", &self.namespace)
            .env("RJE_KILL_GRACE_SECONDS", "1")
            // Local jobs end with their worker unless a test gives a state
            // directory (a default one would land in the crate's directory).
            .env("RJE_STATE_DIR", "")
            // Errors only: the tests provoke warnings (a killed worker, a
            // lost Redis) on purpose.
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, value) in extra {
            command.env(name, value);
        }
        command
    }

    /// Starts a process and waits for its first line.
    async fn start(&mut self, subcommand: &str, args: &[&str], extra: &[(&str, &str)]) -> String {
        let mut child = self
            .command(subcommand, extra)
            .args(args)
            .spawn()
            .expect("rje starts");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("rje says it is up")
            .unwrap()
            .expect("a line");
        self.processes.push(child);
        line
    }

    async fn api(&mut self) -> String {
        self.api_with(&[]).await
    }

    async fn api_with(&mut self, extra: &[(&str, &str)]) -> String {
        let line = self.start("serve", &["--no-worker"], extra).await;
        let base = line
            .strip_prefix("rje listening on ")
            .expect("an address")
            .to_owned();
        self.apis.push(base.clone());
        base
    }

    /// Starts a worker; returns its index in `processes`.
    async fn worker(&mut self, extra: &[(&str, &str)]) -> usize {
        let line = self.start("worker", &[], extra).await;
        assert_eq!(line, "rje worker running");
        self.processes.len() - 1
    }

    async fn submit(&self, api: &str, body: Value) -> String {
        let response = self
            .client
            .post(format!("{api}/jobs/"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        id_of(&response.json().await.unwrap())
    }

    async fn get_json(&self, url: String) -> Value {
        self.client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn job(&self, api: &str, id: &str) -> Value {
        self.get_json(format!("{api}/jobs/{id}/")).await
    }

    async fn count(&self, api: &str, query: &str) -> u64 {
        let page = self.get_json(format!("{api}/jobs/list/?{query}")).await;
        page["total_count"].as_u64().unwrap()
    }

    async fn wait_for(&self, api: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let job = self.job(api, id).await;
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "gave up waiting on {job}");
            sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Jobs that each note the run of their command in `runs`, then print
/// `line-1` to `line-40` a tenth of a second apart: long enough to lose
/// their worker halfway.
struct CountedJobs {
    ids: Vec<String>,
    runs: std::path::PathBuf,
}

impl Cluster {
    async fn submit_counted(&self, api: &str, n: usize, runs: std::path::PathBuf) -> CountedJobs {
        let mut ids = Vec::new();
        for job in 0..n {
            let command = format!(
                "echo job-{job} >> {}; for i in $(seq 1 40); do echo line-$i; sleep 0.1; done",
                runs.display()
            );
            ids.push(self.submit(api, json!({ "command": command })).await);
        }
        CountedJobs { ids, runs }
    }

    /// Waits until every counted job is printing.
    async fn wait_printing(&self, api: &str, jobs: &CountedJobs) {
        for id in &jobs.ids {
            self.wait_for(api, id, |job| {
                job["stdout"]
                    .as_str()
                    .is_some_and(|out| out.contains("line-2\n"))
            })
            .await;
        }
    }

    /// Every counted job ends Success with every line once, in order,
    /// taken up once, and each command ran once.
    async fn assert_finished_once(&self, api: &str, jobs: &CountedJobs) {
        let expected = numbered_lines("line-", 40);
        for id in &jobs.ids {
            let job = self.wait_for(api, id, is_final).await;
            assert_eq!(job["status"], "Success", "{job}");
            assert_eq!(job["stdout"], expected, "every line once, in order");
            assert_eq!(job["reattached"], 1);
        }
        let mut lines = lines_of(&jobs.runs);
        assert_unique(&lines);
        lines.sort();
        assert_eq!(
            lines.len(),
            jobs.ids.len(),
            "every command ran once: {lines:?}"
        );
    }

    /// The process group of a job whose command has started.
    async fn group_of(&self, api: &str, id: &str) -> String {
        self.wait_for(api, id, |job| job["remote_process_id"].is_string())
            .await["remote_process_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// kill -9 of the process at `index`.
    async fn kill(&mut self, index: usize) {
        self.processes[index].start_kill().unwrap();
        self.processes[index].wait().await.unwrap();
    }

    /// Asks for a cancel of `id`, which the API accepts.
    async fn cancel(&self, api: &str, id: &str) {
        let cancel = self
            .client
            .post(format!("{api}/jobs/{id}/cancel/"))
            .send()
            .await
            .unwrap();
        assert!(cancel.status().is_success(), "{}", cancel.status());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.start_kill();
        }
    }
}

#[tokio::test]
async fn two_apis_and_three_workers_run_every_job_exactly_once() {
    let mut cluster = Cluster::new().await;
    let apis = [cluster.api().await, cluster.api().await];
    for _ in 0..3 {
        cluster.worker(&[]).await;
    }
    let ready = cluster.get_json(format!("{}/ready", apis[1])).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["workers"], 3, "every worker announced itself");
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let priorities = ["High", "Medium", "Low"];
    let total = 1000;
    let batches = (0..total).collect::<Vec<_>>();
    for batch in batches.chunks(50) {
        let submissions = batch.iter().map(|n| {
            let api = &apis[n % 2];
            let body = json!({
                "command": format!("echo job-{n} >> {}", ran.display()),
                "priority": priorities[n % 3],
            });
            cluster.submit(api, body)
        });
        join_all(submissions).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while cluster.count(&apis[0], "status=Success&limit=1").await < total as u64 {
        let unfinished = cluster.count(&apis[1], "status=Queued&limit=1").await
            + cluster.count(&apis[1], "status=Running&limit=1").await;
        let failed = cluster.count(&apis[1], "status=Failed&limit=1").await;
        assert_eq!(failed, 0, "no job may fail");
        assert!(
            Instant::now() < deadline,
            "{unfinished} jobs never finished"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let lines = lines_of(&ran);
    assert_eq!(lines.len(), total, "every job ran once");
    assert_unique(&lines);
}

#[tokio::test]
async fn a_killed_worker_loses_only_what_it_had_started() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let fast_lease = [("RJE_LEASE_SECONDS", "2"), ("RJE_WORKER_CONCURRENCY", "2")];
    let doomed = cluster.worker(&fast_lease).await;
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let mut long = Vec::new();
    for n in 0..2 {
        let command = format!("echo long-{n} >> {}; sleep 60", started.display());
        long.push(cluster.submit(&api, json!({ "command": command })).await);
    }
    for id in &long {
        cluster
            .wait_for(&api, id, |job| job["started_at"].is_string())
            .await;
    }
    // The doomed worker is full; these wait in the queue.
    let mut quick = Vec::new();
    for n in 0..3 {
        let command = format!("echo quick-{n} >> {}", started.display());
        quick.push(cluster.submit(&api, json!({ "command": command })).await);
    }
    let mut pgids = Vec::new();
    for id in &long {
        pgids.push(cluster.group_of(&api, id).await);
    }
    cluster.kill(doomed).await;
    let killed_at = Instant::now();

    // A survivor reaps the lost jobs and runs the queued ones.
    cluster.worker(&fast_lease).await;
    for id in &long {
        let job = cluster.wait_for(&api, id, is_final).await;
        assert_eq!(job["status"], "Failed");
        assert_eq!(job["error"], "worker lost");
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(30),
        "settled within lease plus reap interval, give or take a busy machine"
    );
    for id in &quick {
        assert_eq!(
            cluster.wait_for(&api, id, is_final).await["status"],
            "Success"
        );
    }
    assert_eq!(
        cluster.count(&api, "status=Running&limit=1").await,
        0,
        "none stuck"
    );
    let lines = lines_of(&started);
    assert_unique(&lines);
    assert_eq!(lines.len(), 5, "no command ran twice: {lines:?}");

    // The killed worker could not kill its commands; the test does.
    for pgid in pgids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
    }
}

#[tokio::test]
async fn a_cancel_through_one_process_kills_a_job_on_another() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let other_api = cluster.api().await;
    cluster.worker(&[]).await;
    let id = cluster
        .submit(&api, json!({"command": "sleep 300 & sleep 300; wait"}))
        .await;
    let pgid = cluster.group_of(&api, &id).await;
    let response = cluster
        .client
        .post(format!("{other_api}/jobs/{id}/cancel/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(live_processes_in_group(&pgid), Vec::<String>::new());
}

#[tokio::test]
async fn a_redis_restart_loses_no_line_for_a_client_on_another_api() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let mut cluster = Cluster::with_redis(redis.url()).await;
    let submit_api = cluster.api().await;
    let watch_api = cluster.api().await;
    cluster.worker(&[]).await;
    let id = cluster
        .submit(
            &submit_api,
            json!({"command": "for i in $(seq 1 40); do echo line-$i; sleep 0.1; done"}),
        )
        .await;
    let ws = watch_api.replace("http://", "ws://");
    let session = tokio::spawn(ws_read_all(format!("{ws}/ws/jobs/{id}/")));
    cluster
        .wait_for(&submit_api, &id, |job| {
            job["stdout"]
                .as_str()
                .is_some_and(|out| out.contains("line-10\n"))
        })
        .await;
    drop(redis);
    sleep(Duration::from_millis(1000)).await;
    let _redis = OwnRedis::start(port);
    let session = session.await.unwrap();
    let expected = numbered_lines("line-", 40);
    assert_eq!(
        session.output(),
        expected,
        "every line, in order, by replay"
    );
    assert_eq!(
        session.statuses().last().map(String::as_str),
        Some("Success")
    );
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish_then_the_worker_leaves() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let worker = cluster.worker(&[]).await;
    let id = cluster
        .submit(&api, json!({"command": "sleep 1; echo finished"}))
        .await;
    cluster
        .wait_for(&api, &id, |job| job["started_at"].is_string())
        .await;
    let pid = cluster.processes[worker].id().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(DEADLINE, cluster.processes[worker].wait())
        .await
        .expect("the worker exits")
        .unwrap();
    assert!(status.success(), "a clean exit: {status}");
    let job = cluster.job(&api, &id).await;
    assert_eq!(
        job["status"], "Success",
        "it finished within its grace: {job}"
    );
    assert_eq!(job["stdout"], "finished\n");
    let workers = cluster.get_json(format!("{api}/workers/")).await;
    assert_eq!(workers["workers"], json!([]), "it deregistered");
}

#[tokio::test]
async fn nul_bytes_never_reach_postgresql_as_errors() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    cluster.worker(&[]).await;

    let id = cluster
        .submit(&api, json!({"command": "printf 'nul:\\0:end\\n'"}))
        .await;
    let job = cluster.wait_for(&api, &id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["stdout"], "nul:\u{FFFD}:end\n");

    let refused = cluster
        .client
        .post(format!("{api}/jobs/"))
        .json(&json!({"command": "true", "parameters": {"note": "a\u{0}b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let listed = cluster
        .client
        .get(format!("{api}/jobs/list/?host=a%00b"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 400);
}

#[tokio::test]
async fn with_a_state_dir_a_killed_workers_jobs_are_finished_by_the_next_once() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rje-state");
    let state_env = state.display().to_string();
    let durable = [
        ("RJE_LEASE_SECONDS", "2"),
        ("RJE_WORKER_CONCURRENCY", "16"),
        ("RJE_STATE_DIR", state_env.as_str()),
    ];
    let doomed = cluster.worker(&durable).await;
    let jobs = cluster
        .submit_counted(&api, 12, dir.path().join("runs"))
        .await;
    let sleeper = cluster
        .submit(&api, json!({"command": "sleep 300 & sleep 300; wait"}))
        .await;
    cluster.wait_printing(&api, &jobs).await;
    let pgid = cluster.group_of(&api, &sleeper).await;
    cluster.kill(doomed).await;

    // Asked while no worker follows the job: recorded, carried out by
    // whoever takes it up.
    cluster.cancel(&api, &sleeper).await;
    assert!(
        !live_processes_in_group(&pgid).is_empty(),
        "nobody killed it yet"
    );

    cluster.worker(&durable).await;
    cluster.assert_finished_once(&api, &jobs).await;
    let cancelled = cluster.wait_for(&api, &sleeper, is_final).await;
    assert_eq!(cancelled["status"], "Cancelled", "{cancelled}");
    wait_group_gone(&pgid).await;
}

#[tokio::test]
async fn a_paused_worker_that_lost_its_durable_job_lets_it_go_without_killing_it() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rje-state").display().to_string();
    let durable = [
        ("RJE_LEASE_SECONDS", "2"),
        ("RJE_STATE_DIR", state.as_str()),
    ];
    let paused = cluster.worker(&durable).await;
    let id = cluster
        .submit(
            &api,
            json!({"command": "for i in $(seq 1 60); do echo line-$i; sleep 0.1; done"}),
        )
        .await;
    cluster
        .wait_for(&api, &id, |job| {
            job["stdout"]
                .as_str()
                .is_some_and(|out| out.contains("line-2\n"))
        })
        .await;
    let pid = nix::unistd::Pid::from_raw(cluster.processes[paused].id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // Its lease lapses; another worker of the machine takes the job up.
    cluster.worker(&durable).await;
    cluster
        .wait_for(&api, &id, |job| job["reattached"] == 1)
        .await;
    // The paused one wakes, finds itself fenced, and lets go: the command
    // is not killed under its new follower.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let job = cluster.wait_for(&api, &id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    let expected = numbered_lines("line-", 60);
    assert_eq!(job["stdout"], expected, "every line once, in order");
}

/// The last output of a durable job that the store refused (the command
/// had ended) is still in the job's files: the job is left for a take-up,
/// which stores it, never settled without it and its files removed. The
/// store's refusal is real: a trigger on the server refuses that line
/// until the test drops it.
#[tokio::test]
async fn output_the_store_refused_at_the_end_is_stored_by_a_take_up() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rje-state");
    let state_dir = state.display().to_string();
    cluster
        .worker(&[("RJE_LEASE_SECONDS", "2"), ("RJE_STATE_DIR", &state_dir)])
        .await;
    cluster
        .schema
        .execute(
            "CREATE FUNCTION refuse_line() RETURNS trigger AS $$ BEGIN \
               IF NEW.text LIKE '%refused-line%' THEN RAISE EXCEPTION 'refused by the test'; \
               END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON job_output \
               FOR EACH ROW EXECUTE FUNCTION refuse_line();",
        )
        .await;
    // The worker stays busy with another job meanwhile: it renews the
    // leases of what it follows, not that of the job it let go.
    let busy = cluster.submit(&api, json!({"command": "sleep 120"})).await;
    cluster
        .wait_for(&api, &busy, |job| job["status"] == "Running")
        .await;
    let id = cluster
        .submit(
            &api,
            json!({"command": "echo first; sleep 1; echo refused-line"}),
        )
        .await;
    // The command ends: its supervisor wrote the end (unless the worker
    // settled the job and removed its files first).
    let exit = state.join("jobs").join(&id).join("exit.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !exit.exists() && !is_final(&cluster.job(&api, &id).await) {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never ended"
        );
        sleep(Duration::from_millis(50)).await;
    }
    // An absence can only be seen by waiting: the worker has long tried
    // to store the last line, and would have settled the job by now.
    sleep(Duration::from_secs(1)).await;
    let job = cluster.job(&api, &id).await;
    assert_eq!(
        job["status"], "Running",
        "settled without its last line: {job}"
    );
    assert!(exit.exists(), "the job's files were removed");

    // A job whose output the store keeps refusing is taken up again and
    // again; a cancel still ends it, with what was stored.
    let refused = cluster
        .submit(&api, json!({"command": "echo refused-line; sleep 120"}))
        .await;
    cluster
        .wait_for(&api, &refused, |job| job["reattached"].as_u64() >= Some(1))
        .await;
    cluster.cancel(&api, &refused).await;
    let job = cluster.wait_for(&api, &refused, is_final).await;
    assert_eq!(job["status"], "Cancelled", "{job}");
    assert_eq!(job["stdout"], "", "{job}");

    cluster
        .schema
        .execute("DROP TRIGGER refuse ON job_output")
        .await;
    let job = cluster.wait_for(&api, &id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["stdout"], "first\nrefused-line\n", "every line once");
    assert!(job["reattached"].as_u64().unwrap() >= 1, "{job}");
    assert_eq!(cluster.job(&api, &busy).await["status"], "Running");
    cluster.cancel(&api, &busy).await;
}

#[tokio::test]
async fn a_durable_job_settled_elsewhere_is_ended_by_the_next_worker_of_its_machine() {
    let mut cluster = Cluster::new().await;
    let api = cluster.api().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rje-state").display().to_string();
    let durable = [
        ("RJE_LEASE_SECONDS", "2"),
        ("RJE_STATE_DIR", state.as_str()),
    ];
    let doomed = cluster.worker(&durable).await;
    let id = cluster.submit(&api, json!({"command": "sleep 300"})).await;
    let pgid = cluster.group_of(&api, &id).await;
    cluster.kill(doomed).await;
    // A worker that cannot see the job's files (as on another machine)
    // leaves it to the job's machine for five leases (10 s here), then
    // settles it as lost; the command runs on.
    cluster.worker(&[("RJE_LEASE_SECONDS", "2")]).await;
    // An absence can only be seen by waiting: well inside the grace, and
    // already past the lease and a few reaps.
    sleep(Duration::from_secs(5)).await;
    assert_eq!(
        cluster.job(&api, &id).await["status"],
        "Running",
        "still left to its machine"
    );
    let settled = cluster.wait_for(&api, &id, is_final).await;
    assert_eq!(settled["error"], "worker lost");
    assert!(!live_processes_in_group(&pgid).is_empty());
    // The next worker of the job's machine ends it: the store says it is over.
    cluster.worker(&durable).await;
    wait_group_gone(&pgid).await;
}

/// Durable jobs on an SSH host: a worker killed -9 mid-run, and a second
/// worker that reaches the same host finishes its jobs from the files on
/// the host; a cancel sent meanwhile is carried out, and a job whose host
/// "rebooted" (its boot id changed) fails without anything being killed.
#[tokio::test]
async fn a_second_worker_takes_up_the_ssh_jobs_of_a_killed_one() {
    let sshd = rje_testkit::TestSshd::start();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let hosts = crate::ssh::hosts_file_with(
        &sshd,
        &format!("durable = true\nstate_dir = \"{}\"", state_dir.display()),
    );
    let hosts = hosts.display().to_string();
    let mut cluster = Cluster::new().await;
    let api = cluster
        .api_with(&[("RJE_HOSTS_FILE", hosts.as_str())])
        .await;
    let env = [
        ("RJE_LEASE_SECONDS", "2"),
        ("RJE_WORKER_CONCURRENCY", "16"),
        ("RJE_HOSTS_FILE", hosts.as_str()),
    ];
    let doomed = cluster.worker(&env).await;
    let jobs = cluster
        .submit_counted(&api, 8, state.path().join("runs"))
        .await;
    let sleeper = cluster
        .submit(&api, json!({"command": "sleep 300 & sleep 300; wait"}))
        .await;
    let rebooted = cluster.submit(&api, json!({"command": "sleep 300"})).await;
    let deadline = cluster
        .submit(
            &api,
            json!({"command": "sleep 300 & sleep 300; wait", "timeout": 3}),
        )
        .await;
    cluster.wait_printing(&api, &jobs).await;
    let mut groups = Vec::new();
    for id in [&sleeper, &rebooted, &deadline] {
        groups.push(cluster.group_of(&api, id).await);
    }
    cluster.kill(doomed).await;

    cluster.cancel(&api, &sleeper).await;
    assert!(
        !live_processes_in_group(&groups[0]).is_empty(),
        "nobody killed it yet"
    );
    // As if the host had booted since: the job's record names another boot.
    let pid_file = state_dir.join(&rebooted).join("pid");
    let recorded = std::fs::read_to_string(&pid_file).unwrap();
    let pgid = recorded.split(' ').next().unwrap().to_owned();
    std::fs::write(&pid_file, format!("{pgid} a-boot-before\n")).unwrap();
    // The host keeps the deadline while no worker follows the job.
    wait_group_gone(&groups[2]).await;

    cluster.worker(&env).await;
    cluster.assert_finished_once(&api, &jobs).await;
    let cancelled = cluster.wait_for(&api, &sleeper, is_final).await;
    assert_eq!(cancelled["status"], "Cancelled", "{cancelled}");
    wait_group_gone(&groups[0]).await;
    let timed_out = cluster.wait_for(&api, &deadline, is_final).await;
    assert_eq!(timed_out["error"], "timed out after 3 s", "{timed_out}");
    let failed = cluster.wait_for(&api, &rebooted, is_final).await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    assert_eq!(failed["error"], "the host rebooted while the command ran");
    assert!(
        !live_processes_in_group(&groups[1]).is_empty(),
        "a group from another boot is never signalled"
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(groups[1].parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    crate::durable_ssh::wait_no_job_dirs(&state_dir).await;
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |at| scheme_end + at);
    format!("{}/{name}{query}", &base[..host_end])
}

#[test]
fn a_database_is_replaced_in_a_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h:5432?sslmode=disable", "x"),
        "postgres://u@h:5432/x?sslmode=disable"
    );
}

/// `rje migrate` on a database nobody created: one message, naming it
/// and saying how to create it (neither migrate nor a server does).
#[tokio::test]
async fn migrate_says_once_how_to_create_a_missing_database() {
    // Fails saying how to start PostgreSQL when it is not there.
    let _schema = TestSchema::create("rje_it").await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("rje_missing_{}_{nanos}", std::process::id());
    let url = with_database(&rje_testkit::postgres::admin_url(), &name);
    let output = tokio::time::timeout(
        DEADLINE,
        Command::new(env!("CARGO_BIN_EXE_rje"))
            .arg("migrate")
            .env("RJE_DATABASE_URL", &url)
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("rje migrate finishes")
    .expect("rje runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("does not exist").count(),
        1,
        "said once: {stderr}"
    );
    assert!(stderr.contains(&format!("createdb {name}")), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing was applied");
}

#[tokio::test]
async fn a_token_revoked_through_one_api_is_refused_by_another_at_once() {
    let mut cluster = Cluster::new().await;
    let tokens = [("RJE_API_TOKENS", "root-secret")];
    let api = cluster.api_with(&tokens).await;
    let other_api = cluster.api_with(&tokens).await;
    let created: Value = cluster
        .client
        .post(format!("{api}/tokens/"))
        .bearer_auth("root-secret")
        .json(&json!({"name": "ci", "role": "read"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let read = |base: &str| {
        cluster
            .client
            .get(format!("{base}/jobs/"))
            .bearer_auth(&secret)
            .send()
    };
    // Made through one process, taken by the other at once.
    assert_eq!(read(&other_api).await.unwrap().status(), 200);
    let revoked = cluster
        .client
        .delete(format!("{api}/tokens/ci/"))
        .bearer_auth("root-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    // Each request looks its token up: the very next one is refused, well
    // within the second the issue allows, with no cache to expire.
    assert_eq!(read(&other_api).await.unwrap().status(), 401);
    assert_eq!(read(&api).await.unwrap().status(), 401);
}

/// Four schedulers (two APIs, two workers) follow one schedule that fires
/// every second: each fire time makes one job, with no gap; the jobs run.
#[tokio::test]
async fn a_schedule_every_second_fires_once_per_second_across_four_processes() {
    let mut cluster = Cluster::new().await;
    // Every process reads the schedules often, so that all four contend
    // for each fire time from the start.
    let fast = [("RJE_SCHEDULE_RELOAD_SECONDS", "0.5")];
    let apis = [cluster.api_with(&fast).await, cluster.api_with(&fast).await];
    cluster.worker(&fast).await;
    cluster.worker(&fast).await;
    let made: Value = cluster
        .client
        .post(format!("{}/schedules/", apis[0]))
        .json(&json!({"name": "tick", "cron": "* * * * * *", "command": "true"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().expect("a schedule").to_owned();
    let query = format!("schedule={id}&status=Success&limit=1");
    let deadline = Instant::now() + DEADLINE;
    while cluster.count(&apis[1], &query).await < 8 {
        assert!(
            Instant::now() < deadline,
            "the schedule never fired 8 times"
        );
        sleep(Duration::from_millis(200)).await;
    }
    let paused = cluster
        .client
        .post(format!("{}/schedules/tick/pause/", apis[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 200);
    let page = cluster
        .get_json(format!(
            "{}/jobs/list/?schedule={id}&ordering=created_at&limit=100&output=none",
            apis[1]
        ))
        .await;
    let jobs = page["jobs"].as_array().unwrap();
    let at = |job: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(job[field].as_str().unwrap_or_default()).ok()
    };
    let fire_times: Vec<_> = jobs
        .iter()
        .filter_map(|job| at(job, "scheduled_for"))
        .collect();
    assert_eq!(fire_times.len(), jobs.len());
    for pair in fire_times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "one job per fire time, no gap: {fire_times:?}"
        );
    }
    // The delay from each fire time to its job's start, for the record.
    let mut delays: Vec<f64> = jobs
        .iter()
        .filter_map(|job| {
            Some((at(job, "started_at")? - at(job, "scheduled_for")?).as_seconds_f64())
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    if let (Some(p50), Some(max)) = (delays.get(delays.len() / 2), delays.last()) {
        eprintln!(
            "fire to start over {} fires: p50 {p50:.4} s, max {max:.4} s",
            delays.len()
        );
    }
}
