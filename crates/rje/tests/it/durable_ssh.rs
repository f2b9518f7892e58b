//! Durable jobs on an SSH host: the command runs under a supervisor on
//! the host, in a directory of its own, and outlives the worker that
//! started it. The host is a real OpenSSH sshd on loopback; what a job
//! left behind is checked with `ps`, and its files on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rje_ssh::{HostConfig, Inventory};
use rje_testkit::TestSshd;
use serde_json::json;
use tokio::time::{Instant, sleep};

use crate::helpers::{
    DEADLINE, TestApp, id_of, lines_of, live_processes_in_group, numbered_lines, spawn_app_with,
    wait_group_gone,
};

/// `box` on `sshd`, its jobs durable, their files under `state_dir`.
pub fn durable_host(sshd: &TestSshd, state_dir: &Path) -> HostConfig {
    HostConfig {
        durable: true,
        state_dir: state_dir.display().to_string(),
        ..crate::ssh::host(sshd, "box")
    }
}

async fn app_on(sshd: &TestSshd, state_dir: &Path) -> TestApp {
    let inventory = Inventory {
        hosts: vec![durable_host(sshd, state_dir)],
        default_host: Some("box".into()),
    };
    spawn_app_with(move |settings| {
        settings.inventory = inventory;
        settings.worker.concurrency = 16;
        settings.kill_grace = Duration::from_millis(500);
    })
    .await
}

/// The job directories left under `state_dir`.
fn job_dirs(state_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state_dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

pub async fn wait_no_job_dirs(state_dir: &Path) {
    let deadline = Instant::now() + DEADLINE;
    while !job_dirs(state_dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "job directories left behind: {:?}",
            job_dirs(state_dir)
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn durable_ssh_jobs_report_like_any_other_and_leave_nothing_behind() {
    let sshd = TestSshd::start();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let app = app_on(&sshd, &state_dir).await;
    let hosts: serde_json::Value = app.get("/hosts/").await.json().await.unwrap();
    assert_eq!(hosts["hosts"][0]["name"], "local");
    assert_eq!(
        hosts["hosts"][0]["durable"], false,
        "no state directory here"
    );
    assert_eq!(hosts["hosts"][1]["durable"], true, "{hosts}");

    let failing = app
        .submit(json!({
            "command": "echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 4",
            "parameters": { "env": { "GREETING": "it's me" }, "cwd": "/tmp" },
        }))
        .await;
    let job = app.wait_final(&id_of(&failing)).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(job["exit_code"], 4);
    assert_eq!(job["stdout"], "it's me from /tmp\n");
    assert_eq!(job["stderr"], "oops\n");
    assert_eq!(job["reattached"], 0);

    let lines = app
        .submit(json!({ "command": "for i in $(seq 1 300); do echo line-$i; done" }))
        .await;
    let job = app.wait_final(&id_of(&lines)).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["stdout"], numbered_lines("line-", 300));

    let no_dir = app
        .submit(json!({ "command": "true", "parameters": { "cwd": "/no/such/dir" } }))
        .await;
    let job = app.wait_final(&id_of(&no_dir)).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("no such directory"),
        "{job}"
    );

    // The host keeps the deadline, and ends the whole group.
    let slow = app
        .submit(json!({ "command": "sleep 300 & sleep 300; wait", "timeout": 1 }))
        .await;
    let job = app.wait_final(&id_of(&slow)).await;
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(job["error"], "timed out after 1 s");
    let pgid = job["remote_process_id"].as_str().unwrap().to_owned();
    wait_group_gone(&pgid).await;

    let cancelled = app
        .submit(json!({ "command": "echo started; sleep 300 & sleep 300; wait" }))
        .await;
    let id = id_of(&cancelled);
    let running = app
        .wait_for(&id, "its first line", |job| job["stdout"] == "started\n")
        .await;
    let pgid = running["remote_process_id"].as_str().unwrap().to_owned();
    assert!(!live_processes_in_group(&pgid).is_empty());
    assert!(app.cancel(&id).await.status().is_success());
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "Cancelled", "{job}");
    assert_eq!(job["stdout"], "started\n");
    wait_group_gone(&pgid).await;

    // Each directory goes once its job's result is stored.
    wait_no_job_dirs(&state_dir).await;
}

#[tokio::test]
async fn a_dropped_connection_is_followed_again_by_the_same_worker() {
    let mut sshd = TestSshd::start();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let app = app_on(&sshd, &state_dir).await;
    let job = app
        .submit(json!({ "command": "for i in $(seq 1 30); do echo line-$i; sleep 0.1; done" }))
        .await;
    let id = id_of(&job);
    app.wait_for(&id, "its second line", |job| {
        job["stdout"]
            .as_str()
            .is_some_and(|out| out.contains("line-2\n"))
    })
    .await;
    // Every connection, and sshd itself, gone for a while: the command
    // runs on under its supervisor.
    sshd.halt();
    sleep(Duration::from_millis(800)).await;
    assert_eq!(app.job(&id).await["status"], "Running");
    sshd.resume();
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(
        job["stdout"],
        numbered_lines("line-", 30),
        "every line once, in order"
    );
    assert_eq!(job["reattached"], 0, "the same worker, the same attempt");
    wait_no_job_dirs(&state_dir).await;
}

#[tokio::test]
async fn a_host_without_setsid_or_flock_runs_its_jobs_plainly() {
    // The host's sessions find nothing but sh.
    let tools = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/bin/sh", tools.path().join("sh")).unwrap();
    let sshd = TestSshd::start_configured(10, &[format!("SetEnv PATH={}", tools.path().display())]);
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let app = app_on(&sshd, &state_dir).await;
    for code in [3, 4] {
        let job = app
            .submit(json!({ "command": format!("echo plain; exit {code}") }))
            .await;
        let job = app.wait_final(&id_of(&job)).await;
        assert_eq!(job["exit_code"], code, "{job}");
        assert_eq!(job["stdout"], "plain\n");
    }
    assert!(
        job_dirs(&state_dir).is_empty(),
        "nothing was kept on the host"
    );
}

#[tokio::test]
async fn a_job_whose_supervisor_is_killed_fails_with_the_reason_and_leaves_nothing() {
    let sshd = TestSshd::start();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let app = app_on(&sshd, &state_dir).await;
    let job = app
        .submit(json!({ "command": "echo started; sleep 300 & sleep 300; wait" }))
        .await;
    let id = id_of(&job);
    let running = app
        .wait_for(&id, "its first line", |job| job["stdout"] == "started\n")
        .await;
    let pgid = running["remote_process_id"].as_str().unwrap().to_owned();
    // The supervisor is the shell that names the job's directory.
    let job_dir = state_dir.join(&id).display().to_string();
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &format!("rje-supervise {job_dir}")])
        .status()
        .unwrap();
    assert!(killed.success(), "the supervisor was found");
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "Failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("supervisor on box died before the command ended"),
        "{error}"
    );
    assert!(error.contains("its process group was killed"), "{error}");
    wait_group_gone(&pgid).await;
    assert_eq!(job["attempts"], 1, "never run again");
}

/// `app_on`, with the database at `db` (made before the server starts).
async fn app_on_db(sshd: &TestSshd, state_dir: &Path, db: &Path) -> TestApp {
    let inventory = Inventory {
        hosts: vec![durable_host(sshd, state_dir)],
        default_host: Some("box".into()),
    };
    let database_url = format!("sqlite://{}", db.display());
    spawn_app_with(move |settings| {
        settings.inventory = inventory;
        settings.database_url = database_url;
        settings.kill_grace = Duration::from_millis(500);
    })
    .await
}

/// What a worker killed -9 after its job's start mark, before its go
/// reached the launch script, leaves behind (finding 16 of #19): the job
/// Running on `box` at its attempt, supervised, its lease gone, and on
/// the host its directory naming the attempt, made before the mark, whose
/// launch nobody claimed (as when the host itself went down with the
/// script: a script that sees its input end claims it abandoned itself).
/// With `launched`, the worker died after the claim, before the supervisor
/// started. The host is this machine (sshd on loopback), so its state
/// directory is written directly. Returns the job's id and attempt.
async fn leave_a_job_as_a_killed_worker_does(
    db: &Path,
    state_dir: &Path,
    command: &str,
    launched: bool,
) -> (String, u32) {
    use crate::helpers::claim_as_a_lost_worker;
    use rje_store::Queue;

    // No retries: queuing it again must not need one.
    let body = json!({ "command": command, "host": "box", "max_retries": 0 });
    let hosts = rje_domain::HostNames::new("box", ["box"]);
    let (store, id, attempt) = claim_as_a_lost_worker(db, &body, &hosts).await;
    // The launch script's first half: the directory, naming the attempt.
    let dir = state_dir.join(id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("attempt"), format!("{attempt}\n")).unwrap();
    store.mark_started(id, attempt, true).await.unwrap();
    if launched {
        std::fs::write(dir.join("launch"), "launched\n").unwrap();
    }
    (id.to_string(), attempt)
}

#[tokio::test]
async fn an_ssh_job_whose_worker_died_before_its_launch_runs_again_once() {
    let sshd = TestSshd::start();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let (db, runs) = (state.path().join("rje.db"), state.path().join("runs"));
    let command = format!("echo run >> {}; echo hello", runs.display());
    let (id, attempt) = leave_a_job_as_a_killed_worker_does(&db, &state_dir, &command, false).await;

    let app = app_on_db(&sshd, &state_dir, &db).await;
    let job = app.wait_final(&id).await;
    assert_eq!(job["status"], "Success", "{job}");
    assert_eq!(job["stdout"], "hello\n");
    assert_eq!(lines_of(&runs), ["run"], "run once");
    assert_eq!(
        job["attempts"],
        attempt + 1,
        "one new attempt, no retry used"
    );
    assert_eq!(job["reattached"], 0, "not taken up: it never ran");
    // The given-up directory was made anew for the new attempt, and went
    // with its result.
    wait_no_job_dirs(&state_dir).await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!(lines_of(&runs), ["run"], "and never again");
}

#[tokio::test]
async fn an_ssh_job_whose_launch_was_claimed_is_settled_as_lost_never_run_again() {
    let sshd = TestSshd::start();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("jobs");
    let (db, runs) = (state.path().join("rje.db"), state.path().join("runs"));
    let command = format!("echo run >> {}; echo hello", runs.display());
    let (id, _) = leave_a_job_as_a_killed_worker_does(&db, &state_dir, &command, true).await;

    let app = app_on_db(&sshd, &state_dir, &db).await;
    let job = app.wait_final(&id).await;
    // The command may have started as far as anyone can prove: it is
    // never run again.
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(job["reattached"], 1, "taken up, found without its command");
    assert!(lines_of(&runs).is_empty(), "never run");
    sleep(Duration::from_secs(2)).await;
    assert_eq!(app.job(&id).await["status"], "Failed", "not queued again");
    assert!(lines_of(&runs).is_empty(), "never run");
}
