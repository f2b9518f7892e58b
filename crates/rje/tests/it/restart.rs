//! The real `rje serve` process: jobs survive a restart, a job left
//! Running by a killed process is settled on the next start, and protected
//! mode refuses to listen unprotected.

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;

/// A running `rje serve` process.
pub(crate) struct Process {
    child: Child,
    pub(crate) base: String,
    client: reqwest::Client,
}

/// `rje serve` on `db`, in the directory of `db`; its local jobs end with
/// it (no state directory) unless a test gives one.
pub(crate) fn rje(db: &Path) -> Command {
    rje_from(Path::new(env!("CARGO_BIN_EXE_rje")), db)
}

/// [`rje`], run from the binary at `program`.
fn rje_from(program: &Path, db: &Path) -> Command {
    let mut command = Command::new(program);
    if let Some(dir) = db.parent() {
        command.current_dir(dir);
    }
    command
        .arg("serve")
        .env("RJE_STATE_DIR", "")
        .env_remove("RJE_API_TOKENS")
        .env_remove("RJE_SSH_HOST")
        .env_remove("EC2_HOST")
        .env_remove("RJE_HOSTS_FILE")
        .env_remove("RJE_REDIS_URL")
        .env("RJE_BIND", "127.0.0.1:0")
        .env("RJE_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("RJE_WORKER_CONCURRENCY", "1")
        .env("RJE_KILL_GRACE_SECONDS", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

impl Process {
    async fn start(db: &Path) -> Process {
        Self::start_with(rje(db)).await
    }

    pub(crate) async fn start_with(mut command: Command) -> Process {
        let mut child = command.spawn().expect("rje starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("rje prints its address")
            .unwrap()
            .expect("a line");
        let base = line
            .strip_prefix("rje listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let dashboard = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("rje prints the dashboard's address")
            .unwrap();
        assert_eq!(dashboard, Some(format!("dashboard at {base}/ui/")));
        Process {
            child,
            base,
            client: reqwest::Client::new(),
        }
    }

    pub(crate) async fn submit(&self, command: &str) -> String {
        let response = self
            .client
            .post(format!("{}/jobs/", self.base))
            .json(&json!({ "command": command }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        id_of(&response.json().await.unwrap())
    }

    async fn job(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/jobs/{id}/", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn cancel(&self, id: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/jobs/{id}/cancel/", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub(crate) async fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "gave up on {job}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn kill_hard(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

#[tokio::test]
async fn jobs_survive_a_restart_and_a_killed_run_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    let first = Process::start(&db).await;
    let finished = first.submit("echo kept").await;
    first.wait_for(&finished, is_final).await;
    let interrupted = first.submit("echo begun; sleep 300").await;
    // A GET reads the job's state, then its output: wait for both, since
    // the two are not one snapshot.
    let running = first
        .wait_for(&interrupted, |job| {
            job["stdout"] == "begun\n" && job["remote_process_id"].is_string()
        })
        .await;
    let pgid = running["remote_process_id"].as_str().unwrap().to_owned();
    let waiting = first.submit("echo after restart").await;
    first.kill_hard().await;

    let second = Process::start(&db).await;
    let settled = second.job(&interrupted).await;
    assert_eq!(settled["status"], "Failed", "never left Running: {settled}");
    assert_eq!(settled["error"], "worker lost");
    assert_eq!(settled["stdout"], "begun\n", "its output survived");
    let kept = second.job(&finished).await;
    assert_eq!(kept["status"], "Success");
    assert_eq!(kept["stdout"], "kept\n");
    let resumed = second.wait_for(&waiting, is_final).await;
    assert_eq!(resumed["status"], "Success");
    assert_eq!(resumed["stdout"], "after restart\n");
    assert_eq!(resumed["attempts"], 1, "the queued job ran once");

    // The killed server could not kill its job's processes; clean up.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    second.kill_hard().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    let first = Process::start(&db).await;
    let running = first.submit("echo begun; sleep 300").await;
    first
        .wait_for(&running, |job| job["stdout"] == "begun\n")
        .await;
    let pid = first.child.id().unwrap();

    // The same file however it is named: its path, a symlink, a hard link,
    // a path with a detour through `..`.
    let symlink = dir.path().join("other.db");
    std::os::unix::fs::symlink(&db, &symlink).unwrap();
    let hard_link = dir.path().join("linked.db");
    std::fs::hard_link(&db, &hard_link).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let detour = dir.path().join("sub/../rje.db");
    for path in [&db, &symlink, &hard_link, &detour] {
        let second = rje(path).output().await.unwrap();
        assert!(!second.status.success(), "{}", path.display());
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(stderr.contains("is in use by process"), "{stderr}");
        assert!(
            stderr.contains(&format!("process {pid} (")),
            "names the owner: {stderr}"
        );
    }

    // The first server's job was never touched and still runs.
    let job = first.job(&running).await;
    assert_eq!(job["status"], "Running", "{job}");
    assert!(job["error"].is_null(), "{job}");
    assert_eq!(first.cancel(&running).await["status"], "Cancelled");
    first.kill_hard().await;
}

#[tokio::test]
async fn protected_mode_refuses_to_listen_unprotected() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    let refused = rje(&db)
        .env("RJE_BIND", "0.0.0.0:0")
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("RJE_API_TOKENS"), "{stderr}");

    let mut allowed = rje(&db)
        .env("RJE_BIND", "0.0.0.0:0")
        .env("RJE_API_TOKENS", "a-token")
        .spawn()
        .unwrap();
    let stdout = allowed.stdout.take().unwrap();
    let line = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with("rje listening on http://0.0.0.0:"),
        "{line}"
    );
    allowed.start_kill().unwrap();
    allowed.wait().await.unwrap();
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    for (variable, value, says) in [
        ("RJE_WORKER_CONCURRENCY", "0", "worker-concurrency"),
        ("RJE_LEASE_SECONDS", "-4", "RJE_LEASE_SECONDS"),
        ("RJE_DATABASE_URL", "mysql://x", "postgres://"),
        // A file where the state directory would be.
        (
            "RJE_STATE_DIR",
            "rje.db/state",
            "cannot use the state directory",
        ),
    ] {
        let out = rje(&db).env(variable, value).output().await.unwrap();
        assert!(!out.status.success(), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{variable}={value}: {stderr}");
    }
}

/// The size of a job's stdout in the store now, drop markers included, as
/// one statement reads it (the list's `stdout_bytes`).
async fn stored_bytes(process: &Process, id: &str) -> u64 {
    let list: Value = process
        .client
        .get(format!("{}/jobs/?output=none&limit=100", process.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["id"] == id)
        .unwrap();
    // A job still queued has no output yet.
    job["stdout_bytes"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn the_output_cap_holds_while_a_flood_runs_and_after_a_crash() {
    const CAP: u64 = 256 * 1024;
    // One drop marker stands in the output, where head and tail meet.
    const MARKER: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    let mut command = rje(&db);
    command.env("RJE_MAX_OUTPUT_BYTES", CAP.to_string());
    let first = Process::start_with(command).await;
    let flood = first.submit("yes 'a line of a flood of output'").await;

    // Sample the stored output while the flood goes on: it is at the cap,
    // never past it.
    let mut samples = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while samples.len() < 40 {
        let stored = stored_bytes(&first, &flood).await;
        assert!(
            stored <= CAP + MARKER,
            "{stored} bytes stored against a cap of {CAP}"
        );
        if stored > CAP / 2 {
            samples.push(stored);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood never filled the cap"
        );
    }
    let pgid = first.job(&flood).await["remote_process_id"]
        .as_str()
        .unwrap()
        .to_owned();
    first.kill_hard().await;
    // The killed server's command is still running; stop it.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();

    let second = Process::start(&db).await;
    let settled = second.job(&flood).await;
    assert_eq!(settled["status"], "Failed", "{}", settled["error"]);
    let stored = stored_bytes(&second, &flood).await;
    assert!(
        stored <= CAP + MARKER,
        "{stored} bytes left after the crash, cap {CAP}"
    );
    let stdout = settled["stdout"].as_str().unwrap();
    assert!(stdout.contains("bytes of stdout dropped]"));
    assert_eq!(stdout.len() as u64, stored, "the job shows what is stored");
    second.kill_hard().await;
}

/// Alone in a process of its own, so that no other test's WebSocket counts.
#[tokio::test]
async fn websocket_subscribers_are_counted_while_connected() {
    let dir = tempfile::tempdir().unwrap();
    let process = Process::start(&dir.path().join("rje.db")).await;
    let subscribers = || async {
        let text = process
            .client
            .get(format!("{}/metrics", process.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total(
            &scrape(&text),
            "rje_websocket_subscribers",
            &["stream=\"job\""],
        )
    };
    let id = process.submit("sleep 300").await;
    let url = format!("{}/ws/jobs/{id}/", process.base.replacen("http", "ws", 1));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while subscribers().await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(socket);
    while subscribers().await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber never uncounted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    process.cancel(&id).await;
}

#[tokio::test]
async fn by_default_running_jobs_outlive_a_killed_server_and_finish_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    // The default: ./rje-state, beside ./rje.db.
    let state = dir.path().join("rje-state");
    let durable = || {
        let mut command = rje(&db);
        command
            .env_remove("RJE_STATE_DIR")
            .env("RJE_WORKER_CONCURRENCY", "8");
        command
    };
    let first = Process::start_with(durable()).await;
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..5 {
        ids.push(
            first
                .submit("for i in $(seq 1 30); do echo line-$i; sleep 0.1; done")
                .await,
        );
    }
    for id in &ids {
        first
            .wait_for(id, |job| {
                job["stdout"]
                    .as_str()
                    .is_some_and(|out| out.contains("line-3\n"))
            })
            .await;
    }
    // kill -9: nothing of rje gets to say goodbye.
    first.kill_hard().await;

    let second = Process::start_with(durable()).await;
    let expected = numbered_lines("line-", 30);
    for id in &ids {
        let job = second.wait_for(id, is_final).await;
        assert_eq!(job["status"], "Success", "{job}");
        assert_eq!(job["exit_code"], 0);
        assert_eq!(job["stdout"], expected, "every line once, in order: {id}");
        assert_eq!(job["reattached"], 1);
    }
    // Once the results are stored, the supervisors' files go.
    let jobs_dir = state.join("jobs");
    assert!(jobs_dir.is_dir(), "the default state directory was used");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while std::fs::read_dir(&jobs_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job directories left behind"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `rje serve` on `db` whose local jobs run under supervisors in `state`.
fn durable_rje(db: &Path, state: &Path) -> Command {
    let mut command = rje(db);
    command
        .env("RJE_STATE_DIR", state)
        .env("RJE_WORKER_CONCURRENCY", "8");
    command
}

/// The supervisor record of job `id`, once written.
async fn supervisor_of(state: &Path, id: &str) -> rje_exec::durable::SupervisorRecord {
    let job = rje_exec::durable::JobDir::new(state.join("jobs").join(id));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(record)) = job.read_supervisor() {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no supervisor for {id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_timeout_that_fires_while_no_rje_runs_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let first = Process::start_with(durable_rje(&db, &state)).await;
    let response = first
        .client
        .post(format!("{}/jobs/", first.base))
        .json(&json!({"command": "sleep 300 & sleep 300; wait", "timeout": 2}))
        .send()
        .await
        .unwrap();
    let id = id_of(&response.json().await.unwrap());
    let started = first
        .wait_for(&id, |job| job["remote_process_id"].is_string())
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    first.kill_hard().await;
    // Nobody follows the job: its supervisor keeps the deadline.
    wait_group_gone(&pgid).await;
    let second = Process::start_with(durable_rje(&db, &state)).await;
    let job = second.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Failed");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 2"),
        "{job}"
    );
}

#[tokio::test]
async fn a_job_whose_supervisor_was_killed_fails_with_the_reason_and_never_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let marker = dir.path().join("runs");
    let first = Process::start_with(durable_rje(&db, &state)).await;
    let id = first
        .submit(&format!("echo run >> {}; sleep 300", marker.display()))
        .await;
    let started = first
        .wait_for(&id, |job| job["remote_process_id"].is_string())
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    let supervisor = supervisor_of(&state, &id).await;
    first.kill_hard().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = Process::start_with(durable_rje(&db, &state)).await;
    let job = second.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Failed");
    assert!(
        job["error"].as_str().unwrap().contains("supervisor died"),
        "{job}"
    );
    wait_group_gone(&pgid).await;
    assert_eq!(lines_of(&marker), ["run"], "never run a second time");
}

#[tokio::test]
async fn a_job_of_a_machine_that_rebooted_fails_and_nothing_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let first = Process::start_with(durable_rje(&db, &state)).await;
    let id = first.submit("sleep 300").await;
    let started = first
        .wait_for(&id, |job| job["remote_process_id"].is_string())
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    let mut supervisor = supervisor_of(&state, &id).await;
    first.kill_hard().await;
    // A reboot cannot be had on demand: the supervisor goes, as it would
    // (else it would end its command once the job's files are removed),
    // and the record says another boot.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    supervisor.boot_id = "00000000-0000-0000-0000-000000000000".into();
    let record = state.join("jobs").join(&id).join("supervisor.json");
    std::fs::write(&record, serde_json::to_vec(&supervisor).unwrap()).unwrap();
    let second = Process::start_with(durable_rje(&db, &state)).await;
    let job = second.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["error"], "the host rebooted while the command ran");
    assert!(
        !live_processes_in_group(&pgid).is_empty(),
        "pids of another boot are not signalled"
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[tokio::test]
async fn an_upgrade_in_detach_mode_leaves_the_job_to_the_new_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    // The binary is replaced between the two processes, as a deploy does.
    let installed = dir.path().join("bin").join("rje");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_rje"), &installed).unwrap();
    let mut detaching = rje_from(&installed, &db);
    detaching
        .env("RJE_STATE_DIR", &state)
        .env("RJE_SHUTDOWN_MODE", "detach");
    let mut first = Process::start_with(detaching).await;
    let id = first
        .submit("for i in $(seq 1 30); do echo line-$i; sleep 0.1; done")
        .await;
    let started = first
        .wait_for(&id, |job| {
            job["stdout"]
                .as_str()
                .is_some_and(|out| out.contains("line-2\n"))
        })
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    let pid = first.child.id().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // It does not wait the 30 s shutdown grace for the job.
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), first.child.wait())
        .await
        .expect("rje exits at once")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !live_processes_in_group(&pgid).is_empty(),
        "the command runs on"
    );
    std::fs::remove_file(&installed).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_rje"), &installed).unwrap();
    let mut upgraded = rje_from(&installed, &db);
    upgraded.env("RJE_STATE_DIR", &state);
    let second = Process::start_with(upgraded).await;
    let job = second.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    let expected = numbered_lines("line-", 30);
    assert_eq!(job["stdout"], expected);
    assert_eq!(job["reattached"], 1);
}

/// The name the server on `db` gives its store in its jobs' files.
fn store_of(db: &Path) -> String {
    rje::server::store_mark(&format!("sqlite://{}", db.display()))
}

/// Sets the time of each of `paths` to `age` (as `touch -d` reads it).
fn backdate(paths: &[std::path::PathBuf], age: &str) {
    for path in paths {
        let touched = std::process::Command::new("touch")
            .arg("-d")
            .arg(age)
            .arg(path)
            .status()
            .unwrap();
        assert!(touched.success(), "touch {}", path.display());
    }
}

/// The files of an ended job of the store named `store` (see
/// [`store_of`]), as old as `age`.
fn plant_ended_job(dir: &Path, store: &str, age: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let spec = json!({
        "command": "true",
        "timeout_secs": 60,
        "kill_grace_ms": 1000,
        "store": store,
    });
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    std::fs::write(
        dir.join("exit.json"),
        br#"{"code":0,"signal":null,"timed_out":false,"ended_at_ms":0}"#,
    )
    .unwrap();
    backdate(&[dir.join("spec.json"), dir.join("exit.json")], age);
}

/// Waits until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn files_of_jobs_nobody_can_take_up_are_removed_once_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let job_dir = |id: &str| state.join("jobs").join(id);
    let (stale, recent, foreign) = (
        "01a20000-0000-7000-8000-000000000001",
        "01a20000-0000-7000-8000-000000000002",
        "01a20000-0000-7000-8000-000000000003",
    );
    let ours = store_of(&db);
    plant_ended_job(&job_dir(stale), &ours, "2 hours ago");
    plant_ended_job(&job_dir(recent), &ours, "now");
    // Another store's, sharing the directory: that store reports it.
    plant_ended_job(
        &job_dir(foreign),
        &store_of(&dir.path().join("other.db")),
        "2 hours ago",
    );
    let _server = Process::start_with(durable_rje(&db, &state)).await;
    wait_until("the stale directory goes", || !job_dir(stale).exists()).await;
    assert!(job_dir(recent).exists(), "a recent one stays for its grace");
    assert!(
        job_dir(foreign).exists(),
        "another store's stays for that store"
    );
}

#[tokio::test]
async fn a_server_leaves_another_stores_ended_job_to_it_however_long_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rje-state");
    let (first_db, second_db) = (dir.path().join("first.db"), dir.path().join("second.db"));
    let gate = dir.path().join("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let first = Process::start_with(durable_rje(&first_db, &state)).await;
    let id = first
        .submit(&format!(
            "echo first-line; read line < '{}'; echo \"$line\"; exit 7",
            gate.display()
        ))
        .await;
    first
        .wait_for(&id, |job| job["stdout"] == "first-line\n")
        .await;
    first.kill_hard().await;
    // The job ends while its server is down: nobody reports it yet.
    // (Opening a FIFO to write waits for its reader: the command.)
    std::fs::write(&gate, "last-line\n").unwrap();
    let job_dir = state.join("jobs").join(&id);
    wait_until("the job ends", || job_dir.join("exit.json").exists()).await;
    // Past the other server's sweep horizon (ten leases) since.
    let files = ["spec.json", "supervisor.json", "exit.json"].map(|file| job_dir.join(file));
    backdate(&files, "2 hours ago");
    // A directory of the second store's own, as old, that it does not
    // know: once it is gone, the second server has swept.
    let control = state
        .join("jobs")
        .join("01a20000-0000-7000-8000-0000000000b1");
    plant_ended_job(&control, &store_of(&second_db), "2 hours ago");
    let second = Process::start_with(durable_rje(&second_db, &state)).await;
    wait_until("the second server sweeps", || !control.exists()).await;
    assert!(
        job_dir.join("exit.json").exists(),
        "the second server removed the first store's job"
    );
    second.kill_hard().await;

    let first = Process::start_with(durable_rje(&first_db, &state)).await;
    let job = first.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(job["exit_code"], 7, "{job}");
    assert_eq!(job["stdout"], "first-line\nlast-line\n", "{job}");
}

#[tokio::test]
async fn a_job_whose_files_are_removed_while_it_runs_fails_saying_so_and_is_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let server = Process::start_with(durable_rje(&db, &state)).await;
    let response = server
        .client
        .post(format!("{}/jobs/", server.base))
        .json(&json!({"command": "sleep 300 & sleep 300; wait", "timeout": 120}))
        .send()
        .await
        .unwrap();
    let id = id_of(&response.json().await.unwrap());
    let started = server
        .wait_for(&id, |job| job["remote_process_id"].is_string())
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    let removed = std::time::Instant::now();
    // The supervisor may write a file between the listing and the rmdir of
    // a removal: removed again until it is gone, as an operator would.
    let files = state.join("jobs").join(&id);
    for tries in 1.. {
        match std::fs::remove_dir_all(&files) {
            Ok(()) => break,
            Err(err) if err.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 50 => {}
            Err(err) => panic!("removing {}: {err}", files.display()),
        }
    }
    let job = server.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|error| error.contains("files were removed while it ran")),
        "{job}"
    );
    // Well within a lease (30 s here), and long before its timeout.
    assert!(
        removed.elapsed() < std::time::Duration::from_secs(30),
        "settled after {:?}",
        removed.elapsed()
    );
    wait_group_gone(&pgid).await;
}

#[tokio::test]
async fn a_state_directory_others_may_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
    let out = tokio::time::timeout(DEADLINE, durable_rje(&db, &state).output())
        .await
        .expect("rje refuses to start, and exits")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&state.display().to_string()) && stderr.contains("chmod go-w"),
        "{stderr}"
    );
}

/// Unmounts what a test mounted, however the test ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        // Lazily: a process of the test may still hold a file there.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_state_directory_that_fills_up_fails_the_job_saying_so() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a 64 KiB tmpfs as the state directory: it needs root \
         (the suite runs as root in CI)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    std::fs::create_dir(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs on {}", state.display());
    // Dropped after the server (declared before it): unmounted last.
    let _unmount = Mounted(state.clone());
    let server = Process::start_with(durable_rje(&db, &state)).await;
    let id = server
        .submit("head -c 1000000 /dev/zero; echo the end")
        .await;
    let job = server.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(
        job["error"], "the state directory is full (No space left on device)",
        "{job}"
    );
    server.kill_hard().await;
}

#[tokio::test]
async fn a_job_taken_up_twice_still_has_every_line_once_and_its_output_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let capped = || {
        let mut command = durable_rje(&db, &state);
        command.env("RJE_MAX_OUTPUT_BYTES", "4096");
        command
    };
    let first = Process::start_with(capped()).await;
    let lines = first
        .submit("for i in $(seq 1 40); do echo line-$i; sleep 0.1; done")
        .await;
    // Past the cap before the first kill and after each take-up.
    let flood = first
        .submit("seq 1 2000; sleep 1; seq 2001 4000; sleep 1; seq 4001 6000")
        .await;
    first
        .wait_for(&lines, |job| {
            job["stdout"]
                .as_str()
                .is_some_and(|out| out.contains("line-3\n"))
        })
        .await;
    first.kill_hard().await;
    let second = Process::start_with(capped()).await;
    second
        .wait_for(&lines, |job| {
            job["stdout"]
                .as_str()
                .is_some_and(|out| out.contains("line-15\n"))
        })
        .await;
    second.kill_hard().await;
    let third = Process::start_with(capped()).await;
    let job = third.wait_for(&lines, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    let expected = numbered_lines("line-", 40);
    assert_eq!(job["stdout"], expected, "every line once, in order");
    assert_eq!(job["reattached"], 2);

    let flooded = third.wait_for(&flood, is_final).await;
    assert_eq!(flooded["status"], "Success", "{flooded}");
    let stdout = flooded["stdout"].as_str().unwrap();
    assert!(stdout.ends_with("5999\n6000\n"), "the end is kept");
    assert!(
        stdout.contains("bytes of stdout dropped]"),
        "the gap is marked"
    );
    // The cap, plus the one marker line that names the gap.
    assert!(stdout.len() <= 4096 + 64, "{} bytes kept", stdout.len());
}

#[tokio::test]
async fn a_flood_that_nobody_follows_stays_near_the_cap_on_disk() {
    const CAP: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let capped = || {
        let mut command = durable_rje(&db, &state);
        command.env("RJE_MAX_OUTPUT_BYTES", CAP.to_string());
        command
    };
    let first = Process::start_with(capped()).await;
    // About 100 MB over a few seconds, in short lines.
    let id = first
        .submit(
            "for i in $(seq 1 100); do yes 'a line of a flood' | head -c 1000000; \
             echo end-$i; sleep 0.03; done",
        )
        .await;
    first
        .wait_for(&id, |job| job["remote_process_id"].is_string())
        .await;
    first.kill_hard().await;

    // Nobody follows it now: its stdout file may only hold the head, the
    // last cap's worth, and what a second of flood adds before the next
    // check. Its disk use is read as the blocks it holds.
    let stdout = state.join("jobs").join(&id).join("stdout");
    let exit = state.join("jobs").join(&id).join("exit.json");
    let mut largest = 0;
    let mut logical = 0;
    while !exit.exists() {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(&stdout) {
            largest = largest.max(meta.blocks() * 512);
            logical = meta.len();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        logical > 50_000_000,
        "the flood ran: {logical} bytes written"
    );
    assert!(
        largest < 40_000_000,
        "{largest} bytes on disk for a cap of {CAP} and {logical} bytes written"
    );

    let second = Process::start_with(capped()).await;
    let job = second.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    let out = job["stdout"].as_str().unwrap();
    assert!(out.ends_with("end-100\n"), "the end is kept");
    assert!(out.starts_with("a line of a flood\n"), "the head is kept");
    assert!(
        out.contains("bytes of stdout dropped]"),
        "the gap is marked"
    );
    assert!(out.len() as u64 <= CAP + 64, "{} bytes kept", out.len());
}

#[tokio::test]
async fn two_servers_sharing_the_default_state_directory_leave_each_others_jobs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let by_default = |db: &str| {
        let mut command = rje(&dir.path().join(db));
        command.env_remove("RJE_STATE_DIR");
        command
    };
    let first = Process::start_with(by_default("first.db")).await;
    let id = first
        .submit("for i in $(seq 1 20); do echo line-$i; sleep 0.1; done")
        .await;
    first
        .wait_for(&id, |job| {
            job["stdout"]
                .as_str()
                .is_some_and(|out| out.contains("line-2\n"))
        })
        .await;
    // Another store in the same directory: at its start it looks at
    // ./rje-state and finds a job it does not know.
    let second = Process::start_with(by_default("second.db")).await;
    let unknown = second
        .client
        .get(format!("{}/jobs/{id}/", second.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "not its job");
    let job = first.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["stdout"], numbered_lines("line-", 20));
}

#[tokio::test]
async fn sigterm_in_drain_mode_gives_a_durable_job_its_grace_then_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rje.db");
    let mut draining = rje(&db);
    draining
        .env_remove("RJE_STATE_DIR")
        .env("RJE_SHUTDOWN_GRACE_SECONDS", "1");
    let mut process = Process::start_with(draining).await;
    let id = process
        .submit("echo started; sleep 300 & sleep 300; wait")
        .await;
    let started = process
        .wait_for(&id, |job| job["stdout"] == "started\n")
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    let pid = process.child.id().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(DEADLINE, process.child.wait())
        .await
        .expect("rje exits after the grace")
        .unwrap();
    assert!(status.success(), "{status}");
    // Scale-in: nothing of the job may run on, and its end is stored.
    wait_group_gone(&pgid).await;
    let after = Process::start(&db).await;
    let job = after.job(&id).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(
        job["error"],
        "the worker shut down before the command finished"
    );
    assert!(
        !dir.path().join("rje-state").join("jobs").join(&id).exists(),
        "its files went with it"
    );
}

/// What a worker killed -9 after its job's start mark, before it launched
/// the command, leaves behind (finding 16 of #19): the job Running at its
/// attempt, supervised, its lease gone, and its directory with the spec,
/// made before the mark, whose launch nobody claimed. With `launched`,
/// the worker died after claiming the launch, before the supervisor
/// started. Made through the store and the executor's own steps, before
/// the server (which locks the store) starts. Returns the job's id and
/// attempt.
async fn leave_a_job_as_a_killed_worker_does(
    db: &Path,
    state: &Path,
    command: &str,
    launched: bool,
) -> (String, u32) {
    use rje_exec::durable::{JobDir, LaunchMark, Spec, prepare};
    use rje_store::Queue;

    // No retries: queuing it again must not need one.
    let body = json!({ "command": command, "max_retries": 0 });
    let hosts = rje_domain::HostNames::local_only();
    let (store, id, attempt) = claim_as_a_lost_worker(db, &body, &hosts).await;
    let spec = Spec {
        command: command.to_owned(),
        env: Default::default(),
        cwd: None,
        timeout_secs: 60,
        kill_grace_ms: 1000,
        allow_daemons: false,
        max_output_bytes: 0,
        store: Some(store_of(db)),
        attempt: Some(attempt),
    };
    let dir = JobDir::new(state.join("jobs").join(id.to_string()));
    let prepared = prepare(&dir, &spec).unwrap();
    store.mark_started(id, attempt, true).await.unwrap();
    if launched {
        prepared.mark(LaunchMark::Launched).unwrap().unwrap();
    }
    (id.to_string(), attempt)
}

#[tokio::test]
async fn a_job_whose_worker_died_before_its_launch_runs_again_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let runs = dir.path().join("runs");
    let command = format!("echo run >> {}; echo hello", runs.display());
    let (id, attempt) = leave_a_job_as_a_killed_worker_does(&db, &state, &command, false).await;

    let server = Process::start_with(durable_rje(&db, &state)).await;
    let job = server.wait_for(&id, is_final).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["stdout"], "hello\n");
    assert_eq!(lines_of(&runs), ["run"], "run once");
    assert_eq!(job["attempts"], attempt + 1, "one new attempt");
    assert_eq!(job["reattached"], 0, "not taken up: it never ran");
    let job_dir = state.join("jobs").join(&id);
    wait_until("the job's files go", || !job_dir.exists()).await;
}

#[tokio::test]
async fn a_job_whose_launch_was_claimed_is_settled_as_lost_never_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let (db, state) = (dir.path().join("rje.db"), dir.path().join("rje-state"));
    let runs = dir.path().join("runs");
    let command = format!("echo run >> {}; echo hello", runs.display());
    let (id, _) = leave_a_job_as_a_killed_worker_does(&db, &state, &command, true).await;

    let server = Process::start_with(durable_rje(&db, &state)).await;
    let job = server.wait_for(&id, is_final).await;
    // The command may have started as far as anyone can prove: it is
    // never run again.
    assert_eq!(job["status"], "Failed", "{job}");
    assert!(lines_of(&runs).is_empty(), "never run");
    // Still nothing later: it was not queued again.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(server.job(&id).await["status"], "Failed");
    assert!(lines_of(&runs).is_empty(), "never run");
}
