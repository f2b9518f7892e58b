//! The contract of runs: one job per host, the claim's `max_parallel`,
//! the failure limit that skips the hosts not started, and a run's
//! cancel. Every store passes it unchanged.

use std::sync::Arc;

use rje_domain::{
    ExitReport, HostNames, HostOutcome, Limits, NewRun, Outcome, RunId, StartCause, Status,
};
use rje_store::{CancelOutcome, JobStore, RunQuery, RunWithJobs};
use serde_json::json;

use crate::suite::{LEASE, worker};

fn run_request(body: serde_json::Value) -> NewRun {
    let hosts = HostNames::new("local", ["a", "b", "c", "d"])
        .with_labels("a", &["web".into()])
        .with_labels("b", &["web".into()]);
    NewRun::parse(&body, &Limits::default(), &hosts).expect("valid run")
}

async fn started(store: &Arc<dyn JobStore>, body: serde_json::Value) -> RunWithJobs {
    store
        .create_run(&run_request(body).submitted_by(Some("ci".into())))
        .await
        .expect("run made")
}

async fn run_of(store: &Arc<dyn JobStore>, id: RunId) -> RunWithJobs {
    store.get_run(id).await.expect("run read")
}

/// Claims every job the store hands out now, one worker asking for many.
async fn claim_all(store: &Arc<dyn JobStore>) -> Vec<(rje_domain::JobId, u32)> {
    store
        .claim(&worker(), 100, LEASE)
        .await
        .expect("claim")
        .into_iter()
        .map(|claimed| (claimed.job.id, claimed.job.attempts))
        .collect()
}

async fn finish(
    store: &Arc<dyn JobStore>,
    (id, attempt): (rje_domain::JobId, u32),
    code: i32,
) -> rje_store::Finished {
    store.mark_started(id, attempt, false).await.expect("start");
    store
        .finish(
            id,
            attempt,
            &Outcome::Exited { code },
            None,
            chrono::Utc::now(),
        )
        .await
        .expect("finish")
}

pub async fn a_run_queues_one_job_per_host_and_is_tallied_from_them(store: Arc<dyn JobStore>) {
    let made = started(
        &store,
        json!({"command": "uptime", "hosts": ["b", "a", "local"]}),
    )
    .await;
    assert_eq!(made.run.hosts, ["b", "a", "local"]);
    assert_eq!(made.run.submitted_by.as_deref(), Some("ci"));
    let hosts: Vec<_> = made
        .jobs
        .iter()
        .map(|job| job.host.clone().unwrap())
        .collect();
    assert_eq!(hosts, ["b", "a", "local"], "one job per host, in order");
    assert!(
        made.jobs
            .iter()
            .all(|job| job.lineage.run == Some(made.run.id)
                && job.status == Status::Queued
                && job.submitted_by.as_deref() == Some("ci")
                && job.outcome.is_none())
    );
    assert_eq!(made.run.status(), Status::Running);
    assert_eq!(made.run.tally.queued, 3);

    let listed = store
        .list_runs(&RunQuery {
            limit: 10,
            offset: 0,
            hosts_within: None,
        })
        .await
        .unwrap();
    assert_eq!(listed.total_count, 1);
    assert_eq!(listed.runs[0].id, made.run.id);
    assert_eq!(listed.runs[0].tally.queued, 3);
    let scoped = |hosts: &[&str]| RunQuery {
        limit: 10,
        offset: 0,
        hosts_within: Some(hosts.iter().map(|h| h.to_string()).collect()),
    };
    assert_eq!(
        store
            .list_runs(&scoped(&["a", "b"]))
            .await
            .unwrap()
            .total_count,
        0,
        "local is outside"
    );
    assert_eq!(
        store
            .list_runs(&scoped(&["a", "b", "local"]))
            .await
            .unwrap()
            .total_count,
        1
    );

    for claimed in claim_all(&store).await {
        let done = finish(&store, claimed, 0).await;
        assert_eq!(done.job.outcome, Some(HostOutcome::Success));
        assert!(done.skipped.is_empty());
    }
    let done = run_of(&store, made.run.id).await;
    assert_eq!(done.run.status(), Status::Success);
    assert_eq!(done.run.tally.count(HostOutcome::Success), 3);
    let last = done.jobs.iter().filter_map(|job| job.completed_at).max();
    assert_eq!(done.run.completed_at(), last);
}

pub async fn a_claim_never_runs_more_of_a_run_than_its_max_parallel(store: Arc<dyn JobStore>) {
    let made = started(
        &store,
        json!({"command": "x", "hosts": ["a", "b", "c", "d", "local"], "max_parallel": 2}),
    )
    .await;
    let other = store.create(crate::suite::new_job("alone")).await.unwrap();
    let first = claim_all(&store).await;
    assert_eq!(
        first.len(),
        3,
        "two of the run's jobs and the job of no run"
    );
    assert!(first.iter().any(|(id, _)| *id == other.id));
    assert!(
        claim_all(&store).await.is_empty(),
        "the run is at its limit"
    );
    let of_run: Vec<_> = first
        .into_iter()
        .filter(|(id, _)| *id != other.id)
        .collect();
    assert_eq!(of_run[0].0, made.jobs[0].id, "in host order");
    assert_eq!(of_run[1].0, made.jobs[1].id);
    finish(&store, of_run[0], 0).await;
    let next = claim_all(&store).await;
    assert_eq!(next.len(), 1, "one ended, one more starts");
    assert_eq!(next[0].0, made.jobs[2].id);

    // Many claims at once still never take more than the limit.
    let made = started(
        &store,
        json!({"command": "y", "hosts": ["a", "b", "c", "d"], "max_parallel": 1}),
    )
    .await;
    let claims = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim(&worker(), 10, LEASE).await.unwrap() })
    });
    let mut of_run = 0;
    for claim in claims {
        of_run += claim
            .await
            .unwrap()
            .iter()
            .filter(|c| c.job.lineage.run == Some(made.run.id))
            .count();
    }
    assert_eq!(of_run, 1, "max_parallel 1 across concurrent claims");

    // A page of runs is tallied run by run.
    let listed = store
        .list_runs(&RunQuery {
            limit: 10,
            offset: 0,
            hosts_within: None,
        })
        .await
        .unwrap();
    let tallied: Vec<(RunId, u64, u64)> = listed
        .runs
        .iter()
        .map(|run| (run.id, run.tally.total(), run.tally.running))
        .collect();
    assert_eq!(tallied.len(), 2);
    assert!(tallied.contains(&(made.run.id, 4, 1)), "{tallied:?}");
    assert!(
        tallied.iter().any(|(_, total, _)| *total == 5),
        "{tallied:?}"
    );
}

pub async fn failures_past_the_limit_skip_the_hosts_not_started(store: Arc<dyn JobStore>) {
    let made = started(
        &store,
        json!({"command": "x", "hosts": ["a", "b", "c", "d"], "max_parallel": 1, "max_failures": 1}),
    )
    .await;
    // The first failure is within the limit.
    let claimed = claim_all(&store).await;
    let done = finish(&store, claimed[0], 3).await;
    assert_eq!(done.job.outcome, Some(HostOutcome::Failed));
    assert!(done.skipped.is_empty(), "one failure is allowed");
    // The second cannot even start (its host is unreachable): one too many.
    let (id, attempt) = claim_all(&store).await[0];
    let ended = store
        .retry_later(
            id,
            attempt,
            chrono::Utc::now(),
            "cannot connect",
            StartCause::Unreachable,
        )
        .await
        .unwrap();
    assert_eq!(
        ended.job.status,
        Status::Failed,
        "a run's jobs are not retried by default"
    );
    assert_eq!(ended.job.outcome, Some(HostOutcome::Unreachable));
    let skipped: Vec<_> = ended.skipped.iter().map(|job| job.id).collect();
    assert_eq!(
        skipped,
        [made.jobs[2].id, made.jobs[3].id],
        "the hosts not started, in order"
    );
    for job in &ended.skipped {
        assert_eq!(job.status, Status::Cancelled);
        assert_eq!(job.outcome, Some(HostOutcome::Skipped));
        assert!(
            job.error
                .as_deref()
                .is_some_and(|e| e.starts_with("skipped")),
            "{:?}",
            job.error
        );
        assert!(job.started_at.is_none(), "a skipped job never ran");
    }
    assert!(claim_all(&store).await.is_empty());
    let run = run_of(&store, made.run.id).await;
    assert_eq!(run.run.status(), Status::Failed);
    assert_eq!(run.run.tally.count(HostOutcome::Skipped), 2);
    assert_eq!(run.run.tally.failures(), 2);

    // A timeout is a failure of its own kind, and with no limit nothing
    // is skipped.
    let made = started(
        &store,
        json!({"command": "x", "hosts": ["a", "b"], "max_parallel": 1}),
    )
    .await;
    let (id, attempt) = claim_all(&store).await[0];
    store.mark_started(id, attempt, false).await.unwrap();
    let timeout = Outcome::TimedOut {
        after_secs: 1,
        kill: ExitReport::Confirmed,
    };
    let ended = store
        .finish(id, attempt, &timeout, None, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(ended.job.outcome, Some(HostOutcome::TimedOut));
    assert!(ended.skipped.is_empty());
    assert_eq!(claim_all(&store).await.len(), 1, "the next host starts");
    let _ = made;
}

pub async fn a_runs_cancel_ends_its_queued_jobs_and_asks_its_running_ones(
    store: Arc<dyn JobStore>,
) {
    let made = started(
        &store,
        json!({"command": "sleep 9", "hosts": ["a", "b", "c"], "max_parallel": 1}),
    )
    .await;
    let running = claim_all(&store).await[0];
    store
        .mark_started(running.0, running.1, false)
        .await
        .unwrap();
    let cancelled = store.cancel_run(made.run.id, Some("ops")).await.unwrap();
    let mut asked = 0;
    let mut ended = 0;
    for cancel in &cancelled.cancels {
        match cancel {
            CancelOutcome::Requested(job) => {
                asked += 1;
                assert_eq!(job.id, running.0);
                assert!(job.cancel_requested);
            }
            CancelOutcome::Cancelled(job) => {
                ended += 1;
                assert_eq!(job.outcome, Some(HostOutcome::Cancelled));
                assert_eq!(job.cancelled_by.as_deref(), Some("ops"));
            }
        }
    }
    assert_eq!((asked, ended), (1, 2));
    assert!(cancelled.run.run.cancel_requested);
    assert_eq!(cancelled.run.run.cancelled_by.as_deref(), Some("ops"));
    assert_eq!(
        cancelled.run.run.status(),
        Status::Running,
        "one job is still being killed"
    );
    assert!(claim_all(&store).await.is_empty());
    let killed = Outcome::Cancelled {
        kill: ExitReport::Confirmed,
    };
    store
        .finish(running.0, running.1, &killed, None, chrono::Utc::now())
        .await
        .unwrap();
    let run = run_of(&store, made.run.id).await;
    assert_eq!(run.run.status(), Status::Cancelled);
    assert_eq!(run.run.tally.count(HostOutcome::Cancelled), 3);

    // Cancelling again finds nothing left to do.
    let again = store.cancel_run(made.run.id, Some("ops")).await.unwrap();
    assert!(again.cancels.is_empty());
    assert!(matches!(
        store.get_run(RunId::new()).await,
        Err(rje_store::StoreError::NotFound)
    ));
}

pub async fn a_retry_runs_the_hosts_that_did_not_succeed_linked_to_their_jobs(
    store: Arc<dyn JobStore>,
) {
    let made = started(
        &store,
        json!({"command": "x", "labels": ["web"], "max_failures": 0, "max_parallel": 1}),
    )
    .await;
    assert_eq!(made.run.hosts, ["a", "b"]);
    let first = claim_all(&store).await[0];
    let ended = finish(&store, first, 1).await;
    assert_eq!(ended.skipped.len(), 1);
    let run = run_of(&store, made.run.id).await;
    let again = NewRun::retry(&run.run, &run.jobs).expect("something failed");
    assert_eq!(
        again
            .hosts_still_known(&HostNames::new("local", ["a"]))
            .unwrap_err()
            .details[0]
            .field,
        "hosts"
    );
    let retried = store.create_run(&again).await.unwrap();
    assert_eq!(retried.run.retry_of, Some(made.run.id));
    assert_eq!(
        retried.run.hosts,
        ["a", "b"],
        "the failed host and the skipped one"
    );
    assert_eq!(retried.jobs[0].lineage.retry_of, Some(run.jobs[0].id));
    assert_eq!(retried.jobs[1].lineage.retry_of, Some(run.jobs[1].id));
    assert_eq!(retried.run.max_failures, made.run.max_failures);
}

pub async fn a_run_goes_with_the_last_of_its_jobs(store: Arc<dyn JobStore>) {
    let made = started(&store, json!({"command": "x", "hosts": ["a", "b"]})).await;
    let kept = started(&store, json!({"command": "y", "hosts": ["c", "d"]})).await;
    for claimed in claim_all(&store).await {
        if claimed.0 != kept.jobs[0].id {
            finish(&store, claimed, 0).await;
        }
    }
    assert_eq!(
        run_of(&store, kept.run.id)
            .await
            .run
            .tally
            .count(HostOutcome::Success),
        1
    );
    let prune = rje_domain::PruneFilter::before(chrono::Utc::now() + chrono::Duration::seconds(1));
    assert_eq!(store.prune_finished(&prune, 100).await.unwrap(), 2);
    assert!(
        matches!(
            store.get_run(made.run.id).await,
            Err(rje_store::StoreError::NotFound)
        ),
        "a run with no job left is gone"
    );
    let still = run_of(&store, kept.run.id).await;
    assert_eq!(
        still.jobs.len(),
        2,
        "a run still going keeps even its finished jobs"
    );
}
