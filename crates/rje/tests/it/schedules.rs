//! Schedules, run again, retry on failure and pruning, through the API of
//! the embedded default.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::helpers::*;

async fn create_schedule(app: &TestApp, body: Value) -> Value {
    let response = app.post("/schedules/", &body).await;
    assert_eq!(response.status(), 201, "{body}");
    response.json().await.unwrap()
}

/// The jobs a schedule fired, oldest first.
async fn fired(app: &TestApp, schedule: &Value) -> Vec<Value> {
    let path = format!(
        "/jobs/list/?schedule={}&ordering=created_at&limit=100&output=none",
        schedule["id"].as_str().unwrap()
    );
    let page: Value = app.get(&path).await.json().await.unwrap();
    page["jobs"].as_array().unwrap().clone()
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

/// Polls until `done` holds for the schedule's jobs.
async fn wait_fired(
    app: &TestApp,
    schedule: &Value,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let jobs = fired(app, schedule).await;
        if done(&jobs) {
            return jobs;
        }
        assert!(Instant::now() < deadline, "never {what}: {jobs:?}");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_schedule_is_checked_shows_its_fire_times_and_is_edited_paused_and_deleted() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    // Every mistake named at once, and nothing made.
    let response = app
        .post(
            "/schedules/",
            &json!({"name": "nightly", "cron": "61 * * * *", "timezone": "Mars/Olympus", "command": "true", "host": "nowhere"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    let mut fields: Vec<_> = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(fields, ["cron", "host", "timezone"], "{error}");
    let listed: Value = app.get("/schedules/").await.json().await.unwrap();
    assert_eq!(listed["total_count"], 0);

    let made = create_schedule(
        &app,
        json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris", "command": "backup", "overlap": "skip"}),
    )
    .await;
    let times: Vec<DateTime<Utc>> = made["next_fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(time)
        .collect();
    assert_eq!(times.len(), 5, "{made}");
    assert!(
        times
            .windows(2)
            .all(|pair| pair[1] - pair[0] >= chrono::Duration::hours(23))
    );
    assert!(times[0] > Utc::now());
    // 02:30 in Paris is 00:30 or 01:30 UTC by the season.
    assert!(
        times
            .iter()
            .all(|t| matches!(t.format("%H:%M").to_string().as_str(), "00:30" | "01:30")),
        "{times:?}"
    );
    assert_eq!(made["overlap"], "skip");
    assert_eq!(made["misfire"], "skip");
    assert_eq!(made["paused"], false);
    assert_eq!(made["last_job"], Value::Null);
    assert_eq!(made["host"], "local");
    let id = made["id"].as_str().unwrap().to_owned();

    // By name or id alike; a name is unique.
    let by_name: Value = app.get("/schedules/nightly/").await.json().await.unwrap();
    assert_eq!(by_name["id"], made["id"]);
    assert_eq!(app.get(&format!("/schedules/{id}/")).await.status(), 200);
    assert_eq!(app.get("/schedules/weekly/").await.status(), 404);
    let again = app
        .post(
            "/schedules/",
            &json!({"name": "nightly", "cron": "@daily", "command": "true"}),
        )
        .await;
    assert_eq!(again.status(), 409);

    // An edit changes only what it names, and shows the new times at once.
    let patched = app
        .send(
            Method::PATCH,
            "/schedules/nightly/",
            Some(&json!({"cron": "@hourly"})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["cron"], "@hourly");
    assert_eq!(patched["command"], "backup");
    assert_eq!(patched["overlap"], "skip");
    let hourly: Vec<_> = patched["next_fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(time)
        .collect();
    assert_eq!(hourly[1] - hourly[0], chrono::Duration::hours(1));
    let bad = app
        .send(
            Method::PATCH,
            "/schedules/nightly/",
            Some(&json!({"cron": "every day"})),
        )
        .await;
    assert_eq!(bad.status(), 400);
    // A PUT of what GET shows, one field changed.
    let mut whole = patched.clone();
    whole["command"] = json!("backup --full");
    let put = app
        .send(Method::PUT, &format!("/schedules/{id}/"), Some(&whole))
        .await;
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());

    let paused: Value = app
        .send(Method::POST, "/schedules/nightly/pause/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_fire_times"], json!([]));
    let resumed: Value = app
        .send(Method::POST, "/schedules/nightly/resume/", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["command"], "backup --full");
    assert_eq!(resumed["next_fire_times"].as_array().unwrap().len(), 5);

    assert_eq!(
        app.send(Method::DELETE, "/schedules/nightly/", None)
            .await
            .status(),
        204
    );
    assert_eq!(app.get(&format!("/schedules/{id}/")).await.status(), 404);
}

#[tokio::test]
async fn a_schedule_every_second_fires_once_a_second_and_its_jobs_run() {
    let app = spawn_app().await;
    let schedule = create_schedule(
        &app,
        json!({"name": "tick", "cron": "* * * * * *", "command": "echo tick"}),
    )
    .await;
    wait_fired(&app, &schedule, "four fires", |jobs| jobs.len() >= 4).await;
    app.send(Method::POST, "/schedules/tick/pause/", None).await;
    let jobs = fired(&app, &schedule).await;
    let times: Vec<DateTime<Utc>> = jobs.iter().map(|job| time(&job["scheduled_for"])).collect();
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "no gap, no repeat: {times:?}"
        );
    }
    assert!(jobs.iter().all(|job| job["schedule"] == schedule["id"]));
    let first = app.wait_final(jobs[0]["id"].as_str().unwrap()).await;
    assert_eq!(first["status"], "Success");
    assert_eq!(first["stdout"], "tick\n");
    let shown: Value = app.get("/schedules/tick/").await.json().await.unwrap();
    assert!(shown["last_job"]["id"].is_string(), "{shown}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        total(
            &scrape(&metrics),
            "rje_schedule_fires_total",
            &["outcome=\"fired\""]
        ) >= 4.0
    );
}

#[tokio::test]
async fn overlap_skip_records_skips_and_queue_runs_one_job_at_a_time() {
    let app = spawn_app().await;
    let skip = create_schedule(
        &app,
        json!({"name": "slow-skip", "cron": "* * * * * *", "command": "sleep 2.5", "overlap": "skip"}),
    )
    .await;
    let queue = create_schedule(
        &app,
        json!({"name": "slow-queue", "cron": "* * * * * *", "command": "sleep 1.2", "overlap": "queue"}),
    )
    .await;
    // Long enough for fires to meet a running job.
    let queued = wait_fired(&app, &queue, "three queued fires", |jobs| jobs.len() >= 4).await;
    app.send(Method::POST, "/schedules/slow-skip/pause/", None)
        .await;
    app.send(Method::POST, "/schedules/slow-queue/pause/", None)
        .await;

    let skipped = fired(&app, &skip).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let skips = total(
        &scrape(&metrics),
        "rje_schedule_fires_total",
        &["outcome=\"skipped\""],
    );
    assert!(skips >= 2.0, "skips are recorded: {skips}");
    assert!(
        skipped.len() <= 3,
        "a fire while one runs is skipped: {skipped:?}"
    );

    // Queued fires wait: never two of the schedule's jobs at once.
    let mut spans = Vec::new();
    for job in &queued[..3] {
        let job = app.wait_final(job["id"].as_str().unwrap()).await;
        assert_eq!(job["status"], "Success", "{job}");
        spans.push((time(&job["started_at"]), time(&job["completed_at"])));
    }
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "one at a time: {spans:?}");
    }
}

#[tokio::test]
async fn a_restart_catches_up_once_with_run_once_and_not_with_skip() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    // Every 4 s: longer than the scheduler's start-up grace (2 s), within
    // which a fire time before a start counts as on time.
    let every_four = |name: &str, misfire: &str| json!({"name": name, "cron": "*/4 * * * * *", "command": "true", "misfire": misfire});
    let once = create_schedule(&app, every_four("catch-up", "run_once")).await;
    let skip = create_schedule(&app, every_four("no-catch-up", "skip")).await;
    wait_fired(&app, &once, "a first fire", |jobs| !jobs.is_empty()).await;
    let dir = app.stop().await;
    let stopped = Utc::now();
    // Two fire times pass while no rje runs; it starts again 3 s after
    // the second, out of the grace and before the next.
    let second = (stopped.timestamp() / 4 + 2) * 4;
    let restart_at = DateTime::from_timestamp(second + 3, 0).unwrap();
    sleep((restart_at - Utc::now()).to_std().unwrap_or_default()).await;
    let restarted = Utc::now();
    let app = spawn_app_in(dir, |s| s.run_worker = false).await;
    // The catch-up is made at start; the next regular fire within 2 s.
    let after = |jobs: &[Value]| {
        jobs.iter()
            .any(|job| time(&job["scheduled_for"]) > restarted)
    };
    wait_fired(&app, &once, "a fire after the restart", after).await;
    wait_fired(&app, &skip, "a fire after the restart", after).await;
    let missed = |jobs: Vec<Value>| -> Vec<DateTime<Utc>> {
        jobs.iter()
            .map(|job| time(&job["scheduled_for"]))
            // A fire time within the scheduler's start-up grace (2 s)
            // before the restart counts as on time.
            .filter(|at| *at > stopped && *at <= restarted - chrono::Duration::seconds(2))
            .collect()
    };
    let caught_up = missed(fired(&app, &once).await);
    assert_eq!(
        caught_up.len(),
        1,
        "one catch-up, never a burst: {caught_up:?}"
    );
    assert_eq!(
        missed(fired(&app, &skip).await),
        Vec::<DateTime<Utc>>::new()
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let samples = scrape(&metrics);
    assert_eq!(
        total(
            &samples,
            "rje_schedule_fires_total",
            &["outcome=\"caught_up\""]
        ),
        1.0
    );
    assert!(
        // Both fire times of the one skipped, the first of the one caught up.
        total(&samples, "rje_schedule_missed_fires_total", &[]) >= 3.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_finished_job_runs_again_linked_both_ways() {
    let app = spawn_app().await;
    let first = app.submit_command("echo again; exit 3").await;
    assert_eq!(
        app.send(Method::POST, &format!("/jobs/{UNKNOWN_JOB}/retry/"), None)
            .await
            .status(),
        404
    );
    let done = app.wait_final(&first).await;
    assert_eq!(done["exit_code"], 3);
    let response = app
        .send(Method::POST, &format!("/jobs/{first}/retry/"), None)
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let again: Value = response.json().await.unwrap();
    let again_id = id_of(&again);
    assert_eq!(location, format!("/jobs/{again_id}/"));
    assert_eq!(again["retry_of"], first.as_str());
    assert_eq!(again["command"], "echo again; exit 3");
    assert_eq!(again["status"], "Queued");
    let original = app.job(&first).await;
    assert_eq!(original["retries"], json!([again_id]));
    let finished = app.wait_final(&again_id).await;
    assert_eq!(finished["stdout"], "again\n");

    // A job still queued or running is the one to follow: 409.
    let running = app.submit_command("sleep 5").await;
    app.wait_started(&running).await;
    let refused = app
        .send(Method::POST, &format!("/jobs/{running}/retry/"), None)
        .await;
    assert_eq!(refused.status(), 409);
    app.cancel(&running).await;
}

/// An id no job has.
const UNKNOWN_JOB: &str = "01234567-89ab-7def-8123-456789abcdef";

#[tokio::test]
async fn a_failure_runs_again_by_itself_until_it_succeeds_and_a_follower_is_told() {
    let app = spawn_app().await;
    let counter = app.path("attempts");
    let command = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo attempt $n; [ $n -ge 3 ]",
        c = counter.display()
    );
    let first = app
        .submit(json!({"command": command, "retry_on_failure": true, "max_retries": 4}))
        .await;
    assert_eq!(first["retry_on_failure"], true);
    let first = id_of(&first);
    // The first job's WebSocket ends with its final status, naming the next.
    let session = ws_read_all(app.ws_url(&format!("/ws/jobs/{first}/"))).await;
    let last_status = session
        .messages
        .iter()
        .rev()
        .find(|m| m["type"] == "status")
        .expect("a final status")
        .clone();
    assert_eq!(last_status["status"], "Failed");
    let second = last_status["retried_as"]
        .as_str()
        .expect("the next attempt")
        .to_owned();

    let mut chain = vec![app.wait_final(&first).await];
    let mut next = Some(second);
    while let Some(id) = next {
        let job = app.wait_final(&id).await;
        next = job["retries"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(Value::as_str)
            .map(str::to_owned);
        chain.push(job);
    }
    let outcomes: Vec<_> = chain
        .iter()
        .map(|job| {
            (
                job["status"].as_str().unwrap().to_owned(),
                job["retry_number"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("Failed".to_owned(), 0),
            ("Failed".to_owned(), 1),
            ("Success".to_owned(), 2)
        ]
    );
    for pair in chain.windows(2) {
        assert_eq!(pair[1]["retry_of"], pair[0]["id"]);
        assert_eq!(pair[0]["retries"], json!([pair[1]["id"]]));
    }
    assert_eq!(
        chain[2]["stdout"], "attempt 3\n",
        "each attempt keeps its output"
    );
    assert_eq!(chain[0]["stdout"], "attempt 1\n");

    // A cancel is never retried; neither is a job that did not ask.
    let cancelled = app
        .submit(json!({"command": "sleep 30", "retry_on_failure": true}))
        .await;
    let cancelled = id_of(&cancelled);
    app.wait_started(&cancelled).await;
    app.cancel(&cancelled).await;
    let cancelled = app.wait_final(&cancelled).await;
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(cancelled["retries"], json!([]));
    let plain = app.submit_command("exit 1").await;
    assert_eq!(app.wait_final(&plain).await["retries"], json!([]));
}

#[tokio::test]
async fn prune_deletes_only_finished_jobs_before_the_instant() {
    let app = spawn_app().await;
    let ok = app.submit_command("true").await;
    let failed = app.submit_command("false").await;
    app.wait_final(&ok).await;
    app.wait_final(&failed).await;
    let running = app.submit_command("sleep 30").await;
    app.wait_started(&running).await;

    let prune = |query: &str| {
        let path = format!("/jobs/prune/{query}");
        let app = &app;
        async move { app.send(Method::POST, &path, None).await }
    };
    let missing: Value = prune("").await.json().await.unwrap();
    assert_eq!(missing["details"][0]["field"], "before", "{missing}");
    assert_eq!(
        prune("?before=2020-01-01T00:00:00Z&status=Running")
            .await
            .status(),
        400
    );
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let only_failed: Value = prune(&format!(
        "?before={}&status=Failed",
        now.replace('+', "%2B")
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(only_failed, json!({"deleted": 1}));
    assert_eq!(app.get(&format!("/jobs/{failed}/")).await.status(), 404);
    let rest: Value = prune(&format!("?before={now}")).await.json().await.unwrap();
    assert_eq!(rest, json!({"deleted": 1}));
    assert_eq!(app.get(&format!("/jobs/{ok}/")).await.status(), 404);
    assert_eq!(app.job(&running).await["status"], "Running");
    app.cancel(&running).await;
}
