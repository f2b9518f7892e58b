//! Retention on a large table: the old finished jobs go, a batch at a
//! time, while the list route keeps answering; nothing else goes.

use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, sleep};

use crate::helpers::*;

/// How many jobs the table holds: 100,000, or `RJE_TEST_RETENTION_JOBS`
/// (the figure for 1,000,000 in docs/BENCHMARKS.md came from this test).
fn table_size() -> u64 {
    std::env::var("RJE_TEST_RETENTION_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Fills the store of `dir` with `size` jobs, as a year of use would: even
/// ones finished 40 days ago (past the default 30), odd ones finished an
/// hour ago, and 10 queued jobs made 40 days ago that must stay.
async fn seed(dir: &std::path::Path, size: u64) {
    let url = format!("sqlite://{}", dir.join("rje.db").display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("the test's database");
    let now = chrono::Utc::now().timestamp_micros();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO jobs (id, command, timeout, priority, status, created_at, modified_at, \
                           started_at, completed_at, exit_code, host, attempts, max_retries, run_at) \
         SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-7' || substr(hex(randomblob(2)), 2) \
                || '-8' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), \
                'echo ' || i, 60, 1, CASE WHEN i % 3 = 0 THEN 'Failed' ELSE 'Success' END, \
                t, t, t, t, CASE WHEN i % 3 = 0 THEN 1 ELSE 0 END, 'local', 1, 3, t \
         FROM (SELECT i, CASE WHEN i % 2 = 0 THEN ?2 - 40 * ?3 ELSE ?2 - 3600000000 END + i AS t FROM n)",
    )
    .bind(i64::try_from(size).unwrap())
    .bind(now)
    .bind(DAY_MICROS)
    .execute(&pool)
    .await
    .expect("seeded");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) \
         INSERT INTO jobs (id, command, timeout, priority, status, created_at, modified_at, host, max_retries, run_at) \
         SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-7' || substr(hex(randomblob(2)), 2) \
                || '-8' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), \
                'echo old queued', 60, 1, 'Queued', ?1, ?1, 'local', 3, ?1 FROM n",
    )
    .bind(now - 40 * DAY_MICROS)
    .execute(&pool)
    .await
    .expect("seeded");
    pool.close().await;
}

/// Jobs in each status, counted exactly (a list's count of a large table
/// is an estimate).
async fn counts(app: &TestApp) -> Value {
    let stats: Value = app.get("/jobs/stats/").await.json().await.unwrap();
    stats["by_status"].clone()
}

fn count(counts: &Value, status: &str) -> u64 {
    counts[status]
        .as_u64()
        .unwrap_or_else(|| panic!("{counts}"))
}

#[tokio::test]
async fn retention_removes_only_old_finished_jobs_while_the_list_answers() {
    let size = table_size();
    // The schema first (without retention: its round could still hold
    // the chore when the next server starts), then the jobs, then rje
    // with its default retention.
    let app = spawn_app_with(|s| {
        s.run_worker = false;
        s.retention.days = 0;
    })
    .await;
    let dir = app.stop().await;
    seed(dir.path(), size).await;
    let started = Instant::now();
    let app = spawn_app_in(dir, |s| s.run_worker = false).await;
    let kept = size - size / 2;
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let asked = Instant::now();
        let response = app.get("/jobs/?output=none&limit=20").await;
        assert_eq!(
            response.status(),
            200,
            "the list answers while retention runs"
        );
        latencies.push(asked.elapsed());
        let counts = counts(&app).await;
        if count(&counts, "Success") + count(&counts, "Failed") == kept {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never finished: {counts}"
        );
        sleep(Duration::from_millis(25)).await;
    }
    let took = started.elapsed();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "retention of {} of {size} jobs: {took:?}; list p50 {:?}, p99 {p99:?}, max {:?} over {} lists",
        size / 2,
        latencies[latencies.len() / 2],
        latencies.last().unwrap(),
        latencies.len()
    );
    // Only the old finished jobs went.
    assert_eq!(
        count(&counts(&app).await, "Queued"),
        10,
        "queued jobs are never deleted"
    );
    let page: Value = app
        .get("/jobs/?output=none&limit=1&ordering=completed_at")
        .await
        .json()
        .await
        .unwrap();
    let oldest =
        chrono::DateTime::parse_from_rfc3339(page["jobs"][0]["completed_at"].as_str().unwrap())
            .unwrap();
    assert!(
        chrono::Utc::now().signed_duration_since(oldest) < chrono::Duration::days(1),
        "every job finished 40 days ago went, none newer: {oldest}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        crate::helpers::total(
            &scrape(&metrics),
            "rje_jobs_pruned_total",
            &["trigger=\"retention\""]
        ),
        (size / 2) as f64
    );
}
