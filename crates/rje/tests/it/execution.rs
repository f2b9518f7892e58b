//! What the worker inside `rje serve` does with jobs.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn exit_code_decides_and_streams_stay_apart() {
    let app = spawn_app().await;
    let failed = app
        .submit_command("echo to-out; echo to-err >&2; exit 7")
        .await;
    let warned = app.submit_command("echo only a warning >&2").await;
    let failed = app.wait_final(&failed).await;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["exit_code"], 7);
    assert_eq!(failed["stdout"], "to-out\n");
    assert_eq!(failed["stderr"], "to-err\n");
    let warned = app.wait_final(&warned).await;
    assert_eq!(
        warned["status"], "Success",
        "stderr alone does not fail a job"
    );
    assert_eq!(warned["stderr"], "only a warning\n");
}

/// More durable jobs at once than the kernel's default number of inotify
/// instances per user (128): each is followed, and its output arrives,
/// through the process's one shared watcher.
#[tokio::test]
async fn two_hundred_durable_jobs_run_at_once() {
    let app = spawn_app_with(|s| s.worker.concurrency = 200).await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(app.submit_command(&format!("sleep 1; echo done-{n}")).await);
    }
    for (n, id) in ids.iter().enumerate() {
        let job = app.wait_final(id).await;
        assert_eq!(job["status"], "Success", "{job}");
        assert_eq!(job["stdout"], format!("done-{n}\n"), "{job}");
    }
}

#[tokio::test]
async fn priority_order_with_a_single_worker() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let order_file = app.path("order");
    let blocker = app.submit_command("sleep 300").await;
    app.wait_started(&blocker).await;
    let mut ids = Vec::new();
    for (name, priority) in [
        ("low-1", "Low"),
        ("medium-1", "Medium"),
        ("high-1", "High"),
        ("low-2", "Low"),
        ("high-2", "High"),
        ("medium-2", "Medium"),
    ] {
        let command = format!("echo {name} >> {}", order_file.display());
        ids.push(id_of(
            &app.submit(json!({"command": command, "priority": priority}))
                .await,
        ));
    }
    assert_eq!(app.cancel(&blocker).await.status(), 200);
    for id in &ids {
        assert_eq!(app.wait_final(id).await["status"], "Success");
    }
    assert_eq!(
        lines_of(&order_file),
        ["high-1", "high-2", "medium-1", "medium-2", "low-1", "low-2"]
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({
            "command": "sleep 300 & sleep 300 & echo started; wait",
            "timeout": 1
        }))
        .await;
    let done = app.wait_final(&id_of(&job)).await;
    assert_eq!(done["status"], "Failed");
    assert_eq!(done["error"], "timed out after 1 s");
    assert_eq!(done["exit_code"], Value::Null);
    assert_eq!(done["stdout"], "started\n");
    let pgid = done["remote_process_id"].as_str().unwrap();
    assert_eq!(live_processes_in_group(pgid), Vec::<String>::new());
}

#[tokio::test]
async fn cancelling_a_running_job_kills_its_process_group() {
    let app = spawn_app().await;
    let id = app
        .submit_command("trap '' TERM; sleep 300 & sleep 300 & echo up; wait")
        .await;
    let started = app
        .wait_for(&id, "printing", |job| {
            job["stdout"] == "up\n" && job["remote_process_id"].is_string()
        })
        .await;
    let pgid = started["remote_process_id"].as_str().unwrap().to_owned();
    assert!(!live_processes_in_group(&pgid).is_empty());

    let response = app.cancel(&id).await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(cancelled["error"], Value::Null, "the kill was confirmed");
    assert_eq!(cancelled["stdout"], "up\n");
    assert_eq!(live_processes_in_group(&pgid), Vec::<String>::new());
}

#[tokio::test]
async fn a_cancelled_queued_job_never_runs() {
    let app = spawn_app_with(|s| s.worker.concurrency = 1).await;
    let marker = app.path("ran");
    let blocker = app.submit_command("sleep 300").await;
    app.wait_started(&blocker).await;
    let victim = app
        .submit_command(&format!("touch {}", marker.display()))
        .await;
    let response = app.cancel(&victim).await;
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "Cancelled");

    app.cancel(&blocker).await;
    // Submitted after the victim: once it has run, the victim would have too.
    let later = app.submit_command("true").await;
    assert_eq!(app.wait_final(&later).await["status"], "Success");
    let victim = app.job(&victim).await;
    assert_eq!(victim["status"], "Cancelled");
    assert_eq!(victim["started_at"], Value::Null);
    assert!(!marker.exists(), "the cancelled job ran");
}

#[tokio::test]
async fn concurrent_submissions_each_run_exactly_once() {
    let app = spawn_app().await;
    let ran = app.path("ran");
    let submissions = (0..100).map(|n| {
        let command = format!("echo job-{n} >> {}", ran.display());
        let app = &app;
        async move { app.submit_command(&command).await }
    });
    let ids = futures_util::future::join_all(submissions).await;
    for id in &ids {
        assert_eq!(app.wait_final(id).await["status"], "Success");
    }
    let mut lines = lines_of(&ran);
    assert_eq!(lines.len(), 100);
    assert_unique(&lines);
    lines.sort();
    let mut expected: Vec<_> = (0..100).map(|n| format!("job-{n}")).collect();
    expected.sort();
    assert_eq!(lines, expected);
    for id in &ids {
        assert_eq!(app.job(id).await["attempts"], 1);
    }
}

#[tokio::test]
async fn environment_and_directory_come_from_parameters() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({
            "command": "echo \"$GREETING\"; pwd",
            "parameters": {"env": {"GREETING": "hello"}, "cwd": "/tmp", "note": "kept"}
        }))
        .await;
    let done = app.wait_final(&id_of(&job)).await;
    assert_eq!(done["stdout"], "hello\n/tmp\n");
    assert_eq!(done["parameters"]["note"], "kept");
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_with_the_reason() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"command": "true", "parameters": {"cwd": "/no/such/dir"}}))
        .await;
    let done = app.wait_final(&id_of(&job)).await;
    assert_eq!(done["status"], "Failed");
    assert!(
        done["error"].as_str().unwrap().contains("/no/such/dir"),
        "{done}"
    );
}

#[tokio::test]
async fn graceful_stop_lets_running_jobs_finish() {
    let app = spawn_app().await;
    let id = app.submit_command("sleep 1; echo finished").await;
    app.wait_started(&id).await;
    let db = app.path("rje.db");
    // Stopping waits for the running job, within its grace period.
    let _dir = app.stop().await;
    let reopened = spawn_app_with(|s| {
        s.database_url = format!("sqlite://{}", db.display());
    })
    .await;
    let done = reopened.job(&id).await;
    assert_eq!(done["status"], "Success");
    assert_eq!(done["stdout"], "finished\n");
}
