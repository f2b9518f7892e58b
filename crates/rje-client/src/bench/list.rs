//! `rje bench --list-queries`: the time of each filter and ordering of the
//! list route, and of deep pages by offset and by cursor, on whatever the
//! server's store holds (scripts/fill-jobs.sh fills one by SQL).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ClientError;
use crate::api::Api;

/// Requests per query; the median is reported. One more goes first,
/// unmeasured, so that no query pays for a cold cache alone.
const SAMPLES: usize = 7;

/// How deep the deep pages are, in jobs.
const DEPTHS: [u64; 2] = [5_000, 500_000];

#[derive(Debug, Clone, Serialize)]
pub struct ListTiming {
    /// The query string, or how the page was reached.
    pub query: String,
    pub median_ms: f64,
    /// Jobs on the page.
    pub jobs: usize,
}

/// The queries: the first page at two sizes, each filter, each ordering
/// both ways, a rare text search, and pages at [`DEPTHS`] by `offset` and
/// by `cursor` (the cursor taken once from the page just before that
/// depth). `host` is a filter's host; `search` a rare text.
pub async fn list_queries(
    api: &Api,
    host: Option<&str>,
    search: &str,
) -> Result<Vec<ListTiming>, ClientError> {
    let mut queries: Vec<(String, String)> = [
        "limit=10",
        "limit=100",
        "status=Failed",
        "status=Queued",
        "priority=High&ordering=-created_at",
        // A filter with a time ordering: the two ranges of a nullable
        // time, under a filter matching many jobs and one matching few.
        "status=Failed&ordering=-started_at",
        "status=Queued&ordering=-completed_at",
    ]
    .iter()
    .map(|q| (q.to_string(), q.to_string()))
    .collect();
    if let Some(host) = host {
        let query = format!("host={host}");
        queries.push((query.clone(), query));
    }
    let search = format!("search={search}");
    queries.push((search.clone(), search));
    for field in ["created_at", "priority", "started_at", "completed_at"] {
        for sign in ["", "-"] {
            let query = format!("ordering={sign}{field}");
            queries.push((query.clone(), query));
        }
    }
    for depth in DEPTHS {
        let query = format!("offset={depth}");
        queries.push((query.clone(), query));
        // The `next` of the one-job page ending at `depth` starts there.
        let before = api
            .list(&format!("limit=1&offset={}&output=none", depth - 1))
            .await?;
        if let Some(cursor) = before.next {
            queries.push((format!("cursor at {depth}"), format!("cursor={cursor}")));
        }
    }
    let mut timings = Vec::new();
    for (name, query) in queries {
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut jobs = api.list(&query).await?.jobs.len();
        for _ in 0..SAMPLES {
            let began = Instant::now();
            jobs = api.list(&query).await?.jobs.len();
            samples.push(began.elapsed());
        }
        timings.push(ListTiming {
            query: name,
            median_ms: median(samples).as_secs_f64() * 1000.0,
            jobs,
        });
    }
    Ok(timings)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

pub fn print(timings: &[ListTiming]) {
    for timing in timings {
        println!(
            "GET /jobs/list/?{:<40} {:>9.2} ms   ({} jobs)",
            timing.query, timing.median_ms, timing.jobs
        );
    }
}
