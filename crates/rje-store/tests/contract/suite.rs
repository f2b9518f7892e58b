use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rje_domain::{
    AuditEntry, Chunk, ExitReport, HostNames, HostOutcome, Job, JobId, JobPatch, Limits, ListQuery,
    NewJob, NewToken, Outcome, Priority, Role, StartCause, Status, Stream, WORKER_LOST, WorkerId,
    drop_marker,
};
use rje_store::{
    AuditQuery, CancelOutcome, Created, JobStore, OutputPage, Pruned, Standing, StoreError, TakeUp,
    hash_secret, new_secret,
};
use serde_json::json;

pub(crate) const LEASE: Duration = Duration::from_secs(30);

/// Instantiates every contract test for one implementation. `$make` is an
/// async fn returning `(Arc<dyn JobStore>, guard)`; the guard keeps the
/// backing resources alive for the test.
#[macro_export]
macro_rules! store_contract {
    ($make:path) => {
        $crate::store_contract!(@tests $make;
            create_and_get_round_trip,
            unknown_jobs_are_not_found,
            list_pages_filters_orders_and_counts,
            cursor_pages_walk_every_ordering_once,
            past_ten_thousand_matches_the_count_is_an_estimate,
            edit_only_while_queued,
            delete_refuses_running_jobs,
            cancel_follows_the_job_state,
            claim_takes_priority_then_arrival_order,
            claim_skips_jobs_not_yet_due,
            concurrent_claims_never_share_a_job,
            stale_attempts_are_fenced,
            output_is_stored_read_and_assembled,
            prune_keeps_head_and_tail_and_counts_the_gap,
            lists_carry_the_tail_of_the_output,
            renewal_reports_requested_cancels,
            renewal_lets_the_lease_of_a_job_let_go_lapse,
            reaping_follows_the_lifecycle_rules,
            retries_requeue_until_exhausted,
            workers_announce_themselves_with_their_jobs,
            active_jobs_are_counted_by_status_and_priority,
            every_status_is_counted,
            search_matches_a_literal_substring_of_the_command,
            the_last_chunks_come_oldest_first,
            search_finds_edited_commands_and_forgets_deleted_ones,
            a_lost_running_job_is_taken_up_again_as_a_new_attempt,
            a_supervised_job_is_left_to_its_machine_for_a_grace,
            orphaned_supervised_jobs_are_found_by_host,
            standings_tell_held_orphaned_and_over_apart_in_one_query,
            output_reads_are_each_one_snapshot,
            a_job_proven_unstarted_is_queued_again_only_at_its_attempt,
            tokens_are_kept_by_the_hash_of_their_secret_and_revoked_at_once,
            the_audit_trail_is_appended_paged_filtered_and_pruned,
            jobs_keep_their_submitter_and_lists_filter_by_it_and_by_scope,
            a_key_makes_one_job_whatever_the_number_of_requests,
        );
        $crate::store_contract!(@tests_in schedules; $make;
            schedules_are_made_read_listed_changed_and_deleted,
            a_fire_time_is_won_by_one_fire_whatever_the_number_of_processes,
            a_fire_is_skipped_while_the_schedules_job_is_active,
            serial_jobs_run_one_at_a_time_in_order,
            a_failure_that_asks_for_it_runs_again_in_the_same_transaction,
            retention_deletes_finished_jobs_only_a_batch_at_a_time,
            a_chore_is_held_by_one_holder_until_it_lapses,
        );
        $crate::store_contract!(@tests_in runs; $make;
            a_run_queues_one_job_per_host_and_is_tallied_from_them,
            a_claim_never_runs_more_of_a_run_than_its_max_parallel,
            failures_past_the_limit_skip_the_hosts_not_started,
            a_runs_cancel_ends_its_queued_jobs_and_asks_its_running_ones,
            a_retry_runs_the_hosts_that_did_not_succeed_linked_to_their_jobs,
            a_run_goes_with_the_last_of_its_jobs,
        );
    };
    (@tests_in $module:ident; $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::$module::$name(store).await;
            }
        )+
    };
    (@tests $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make().await;
                $crate::suite::$name(store).await;
            }
        )+
    };
}

/// A job request as the API makes one: only `NewJob::parse` can.
pub(crate) fn request(body: serde_json::Value) -> NewJob {
    let hosts = HostNames::new("local", ["a", "b", "elsewhere"]);
    NewJob::parse(&body, &Limits::default(), &hosts).expect("valid job")
}

pub(crate) fn new_job(command: &str) -> NewJob {
    request(json!({ "command": command }))
}

fn new_job_with(command: &str, priority: Priority) -> NewJob {
    request(json!({ "command": command, "priority": priority }))
}

fn chunk(seq: i64, stream: Stream, text: &str) -> Chunk {
    Chunk {
        seq,
        stream,
        text: text.to_owned(),
        timestamp: Utc::now(),
        dropped_before: 0,
        source_end: None,
    }
}

/// The hosts the list tests filter on.
fn list_hosts() -> HostNames {
    HostNames::new("a", ["b"])
}

pub(crate) fn worker() -> WorkerId {
    WorkerId::generate()
}

/// Claims exactly one job and returns its id and attempt.
pub(crate) async fn claim_one(store: &Arc<dyn JobStore>, worker: &WorkerId) -> (JobId, u32) {
    let claimed = store.claim(worker, 1, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 1, "expected one job to claim");
    (claimed[0].job.id, claimed[0].job.attempts)
}

pub async fn create_and_get_round_trip(store: Arc<dyn JobStore>) {
    let created = store
        .create(request(json!({
            "command": "echo hi",
            "parameters": {"ticket": 7, "env": {"A": "1"}},
            "host": "elsewhere",
        })))
        .await
        .unwrap();
    assert_eq!(created.status, Status::Queued);
    assert_eq!(created.command, "echo hi");
    assert_eq!(created.priority, Priority::Medium);
    assert_eq!(created.timeout, 60);
    let parameters = created.parameters.as_ref().expect("parameters kept");
    assert_eq!(*parameters.json(), json!({"ticket": 7, "env": {"A": "1"}}));
    assert_eq!(parameters.exec().env, [("A".to_owned(), "1".to_owned())]);
    assert_eq!(created.host.as_deref(), Some("elsewhere"));
    assert_eq!(created.attempts, 0);
    assert_eq!(created.stdout, None);
    assert_eq!(created.started_at, None);

    let fetched = store.get(created.id).await.unwrap();
    assert_eq!(fetched, created);
    assert_eq!(store.get_meta(created.id).await.unwrap(), created);
}

pub async fn unknown_jobs_are_not_found(store: Arc<dyn JobStore>) {
    let id = JobId::new();
    assert!(matches!(store.get(id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete(id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.cancel(id, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.edit(id, &JobPatch::default()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.read_output(id, 0, 10, None).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn list_pages_filters_orders_and_counts(store: Arc<dyn JobStore>) {
    let mut ids = Vec::new();
    for (i, priority) in [
        Priority::Low,
        Priority::High,
        Priority::Medium,
        Priority::High,
    ]
    .into_iter()
    .enumerate()
    {
        let host = if i % 2 == 0 { "a" } else { "b" };
        let job =
            request(json!({ "command": format!("echo {i}"), "priority": priority, "host": host }));
        ids.push(store.create(job).await.unwrap().id);
    }
    let all = store.list(&ListQuery::default(), 0).await.unwrap();
    assert_eq!(all.total_count, 4);
    let newest_first: Vec<_> = all.jobs.iter().map(|j| j.job.id).collect();
    assert_eq!(newest_first, ids.iter().rev().copied().collect::<Vec<_>>());

    let page = ListQuery::parse(
        [("limit", "2"), ("offset", "1"), ("ordering", "created_at")],
        &list_hosts(),
    )
    .unwrap();
    let page = store.list(&page, 0).await.unwrap();
    assert_eq!(page.total_count, 4, "total_count ignores paging");
    assert_eq!(
        page.jobs.iter().map(|j| j.job.id).collect::<Vec<_>>(),
        ids[1..3]
    );

    let high = store
        .list(
            &ListQuery::parse([("priority", "High")], &list_hosts()).unwrap(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(high.total_count, 2);
    assert!(high.jobs.iter().all(|j| j.job.priority == Priority::High));

    let by_priority = store
        .list(
            &ListQuery::parse([("ordering", "-priority")], &list_hosts()).unwrap(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        by_priority
            .jobs
            .iter()
            .map(|j| j.job.id)
            .collect::<Vec<_>>(),
        [ids[1], ids[3], ids[2], ids[0]],
        "High first, then queue order within a priority"
    );

    let on_a = store
        .list(
            &ListQuery::parse([("host", "a")], &list_hosts()).unwrap(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(on_a.total_count, 2);

    let w = worker();
    let claimed = claim_one(&store, &w).await;
    let running = store
        .list(
            &ListQuery::parse([("status", "Running")], &list_hosts()).unwrap(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(running.total_count, 1);
    assert_eq!(running.jobs[0].job.id, claimed.0);
    let none = store
        .list(
            &ListQuery::parse([("status", "Success")], &list_hosts()).unwrap(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(none.total_count, 0);
    assert!(none.jobs.is_empty());
}

/// Paging by `next` gives every job once, in the ordering's order, for
/// every ordering in both directions, with and without a filter, and over
/// the jobs not started or not ended yet (they sort last): the order is
/// checked against one sorted here from the jobs' own fields.
pub async fn cursor_pages_walk_every_ordering_once(store: Arc<dyn JobStore>) {
    let priorities = [Priority::Low, Priority::High, Priority::Medium];
    let mut created = Vec::new();
    for i in 0..14 {
        let host = if i % 3 == 0 { "a" } else { "b" };
        let job = request(json!({
            "command": format!("echo {i}"),
            "priority": priorities[i % 3],
            "host": host,
        }));
        created.push(store.create(job).await.unwrap().id);
    }
    // Some run (started_at), some of those end (completed_at), the rest
    // wait: each nullable ordering has both parts, and ties of priority.
    let w = worker();
    for ended in 0..6 {
        let (id, attempt) = claim_one(&store, &w).await;
        store.mark_started(id, attempt, false).await.unwrap();
        if ended < 4 {
            store
                .finish(id, attempt, &Outcome::Exited { code: 0 }, None, Utc::now())
                .await
                .unwrap();
        }
    }
    let arrival = |id: JobId| created.iter().position(|c| *c == id).unwrap();

    for ordering in [
        "created_at",
        "-created_at",
        "priority",
        "-priority",
        "started_at",
        "-started_at",
        "completed_at",
        "-completed_at",
    ] {
        for filter in [None, Some(("host", "b"))] {
            let mut pairs = vec![("ordering", ordering), ("limit", "100")];
            pairs.extend(filter);
            let everything = store
                .list(&ListQuery::parse(pairs, &list_hosts()).unwrap(), 0)
                .await
                .unwrap();
            assert!(everything.next.is_none(), "one page holds them all");
            let mut expected: Vec<_> = everything.jobs.iter().map(|j| j.job.clone()).collect();
            expected.sort_by_key(|job| {
                let time = match ordering.trim_start_matches('-') {
                    "started_at" => job.started_at,
                    "completed_at" => job.completed_at,
                    _ => Some(job.created_at),
                };
                let descending = ordering.starts_with('-');
                let arrival = arrival(job.id) as i64;
                if ordering.ends_with("priority") {
                    let rank = job.priority.rank();
                    (false, if descending { -rank } else { rank }, 0, arrival)
                } else {
                    let micros = time.map_or(0, |t| t.timestamp_micros());
                    let (micros, arrival) = if descending {
                        (-micros, -arrival)
                    } else {
                        (micros, arrival)
                    };
                    (time.is_none(), 0, micros, arrival)
                }
            });
            let expected: Vec<_> = expected.iter().map(|job| job.id).collect();
            assert_eq!(
                everything.jobs.iter().map(|j| j.job.id).collect::<Vec<_>>(),
                expected,
                "ordering={ordering} {filter:?}"
            );

            let mut walked = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut pairs = vec![("limit", "3")];
                if let Some(cursor) = &cursor {
                    pairs.push(("cursor", cursor.as_str()));
                } else {
                    pairs.push(("ordering", ordering));
                }
                pairs.extend(filter);
                let page = store
                    .list(&ListQuery::parse(pairs, &list_hosts()).unwrap(), 0)
                    .await
                    .unwrap();
                assert_eq!(page.total_count, expected.len() as u64);
                walked.extend(page.jobs.iter().map(|j| j.job.id));
                pages += 1;
                assert!(pages <= 10, "ordering={ordering}: the walk ends");
                match page.next {
                    Some(next) => {
                        assert_eq!(page.jobs.len(), 3, "only a full page has a next");
                        cursor = Some(next.encode());
                    }
                    None => break,
                }
            }
            assert_eq!(
                walked, expected,
                "ordering={ordering} {filter:?}, by cursor"
            );
            assert_eq!(pages, expected.len().div_ceil(3).max(1));
        }
    }
}

/// A list counts its matches exactly up to 10,000; past that it says
/// "more than that" (an estimate, flagged) instead of reading them all.
pub async fn past_ten_thousand_matches_the_count_is_an_estimate(store: Arc<dyn JobStore>) {
    let jobs = 10_050;
    let mut ids = Vec::new();
    for i in 0..jobs {
        let priority = if i % 3 == 0 {
            Priority::High
        } else {
            Priority::Low
        };
        ids.push(
            store
                .create(new_job_with("true", priority))
                .await
                .unwrap()
                .id,
        );
    }
    // Past 10,000 matches a page is found another way on some stores
    // (along the ordering's index): the same jobs, in the same order.
    let page = |pairs: Vec<(&'static str, &'static str)>| {
        let store = store.clone();
        async move {
            let query = ListQuery::parse(pairs, &list_hosts()).unwrap();
            let page = store.list(&query, 0).await.unwrap();
            page.jobs.iter().map(|j| j.job.id).collect::<Vec<_>>()
        }
    };
    let low: Vec<_> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(
        page(vec![("status", "Queued"), ("ordering", "-priority")]).await,
        ids.iter().step_by(3).take(10).copied().collect::<Vec<_>>(),
        "High first, in queue order"
    );
    assert_eq!(
        page(vec![("status", "Queued"), ("ordering", "priority")]).await,
        low[..10]
    );
    assert_eq!(
        page(vec![("status", "Queued"), ("ordering", "-started_at")]).await,
        ids.iter().rev().take(10).copied().collect::<Vec<_>>(),
        "none started: newest first"
    );
    let all = store.list(&ListQuery::default(), 0).await.unwrap();
    assert!(!all.total_exact, "more than 10,000 are not counted");
    assert!(
        (10_001..=4 * jobs).contains(&all.total_count),
        "{} for {jobs}",
        all.total_count
    );
    let high = ListQuery::parse([("priority", "High")], &list_hosts()).unwrap();
    let high = store.list(&high, 0).await.unwrap();
    assert!(high.total_exact);
    assert_eq!(high.total_count, jobs.div_ceil(3));
}

pub async fn edit_only_while_queued(store: Arc<dyn JobStore>) {
    let job = store.create(new_job("echo old")).await.unwrap();
    let patch = JobPatch::parse(
        &json!({"command": "echo new", "priority": "High", "timeout": 5,
                "parameters": {"a": 1}, "host": "b"}),
        &Limits::default(),
        &list_hosts(),
        &job,
    )
    .unwrap();
    let edited = store.edit(job.id, &patch).await.unwrap();
    assert_eq!(edited.command, "echo new");
    assert_eq!(edited.priority, Priority::High);
    assert_eq!(edited.timeout, 5);
    assert_eq!(edited.host.as_deref(), Some("b"));
    assert_eq!(
        edited.parameters.as_ref().map(|p| p.json()),
        Some(&json!({"a": 1}))
    );
    assert!(edited.modified_at >= job.modified_at);
    assert_eq!(store.get(job.id).await.unwrap(), edited);

    claim_one(&store, &worker()).await;
    let refused = store.edit(job.id, &patch).await;
    assert!(matches!(
        refused,
        Err(StoreError::Conflict {
            status: Status::Running
        })
    ));
}

pub async fn delete_refuses_running_jobs(store: Arc<dyn JobStore>) {
    let job = store.create(new_job("true")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    assert_eq!(id, job.id);
    store
        .append_output(id, attempt, &[chunk(1, Stream::Stdout, "x\n")], None)
        .await
        .unwrap();
    assert!(matches!(
        store.delete(id).await,
        Err(StoreError::Conflict {
            status: Status::Running
        })
    ));
    store
        .finish(id, attempt, &Outcome::Exited { code: 0 }, None, Utc::now())
        .await
        .unwrap();
    store.delete(id).await.unwrap();
    assert!(matches!(store.get(id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.read_output(id, 0, 10, None).await,
        Err(StoreError::NotFound)
    ));

    let queued = store.create(new_job("true")).await.unwrap();
    store.delete(queued.id).await.unwrap();
    assert!(store.claim(&worker(), 10, LEASE).await.unwrap().is_empty());
}

pub async fn cancel_follows_the_job_state(store: Arc<dyn JobStore>) {
    let running = store.create(new_job("sleep 100")).await.unwrap();
    let queued = store.create(new_job("true")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    assert_eq!(id, running.id);

    let CancelOutcome::Cancelled(cancelled) = store.cancel(queued.id, Some("ops")).await.unwrap()
    else {
        panic!("a queued job is cancelled at once");
    };
    assert_eq!(cancelled.status, Status::Cancelled);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(cancelled.cancelled_by.as_deref(), Some("ops"));

    let CancelOutcome::Requested(requested) = store.cancel(running.id, Some("ops")).await.unwrap()
    else {
        panic!("a running job's cancel is a request");
    };
    assert_eq!(requested.status, Status::Running);
    assert!(requested.cancel_requested);
    assert_eq!(requested.cancelled_by.as_deref(), Some("ops"));

    assert!(
        store.claim(&worker(), 10, LEASE).await.unwrap().is_empty(),
        "a cancelled job never runs"
    );
    store
        .finish(
            id,
            attempt,
            &Outcome::Cancelled {
                kill: ExitReport::Confirmed,
            },
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.cancel(running.id, None).await,
        Err(StoreError::Conflict {
            status: Status::Cancelled
        })
    ));
}

pub async fn claim_takes_priority_then_arrival_order(store: Arc<dyn JobStore>) {
    let low = store
        .create(new_job_with("1", Priority::Low))
        .await
        .unwrap();
    let medium = store
        .create(new_job_with("2", Priority::Medium))
        .await
        .unwrap();
    let high_a = store
        .create(new_job_with("3", Priority::High))
        .await
        .unwrap();
    let high_b = store
        .create(new_job_with("4", Priority::High))
        .await
        .unwrap();
    let w = worker();
    let mut order = Vec::new();
    while let Some(claimed) = store.claim(&w, 1, LEASE).await.unwrap().pop() {
        assert_eq!(claimed.job.status, Status::Running);
        assert_eq!(claimed.job.attempts, 1);
        assert_eq!(claimed.last_seq, 0);
        assert!(claimed.job.task_id.is_some());
        order.push(claimed.job.id);
    }
    assert_eq!(order, [high_a.id, high_b.id, medium.id, low.id]);

    // A batch claim returns the same order.
    for priority in [Priority::Low, Priority::High, Priority::Medium] {
        store.create(new_job_with("x", priority)).await.unwrap();
    }
    let batch = store.claim(&w, 10, LEASE).await.unwrap();
    let priorities: Vec<_> = batch.iter().map(|c| c.job.priority).collect();
    assert_eq!(
        priorities,
        [Priority::High, Priority::Medium, Priority::Low]
    );
}

pub async fn claim_skips_jobs_not_yet_due(store: Arc<dyn JobStore>) {
    let job = store.create(new_job("true")).await.unwrap();
    let w = worker();
    let (id, attempt) = claim_one(&store, &w).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    let requeued = store
        .retry_later(
            id,
            attempt,
            later,
            "connection refused",
            StartCause::Unreachable,
        )
        .await
        .unwrap()
        .job;
    assert_eq!(requeued.status, Status::Queued);
    assert_eq!(requeued.id, job.id);
    assert!(store.claim(&w, 10, LEASE).await.unwrap().is_empty());
}

pub async fn concurrent_claims_never_share_a_job(store: Arc<dyn JobStore>) {
    for i in 0..60 {
        store.create(new_job(&format!("echo {i}"))).await.unwrap();
    }
    let mut claimers = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let w = worker();
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim(&w, 3, LEASE).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.job.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 60);
}

pub async fn stale_attempts_are_fenced(store: Arc<dyn JobStore>) {
    store.create(new_job("true")).await.unwrap();
    let w = worker();
    let (id, attempt) = claim_one(&store, &w).await;
    // The lease lapses and the reaper hands the job to someone else.
    store
        .reap_expired(
            Utc::now() + chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    let (again, second) = claim_one(&store, &worker()).await;
    assert_eq!(again, id);
    assert_eq!(second, attempt + 1);

    let stale = [
        store
            .append_output(id, attempt, &[chunk(1, Stream::Stdout, "x")], None)
            .await,
        store.mark_started(id, attempt, false).await,
        store
            .finish(id, attempt, &Outcome::Exited { code: 0 }, None, Utc::now())
            .await
            .map(|_| ()),
        store
            .prune_output(id, attempt, Stream::Stdout, 0, 0)
            .await
            .map(|_| ()),
    ];
    for result in stale {
        assert!(matches!(result, Err(StoreError::Fenced)), "{result:?}");
    }
    let job = store.get(id).await.unwrap();
    assert_eq!(job.status, Status::Running);
    assert_eq!(
        job.stdout.as_deref(),
        Some(""),
        "the stale write left nothing"
    );

    store
        .finish(id, second, &Outcome::Exited { code: 2 }, None, Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store
            .finish(id, second, &Outcome::Exited { code: 0 }, None, Utc::now())
            .await,
        Err(StoreError::Fenced)
    ));
    assert_eq!(store.get(id).await.unwrap().exit_code, Some(2));
}

pub async fn output_is_stored_read_and_assembled(store: Arc<dyn JobStore>) {
    store.create(new_job("echo")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    store.mark_started(id, attempt, false).await.unwrap();
    let chunks = [
        chunk(1, Stream::Stdout, "one\n"),
        chunk(2, Stream::Stderr, "oops\n"),
        chunk(3, Stream::Stdout, "two\n"),
    ];
    store
        .append_output(id, attempt, &chunks, Some("4242"))
        .await
        .unwrap();

    let live = store.get(id).await.unwrap();
    assert_eq!(live.stdout.as_deref(), Some("one\ntwo\n"));
    assert_eq!(live.stderr.as_deref(), Some("oops\n"));
    assert_eq!(live.remote_process_id.as_deref(), Some("4242"));
    assert!(live.started_at.is_some());
    assert_eq!(store.get_meta(id).await.unwrap().stdout, None);

    let page = store.read_output(id, 1, 10, None).await.unwrap();
    assert_eq!(
        page.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(page.chunks[0].stream, Stream::Stderr);
    assert_eq!(page.chunks[0].text, "oops\n");
    assert_eq!(
        store
            .read_output(id, 0, 1, None)
            .await
            .unwrap()
            .chunks
            .len(),
        1
    );
    let stdout = store
        .read_output(id, 0, 10, Some(Stream::Stdout))
        .await
        .unwrap();
    assert_eq!(
        stdout.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [1, 3],
        "one stream only"
    );
    let stderr = store
        .read_output(id, 1, 10, Some(Stream::Stderr))
        .await
        .unwrap();
    assert_eq!(stderr.chunks.len(), 1);
    assert_eq!(stderr.chunks[0].text, "oops\n");

    let done = store
        .finish(id, attempt, &Outcome::Exited { code: 1 }, None, Utc::now())
        .await
        .unwrap()
        .job;
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.exit_code, Some(1));
    assert!(done.completed_at.is_some());
    assert_eq!(
        done.stdout, None,
        "the outcome comes back without the output"
    );
    let stored = store.get(id).await.unwrap();
    assert_eq!(stored.stdout.as_deref(), Some("one\ntwo\n"));
    assert_eq!(stored.stderr.as_deref(), Some("oops\n"));
    assert_eq!(
        Job {
            stdout: None,
            stderr: None,
            ..stored
        },
        done
    );
    assert_eq!(
        store
            .read_output(id, 0, 100, None)
            .await
            .unwrap()
            .chunks
            .len(),
        3
    );
}

pub async fn lists_carry_the_tail_of_the_output(store: Arc<dyn JobStore>) {
    store.create(new_job("flood")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    let queued = store.create(new_job("queued")).await.unwrap().id;
    let mut chunks = vec![chunk(1, Stream::Stdout, "head\n")];
    for seq in 2..=40 {
        chunks.push(chunk(seq, Stream::Stdout, &format!("line {seq:03}\n")));
    }
    chunks.push(chunk(41, Stream::Stderr, "é!\n"));
    store
        .append_output(id, attempt, &chunks, None)
        .await
        .unwrap();
    let whole: String = chunks
        .iter()
        .filter(|c| c.stream == Stream::Stdout)
        .map(|c| c.text.as_str())
        .collect();

    for finished in [false, true] {
        if finished {
            store
                .finish(id, attempt, &Outcome::Exited { code: 0 }, None, Utc::now())
                .await
                .unwrap();
        }
        let listed = store.get_listed(id, 20).await.unwrap();
        assert_eq!(
            listed.job.stdout.as_deref(),
            Some("8\nline 039\nline 040\n"),
            "{finished}"
        );
        assert_eq!(listed.output_bytes[0], Some(whole.len() as u64));
        assert!(listed.truncated(Stream::Stdout));
        // Cut to bytes on a character boundary: "é" is two.
        let listed = store.get_listed(id, 3).await.unwrap();
        assert_eq!(listed.job.stderr.as_deref(), Some("!\n"));
        assert_eq!(listed.output_bytes[1], Some(4));
        let listed = store.get_listed(id, 4).await.unwrap();
        assert_eq!(listed.job.stderr.as_deref(), Some("é!\n"));
        assert!(!listed.truncated(Stream::Stderr));

        let page = store.list(&ListQuery::default(), 20).await.unwrap();
        let listed = page.jobs.iter().find(|j| j.job.id == id).unwrap();
        assert_eq!(
            listed.job.stdout.as_deref(),
            Some("8\nline 039\nline 040\n")
        );
        let none = page.jobs.iter().find(|j| j.job.id == queued).unwrap();
        assert_eq!(none.job.stdout, None, "a queued job has no output");
        assert_eq!(none.output_bytes, [None, None]);

        let bare = store.list(&ListQuery::default(), 0).await.unwrap();
        assert!(bare.jobs.iter().all(|j| j.job.stdout.is_none()));
        let sized = bare.jobs.iter().find(|j| j.job.id == id).unwrap();
        assert_eq!(sized.output_bytes[0], Some(whole.len() as u64));
    }

    // A dropped stretch shows as its marker, in the size too.
    store.create(new_job("pruned")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    let mut gap = chunk(2, Stream::Stdout, "end\n");
    gap.dropped_before = 7;
    store
        .append_output(
            id,
            attempt,
            &[chunk(1, Stream::Stdout, "start\n"), gap],
            None,
        )
        .await
        .unwrap();
    let marker = drop_marker(Stream::Stdout, 7);
    let listed = store.get_listed(id, 1000).await.unwrap();
    assert_eq!(listed.job.stdout, Some(format!("start\n{marker}end\n")));
    assert_eq!(
        listed.output_bytes[0],
        Some(("start\n".len() + marker.len() + "end\n".len()) as u64)
    );
}

pub async fn prune_keeps_head_and_tail_and_counts_the_gap(store: Arc<dyn JobStore>) {
    store.create(new_job("flood")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    // Chunk 1 is the head; 2..=5 the tail, 10 bytes each; stderr interleaved.
    let mut chunks = vec![chunk(1, Stream::Stdout, "head-line\n")];
    for seq in 2..=5 {
        chunks.push(chunk(seq, Stream::Stdout, &format!("tail-{seq:04}\n")));
    }
    chunks.push(chunk(6, Stream::Stderr, "err\n"));
    store
        .append_output(id, attempt, &chunks, None)
        .await
        .unwrap();

    // Keep 15 bytes: chunk 5 whole, and the last line that fits of chunk 4
    // (none: cut inside, so a character-boundary cut of 5 bytes).
    let remaining = store
        .prune_output(id, attempt, Stream::Stdout, 1, 15)
        .await
        .unwrap();
    assert_eq!(
        remaining,
        Pruned {
            kept: 15,
            unrecorded: 0
        }
    );
    let job = store.get(id).await.unwrap();
    let marker = drop_marker(Stream::Stdout, 25);
    assert_eq!(marker, "[rje: 25 bytes of stdout dropped]\n");
    assert_eq!(
        job.stdout.unwrap(),
        format!("head-line\n{marker}0004\ntail-0005\n"),
        "a running job's output shows the domain's marker"
    );
    assert_eq!(
        job.stderr.as_deref(),
        Some("err\n"),
        "other streams untouched"
    );

    // A second prune adds to the same count.
    store
        .append_output(
            id,
            attempt,
            &[chunk(7, Stream::Stdout, "tail-0007\n")],
            None,
        )
        .await
        .unwrap();
    let remaining = store
        .prune_output(id, attempt, Stream::Stdout, 1, 10)
        .await
        .unwrap();
    assert_eq!(
        remaining,
        Pruned {
            kept: 10,
            unrecorded: 0
        }
    );

    // Keeping nothing removes every tail chunk and hands back the count
    // (their bytes and the gaps they recorded) for the next chunk to carry.
    let gone = store
        .prune_output(id, attempt, Stream::Stdout, 1, 0)
        .await
        .unwrap();
    assert_eq!(
        gone,
        Pruned {
            kept: 0,
            unrecorded: 50
        }
    );
    let mut next = chunk(8, Stream::Stdout, "tail-0008\n");
    next.dropped_before = gone.unrecorded;
    store
        .append_output(id, attempt, &[next], None)
        .await
        .unwrap();
    store
        .finish(id, attempt, &Outcome::Exited { code: 0 }, None, Utc::now())
        .await
        .unwrap();
    let done = store.get(id).await.unwrap();
    assert_eq!(
        done.stdout.unwrap(),
        format!("head-line\n{}tail-0008\n", drop_marker(Stream::Stdout, 50)),
        "a finished job's output shows the domain's marker"
    );
    let chunks = store.read_output(id, 0, 100, None).await.unwrap().chunks;
    let dropped: u64 = chunks.iter().map(|c| c.dropped_before).sum();
    assert_eq!(dropped, 50);
    assert_eq!(done.stderr.as_deref(), Some("err\n"));
}

pub async fn renewal_reports_requested_cancels(store: Arc<dyn JobStore>) {
    store.create(new_job("a")).await.unwrap();
    store.create(new_job("b")).await.unwrap();
    let w = worker();
    let claimed = store.claim(&w, 2, Duration::from_secs(1)).await.unwrap();
    let both = [claimed[0].job.id, claimed[1].job.id];
    assert!(
        store
            .renew_leases(&w, &both, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    store.cancel(claimed[1].job.id, None).await.unwrap();
    assert_eq!(
        store.renew_leases(&w, &both, LEASE).await.unwrap(),
        [claimed[1].job.id]
    );
    assert!(
        store
            .renew_leases(&worker(), &both, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "another worker's jobs are not reported"
    );
    // The renewal moved the expiry: reaping as of now finds nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        store
            .reap_expired(Utc::now(), Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A worker renews only the leases of the jobs it follows: one it let go
/// (its store failed, its host was out of reach) lapses and is taken up,
/// however busy the worker stays with the others.
pub async fn renewal_lets_the_lease_of_a_job_let_go_lapse(store: Arc<dyn JobStore>) {
    store.create(new_job("followed")).await.unwrap();
    store.create(new_job("let go")).await.unwrap();
    let w = worker();
    let claimed = store.claim(&w, 2, Duration::from_secs(1)).await.unwrap();
    let (followed, let_go) = (claimed[0].job.id, claimed[1].job.id);
    for job in &claimed {
        store
            .mark_started(job.job.id, job.job.attempts, false)
            .await
            .unwrap();
    }
    store.cancel(let_go, None).await.unwrap();
    assert!(
        store
            .renew_leases(&w, &[followed], LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a job not followed is not reported, even with a cancel pending"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let standings: HashMap<_, _> = store
        .standings(&[followed, let_go], Utc::now())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(standings[&followed], Standing::Held);
    assert_eq!(standings[&let_go], Standing::Orphaned);
    let reaped = store.reap_expired(Utc::now(), Utc::now()).await.unwrap();
    let reaped: Vec<_> = reaped.iter().map(|job| job.id).collect();
    assert_eq!(reaped, [let_go], "only the job let go is settled");
    assert!(
        store.renew_leases(&w, &[], LEASE).await.unwrap().is_empty(),
        "nothing followed, nothing renewed"
    );
}

pub async fn reaping_follows_the_lifecycle_rules(store: Arc<dyn JobStore>) {
    for command in ["not started", "started", "cancelled"] {
        store.create(new_job(command)).await.unwrap();
    }
    let w = worker();
    let claimed = store.claim(&w, 3, LEASE).await.unwrap();
    let [not_started, started, cancelled] = [0, 1, 2].map(|i| &claimed[i].job);
    store
        .mark_started(started.id, started.attempts, false)
        .await
        .unwrap();
    store
        .mark_started(cancelled.id, cancelled.attempts, false)
        .await
        .unwrap();
    store.cancel(cancelled.id, None).await.unwrap();

    assert!(
        store
            .reap_expired(Utc::now(), Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
    let reaped = store
        .reap_expired(
            Utc::now() + chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(reaped.len(), 3);

    let requeued = store.get(not_started.id).await.unwrap();
    assert_eq!(requeued.status, Status::Queued);
    let failed = store.get(started.id).await.unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.as_deref(), Some(WORKER_LOST));
    assert!(failed.completed_at.is_some());
    let gone = store.get(cancelled.id).await.unwrap();
    assert_eq!(gone.status, Status::Cancelled);

    let again = claim_one(&store, &worker()).await;
    assert_eq!(again, (not_started.id, 2), "requeued with a new attempt");
}

pub async fn retries_requeue_until_exhausted(store: Arc<dyn JobStore>) {
    store
        .create(request(json!({"command": "ssh-ish", "max_retries": 1})))
        .await
        .unwrap();
    let w = worker();
    let (id, attempt) = claim_one(&store, &w).await;
    let now = Utc::now();
    let job = store
        .retry_later(
            id,
            attempt,
            now,
            "connection refused",
            StartCause::Unreachable,
        )
        .await
        .unwrap()
        .job;
    assert_eq!(job.outcome, None, "a job queued again has no outcome yet");
    assert_eq!(job.status, Status::Queued);
    assert_eq!(job.error.as_deref(), Some("connection refused"));
    assert!(job.run_at >= now - chrono::Duration::milliseconds(1));

    let (id, attempt) = claim_one(&store, &w).await;
    assert_eq!(attempt, 2);
    let job = store
        .retry_later(
            id,
            attempt,
            Utc::now(),
            "connection refused again",
            StartCause::Unreachable,
        )
        .await
        .unwrap()
        .job;
    assert_eq!(
        job.status,
        Status::Failed,
        "max_retries = 1 allows one retry"
    );
    assert_eq!(job.error.as_deref(), Some("connection refused again"));
    assert_eq!(
        job.outcome,
        Some(HostOutcome::Unreachable),
        "the cause tells the outcome"
    );
}

pub async fn workers_announce_themselves_with_their_jobs(store: Arc<dyn JobStore>) {
    let before = Utc::now() - chrono::Duration::seconds(1);
    let (busy, idle) = (worker(), worker());
    store.heartbeat(&busy, "host-a", 4).await.unwrap();
    store.heartbeat(&idle, "host-b", 2).await.unwrap();
    store.create(new_job("a")).await.unwrap();
    store.create(new_job("b")).await.unwrap();
    let claimed = store.claim(&busy, 2, LEASE).await.unwrap();
    store.heartbeat(&busy, "host-a", 4).await.unwrap();

    let workers = store.workers(before).await.unwrap();
    assert_eq!(workers.len(), 2);
    let found = workers.iter().find(|w| w.id == busy).unwrap();
    assert_eq!(found.host, "host-a");
    assert_eq!(found.concurrency, 4);
    assert!(found.heartbeat_at >= found.started_at);
    let mut jobs: Vec<_> = found.jobs.iter().map(|j| (j.id, j.host.clone())).collect();
    jobs.sort();
    let mut expected: Vec<_> = claimed
        .iter()
        .map(|c| (c.job.id, c.job.host.clone()))
        .collect();
    expected.sort();
    assert_eq!(jobs, expected, "each with its host");
    assert!(
        workers
            .iter()
            .find(|w| w.id == idle)
            .unwrap()
            .jobs
            .is_empty()
    );

    assert!(
        store
            .workers(Utc::now() + chrono::Duration::seconds(60))
            .await
            .unwrap()
            .is_empty(),
        "workers with an old heartbeat are not live"
    );
    store.remove_worker(&idle).await.unwrap();
    assert_eq!(store.workers(before).await.unwrap().len(), 1);
}

pub async fn active_jobs_are_counted_by_status_and_priority(store: Arc<dyn JobStore>) {
    assert!(store.count_active().await.unwrap().is_empty());
    for (command, priority) in [
        ("a", Priority::High),
        ("b", Priority::Low),
        ("c", Priority::Low),
    ] {
        store.create(new_job_with(command, priority)).await.unwrap();
    }
    let done = store.create(new_job("d")).await.unwrap();
    store.cancel(done.id, None).await.unwrap();
    claim_one(&store, &worker()).await; // the High one
    let mut counts: Vec<_> = store
        .count_active()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.status, c.priority, c.jobs))
        .collect();
    counts.sort_by_key(|(status, priority, _)| (status.as_str(), priority.rank()));
    assert_eq!(
        counts,
        [
            (Status::Queued, Priority::Low, 2),
            (Status::Running, Priority::High, 1),
        ],
        "finished jobs are not counted"
    );
}

pub async fn every_status_is_counted(store: Arc<dyn JobStore>) {
    let zeros: Vec<_> = Status::ALL.iter().map(|s| (*s, 0)).collect();
    assert_eq!(store.count_by_status().await.unwrap(), zeros);
    for command in ["a", "b", "c"] {
        store.create(new_job(command)).await.unwrap();
    }
    let cancelled = store.create(new_job("d")).await.unwrap();
    store.cancel(cancelled.id, None).await.unwrap();
    claim_one(&store, &worker()).await;
    let counts = store.count_by_status().await.unwrap();
    let count = |status| counts.iter().find(|(s, _)| *s == status).unwrap().1;
    assert_eq!(counts.len(), Status::ALL.len());
    assert_eq!(count(Status::Queued), 2);
    assert_eq!(count(Status::Running), 1);
    assert_eq!(count(Status::Cancelled), 1);
    assert_eq!(count(Status::Success), 0);
}

pub async fn search_matches_a_literal_substring_of_the_command(store: Arc<dyn JobStore>) {
    for command in [
        "echo Deploy web",
        "echo 100% done",
        "echo 100 percent",
        "echo a_b",
        "echo axb",
        "echo back\\slash",
    ] {
        store.create(new_job(command)).await.unwrap();
    }
    let found = |search: &str| {
        let query = ListQuery::parse(
            [("search", search), ("ordering", "created_at")],
            &list_hosts(),
        )
        .unwrap();
        let store = store.clone();
        async move {
            let page = store.list(&query, 0).await.unwrap();
            assert_eq!(page.total_count as usize, page.jobs.len());
            page.jobs
                .into_iter()
                .map(|j| j.job.command)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("deploy").await,
        ["echo Deploy web"],
        "ASCII case is ignored"
    );
    assert_eq!(found("100%").await, ["echo 100% done"], "% is literal");
    assert_eq!(found("a_b").await, ["echo a_b"], "_ is literal");
    assert_eq!(found("k\\s").await, ["echo back\\slash"], "\\ is literal");
    assert_eq!(found("echo").await.len(), 6);
    assert!(found("nowhere").await.is_empty());
}

pub async fn the_last_chunks_come_oldest_first(store: Arc<dyn JobStore>) {
    store.create(new_job("echo")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    store.mark_started(id, attempt, false).await.unwrap();
    let chunks: Vec<_> = (1..=6)
        .map(|seq| {
            let stream = if seq % 2 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            chunk(seq, stream, &format!("line {seq}\n"))
        })
        .collect();
    store
        .append_output(id, attempt, &chunks, None)
        .await
        .unwrap();
    let seqs = |page: OutputPage| page.chunks.iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.read_output_last(id, 0, 2, None).await.unwrap()),
        [5, 6]
    );
    assert_eq!(
        seqs(
            store
                .read_output_last(id, 0, 2, Some(Stream::Stdout))
                .await
                .unwrap()
        ),
        [3, 5]
    );
    assert_eq!(
        seqs(store.read_output_last(id, 4, 10, None).await.unwrap()),
        [5, 6],
        "only chunks after since"
    );
    assert!(matches!(
        store.read_output_last(JobId::new(), 0, 2, None).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn search_finds_edited_commands_and_forgets_deleted_ones(store: Arc<dyn JobStore>) {
    let first = store.create(new_job("echo alpha-one")).await.unwrap();
    let second = store.create(new_job("echo alpha-two")).await.unwrap();
    let search = |text: &'static str| {
        let store = store.clone();
        async move {
            let query = ListQuery::parse([("search", text)], &list_hosts()).unwrap();
            let page = store.list(&query, 0).await.unwrap();
            assert!(page.total_exact);
            page.jobs.into_iter().map(|j| j.job.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(search("ALPHA").await.len(), 2);
    edit_command(&store, &first, "echo beta").await;
    assert_eq!(
        search("alpha").await,
        [second.id],
        "an edit is searched anew"
    );
    assert_eq!(search("beta").await, [first.id]);
    store.delete(second.id).await.unwrap();
    assert!(
        search("alpha").await.is_empty(),
        "a deleted job is not found"
    );
    // Jobs submitted since the last search, edited or deleted before the
    // next one, are found as they are now.
    let third = store.create(new_job("echo gamma-three")).await.unwrap();
    let fourth = store.create(new_job("echo gamma-four")).await.unwrap();
    edit_command(&store, &third, "echo delta").await;
    store.delete(fourth.id).await.unwrap();
    assert!(search("gamma").await.is_empty());
    assert_eq!(search("delta").await, [third.id]);
    assert_eq!(
        search("beta").await,
        [first.id],
        "what was indexed is still found"
    );
}

/// Edits a queued job's command, as the API would.
async fn edit_command(store: &Arc<dyn JobStore>, job: &Job, command: &str) {
    let patch = JobPatch::parse(
        &json!({ "command": command }),
        &Limits::default(),
        &list_hosts(),
        job,
    )
    .unwrap();
    store.edit(job.id, &patch).await.unwrap();
}

pub async fn a_lost_running_job_is_taken_up_again_as_a_new_attempt(store: Arc<dyn JobStore>) {
    store.create(new_job("echo")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    store.mark_started(id, attempt, false).await.unwrap();
    let ended = |mut chunk: Chunk, end: u64| {
        chunk.source_end = Some(end);
        chunk
    };
    let chunks = [
        ended(chunk(1, Stream::Stdout, "one\n"), 4),
        ended(chunk(2, Stream::Stderr, "err\n"), 4),
        ended(chunk(3, Stream::Stdout, "two\n"), 8),
    ];
    store
        .append_output(id, attempt, &chunks, Some("42"))
        .await
        .unwrap();
    let successor = worker();
    assert!(
        matches!(
            store
                .reattach(id, &successor, LEASE, Utc::now())
                .await
                .unwrap(),
            TakeUp::Held
        ),
        "not while its lease lives"
    );
    let past_the_lease = Utc::now() + chrono::Duration::seconds(60);
    let TakeUp::Taken(taken) = store
        .reattach(id, &successor, LEASE, past_the_lease)
        .await
        .unwrap()
    else {
        panic!("taken up once the lease expired");
    };
    assert_eq!(
        taken.stored.iter().map(|c| (c.0, c.2)).collect::<Vec<_>>(),
        [(1, 4), (2, 4), (3, 4)],
        "the sizes of what is stored"
    );
    assert_eq!(taken.claimed.job.attempts, attempt + 1);
    assert_eq!(taken.claimed.job.reattached, 1);
    assert_eq!(taken.claimed.job.status, Status::Running);
    assert_eq!(taken.claimed.last_seq, 3, "seqs go on");
    assert_eq!(
        taken.offsets,
        [8, 4],
        "reading goes on where the store stopped"
    );
    assert_eq!(store.get_meta(id).await.unwrap().reattached, 1);
    let stale = store
        .append_output(id, attempt, &[chunk(4, Stream::Stdout, "x\n")], None)
        .await;
    assert!(
        matches!(stale, Err(StoreError::Fenced)),
        "the old attempt is fenced"
    );
    store
        .append_output(
            id,
            attempt + 1,
            &[chunk(4, Stream::Stdout, "three\n")],
            None,
        )
        .await
        .unwrap();
    assert!(
        matches!(
            store
                .reattach(id, &worker(), LEASE, Utc::now())
                .await
                .unwrap(),
            TakeUp::Held
        ),
        "the new lease holds it"
    );
    store
        .finish(
            id,
            attempt + 1,
            &Outcome::Exited { code: 0 },
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            store
                .reattach(id, &worker(), LEASE, past_the_lease)
                .await
                .unwrap(),
            TakeUp::Over
        ),
        "a finished job is never taken up"
    );
    assert!(
        matches!(
            store
                .reattach(JobId::new(), &worker(), LEASE, past_the_lease)
                .await
                .unwrap(),
            TakeUp::Unknown
        ),
        "a job another store owns is told apart from a settled one"
    );
}

pub async fn a_supervised_job_is_left_to_its_machine_for_a_grace(store: Arc<dyn JobStore>) {
    store.create(new_job("plain")).await.unwrap();
    store.create(new_job("supervised")).await.unwrap();
    let first = claim_one(&store, &worker()).await;
    let second = claim_one(&store, &worker()).await;
    assert!(matches!(
        store.mark_started(second.0, second.1 + 1, true).await,
        Err(StoreError::Fenced)
    ));
    store.mark_started(first.0, first.1, false).await.unwrap();
    store.mark_started(second.0, second.1, true).await.unwrap();
    let past_the_lease = Utc::now() + chrono::Duration::seconds(60);
    let within_the_grace = past_the_lease - chrono::Duration::minutes(10);
    let reaped = store
        .reap_expired(past_the_lease, within_the_grace)
        .await
        .unwrap();
    assert_eq!(
        reaped.iter().map(|job| job.id).collect::<Vec<_>>(),
        [first.0],
        "the supervised job waits for its machine"
    );
    let reaped = store
        .reap_expired(past_the_lease, past_the_lease)
        .await
        .unwrap();
    assert_eq!(
        reaped.iter().map(|job| job.id).collect::<Vec<_>>(),
        [second.0],
        "then it is settled like any other"
    );
}

pub async fn orphaned_supervised_jobs_are_found_by_host(store: Arc<dyn JobStore>) {
    let on = |host: &str| request(json!({ "command": "true", "host": host }));
    store.create(on("a")).await.unwrap();
    store.create(on("a")).await.unwrap();
    store.create(on("b")).await.unwrap();
    store.create(on("elsewhere")).await.unwrap();
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let (id, attempt) = claim_one(&store, &worker()).await;
        claimed.push((id, attempt, store.get(id).await.unwrap().host));
    }
    let host_of = |id: JobId| claimed.iter().find(|c| c.0 == id).unwrap().2.clone();
    // All but one of the jobs on `a` run under supervisors.
    let plain_on_a = claimed
        .iter()
        .find(|c| c.2.as_deref() == Some("a"))
        .unwrap()
        .0;
    for (id, attempt, _) in &claimed {
        let supervised = *id != plain_on_a;
        store.mark_started(*id, *attempt, supervised).await.unwrap();
    }
    let hosts = ["a".to_owned(), "b".to_owned()];
    let live = Utc::now();
    assert!(
        store
            .orphaned_supervised(&hosts, live)
            .await
            .unwrap()
            .is_empty(),
        "jobs whose leases are live have their workers"
    );
    let past_the_lease = Utc::now() + chrono::Duration::seconds(60);
    let mut found = store
        .orphaned_supervised(&hosts, past_the_lease)
        .await
        .unwrap();
    found.sort_by_key(|(id, _)| host_of(*id));
    assert_eq!(
        found.iter().map(|(id, _)| host_of(*id)).collect::<Vec<_>>(),
        [Some("a".to_owned()), Some("b".to_owned())],
        "the supervised jobs of the hosts asked for, not the plain one nor another host's"
    );
    assert!(
        found
            .iter()
            .all(|(id, host)| host_of(*id).as_deref() == Some(host.as_str())),
        "each with its host: {found:?}"
    );
    assert!(!found.iter().any(|(id, _)| *id == plain_on_a));
    assert!(
        store
            .orphaned_supervised(&[], past_the_lease)
            .await
            .unwrap()
            .is_empty()
    );
    // Once taken up, a job has a live lease again.
    let TakeUp::Taken(_) = store
        .reattach(found[0].0, &worker(), LEASE, past_the_lease)
        .await
        .unwrap()
    else {
        panic!("the orphan is taken up");
    };
    let after = store.orphaned_supervised(&hosts, Utc::now()).await.unwrap();
    assert!(!after.iter().any(|(id, _)| *id == found[0].0));
}

pub async fn standings_tell_held_orphaned_and_over_apart_in_one_query(store: Arc<dyn JobStore>) {
    store.create(new_job("running")).await.unwrap();
    store.create(new_job("finished")).await.unwrap();
    let running = claim_one(&store, &worker()).await;
    let finished = claim_one(&store, &worker()).await;
    store
        .finish(
            finished.0,
            finished.1,
            &Outcome::Exited { code: 0 },
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    let unknown = JobId::new();
    let ids = [running.0, finished.0, unknown];
    let mut now = store.standings(&ids, Utc::now()).await.unwrap();
    now.sort_by_key(|(id, _)| ids.iter().position(|i| i == id));
    assert_eq!(
        now,
        [(running.0, Standing::Held), (finished.0, Standing::Over)],
        "an unknown id is left out"
    );
    let past_the_lease = Utc::now() + chrono::Duration::seconds(60);
    let later = store.standings(&ids, past_the_lease).await.unwrap();
    assert!(
        later.contains(&(running.0, Standing::Orphaned)),
        "{later:?}"
    );
    assert!(
        store
            .standings(&[], past_the_lease)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Bytes the consistency test keeps of its job's stdout: a head chunk, and
/// a tail the writer prunes to [`SNAPSHOT_TAIL`] as the worker does.
const SNAPSHOT_HEAD: &str = "head\n";
const SNAPSHOT_TAIL: u64 = 1000;
/// Lines per chunk and chunks per batch; a line is 9 bytes ("%08d\n").
const SNAPSHOT_LINES: u64 = 8;
const SNAPSHOT_BATCH: u64 = 2;
const SNAPSHOT_ROUNDS: u64 = 150;

/// Lines 1..=last as the writer writes them.
fn numbered(last: u64) -> String {
    (1..=last).map(|n| format!("{n:08}\n")).collect()
}

/// Checks one read of the stdout of the consistency test's job: the head,
/// at most one drop marker, then the end of the numbered lines; the marker's
/// count plus what follows it is exactly the lines written up to the last
/// one shown (a read torn between two prunes would count some bytes twice
/// or not at all); within the cap.
fn check_snapshot(text: &str, what: &str) {
    assert!(
        text.matches("[rje: ").count() <= 1,
        "{what}: more than one drop marker in {text:?}"
    );
    let tail = text
        .strip_prefix(SNAPSHOT_HEAD)
        .unwrap_or_else(|| panic!("{what}: no head in {text:?}"));
    let (dropped, shown) = match tail.strip_prefix("[rje: ") {
        Some(marked) => {
            let (count, rest) = marked
                .split_once(" bytes of stdout dropped]\n")
                .unwrap_or_else(|| panic!("{what}: a bad marker in {text:?}"));
            (count.parse::<u64>().unwrap(), rest)
        }
        None => (0, tail),
    };
    assert!(
        shown.len() as u64 <= SNAPSHOT_TAIL,
        "{what}: {} bytes of tail stored past the cap",
        shown.len()
    );
    if shown.is_empty() {
        return;
    }
    assert!(shown.ends_with('\n'), "{what}: ends inside a line");
    let last: u64 = shown[shown.len().saturating_sub(9)..shown.len() - 1]
        .parse()
        .unwrap_or_else(|_| panic!("{what}: not a numbered line at the end of {shown:?}"));
    let written = numbered(last);
    assert!(
        written.ends_with(shown),
        "{what}: lines missing or out of order in {shown:?}"
    );
    assert_eq!(
        dropped + shown.len() as u64,
        written.len() as u64,
        "{what}: the marker's count and the lines shown disagree"
    );
}

/// Checks a page of chunks: seqs strictly increasing, and their text as a
/// reader renders it is one consistent view.
fn check_page(page: &OutputPage, what: &str) {
    assert!(
        page.chunks.windows(2).all(|w| w[0].seq < w[1].seq),
        "{what}: seqs not strictly increasing"
    );
    let text: String = page.chunks.iter().map(|c| c.display_text()).collect();
    check_snapshot(&text, what);
}

/// Every read of a running job's output is what was stored at one instant,
/// while a writer appends and prunes as the worker does: one drop marker at
/// most, seqs in order, the cap held, the marker's count exact, and the
/// size a list states the size of what it shows.
pub async fn output_reads_are_each_one_snapshot(store: Arc<dyn JobStore>) {
    store.create(new_job("flood")).await.unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    store
        .append_output(
            id,
            attempt,
            &[chunk(1, Stream::Stdout, SNAPSHOT_HEAD)],
            None,
        )
        .await
        .unwrap();

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let (mut seq, mut line) = (1i64, 0u64);
            let batch_bytes = SNAPSHOT_BATCH * SNAPSHOT_LINES * 9;
            for _ in 0..SNAPSHOT_ROUNDS {
                // As the worker: make room for the batch, then store it.
                store
                    .prune_output(id, attempt, Stream::Stdout, 1, SNAPSHOT_TAIL - batch_bytes)
                    .await
                    .unwrap();
                let mut batch = Vec::new();
                for _ in 0..SNAPSHOT_BATCH {
                    seq += 1;
                    let text: String = (0..SNAPSHOT_LINES)
                        .map(|_| {
                            line += 1;
                            format!("{line:08}\n")
                        })
                        .collect();
                    batch.push(chunk(seq, Stream::Stdout, &text));
                }
                store
                    .append_output(id, attempt, &batch, None)
                    .await
                    .unwrap();
                // Let the reader in between writes, on any runtime.
                tokio::task::yield_now().await;
            }
        })
    };

    let mut reads = 0;
    loop {
        let done = writer.is_finished();
        let job = store.get(id).await.unwrap();
        check_snapshot(job.stdout.as_deref().unwrap(), "get");

        // The stored tail is at most 15 chunks, so a tail of the newest 16
        // is the whole output; its size must be the size of what it shows.
        let listed = store.get_listed(id, 1 << 20).await.unwrap();
        let shown = listed.job.stdout.as_deref().unwrap();
        check_snapshot(shown, "get_listed");
        assert_eq!(
            listed.output_bytes[0],
            Some(shown.len() as u64),
            "get_listed: stdout_bytes is not the size of the stdout shown"
        );
        let page = store.list(&ListQuery::default(), 1 << 20).await.unwrap();
        let listed = page.jobs.iter().find(|j| j.job.id == id).unwrap();
        let shown = listed.job.stdout.as_deref().unwrap();
        check_snapshot(shown, "list");
        assert_eq!(listed.output_bytes[0], Some(shown.len() as u64), "list");

        let page = store
            .read_output(id, 0, 10_000, Some(Stream::Stdout))
            .await
            .unwrap();
        check_page(&page, "read_output");
        let page = store
            .read_output_last(id, 0, 10_000, Some(Stream::Stdout))
            .await
            .unwrap();
        check_page(&page, "read_output_last");

        // Paged reads are one snapshot per page; across pages the seqs
        // still only grow, and every gap is stated by a marker.
        let mut since = 0;
        loop {
            let page = store.read_output(id, since, 3, None).await.unwrap();
            assert!(
                page.chunks.iter().all(|c| c.seq > since),
                "pages go forward"
            );
            match page.chunks.last() {
                Some(last) if page.chunks.len() == 3 => since = last.seq,
                _ => break,
            }
        }
        reads += 1;
        if done {
            break;
        }
    }
    writer.await.unwrap();
    assert!(reads > 1, "the reads ran while the writer wrote");
}

/// A worker lost between the start mark and the launch of a supervised
/// command: its machine proves the command never started and the job is
/// queued again, at that attempt only, once the lease is gone, with no
/// retry used up; a cancel asked for meanwhile cancels it instead.
pub async fn a_job_proven_unstarted_is_queued_again_only_at_its_attempt(store: Arc<dyn JobStore>) {
    let created = store
        .create(request(json!({ "command": "true", "max_retries": 0 })))
        .await
        .unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    assert_eq!(id, created.id);
    store.mark_started(id, attempt, true).await.unwrap();
    let past_the_lease = Utc::now() + chrono::Duration::seconds(60);

    assert!(
        matches!(
            store.requeue_unstarted(id, attempt, Utc::now()).await,
            Err(StoreError::Fenced)
        ),
        "the lease is live: its worker is alive"
    );
    assert!(
        matches!(
            store
                .requeue_unstarted(id, attempt + 1, past_the_lease)
                .await,
            Err(StoreError::Fenced)
        ),
        "another attempt"
    );
    assert_eq!(store.get(id).await.unwrap().status, Status::Running);

    let requeued = store
        .requeue_unstarted(id, attempt, past_the_lease)
        .await
        .unwrap();
    assert_eq!(requeued.status, Status::Queued);
    assert_eq!(requeued.started_at, None);
    assert!(requeued.error.is_some(), "says why it was queued again");
    assert!(
        matches!(
            store.requeue_unstarted(id, attempt, past_the_lease).await,
            Err(StoreError::Fenced)
        ),
        "only once"
    );
    // No retries at all, yet it runs again: nothing ran, nothing failed.
    let (again, next) = claim_one(&store, &worker()).await;
    assert_eq!((again, next), (id, attempt + 1));
    assert!(
        matches!(
            store
                .finish(id, attempt, &Outcome::Exited { code: 0 }, None, Utc::now())
                .await,
            Err(StoreError::Fenced)
        ),
        "the lost attempt stays fenced"
    );
    // A claimed attempt that never started is reaped after its own lease,
    // not the supervised grace.
    let reaped = store
        .reap_expired(past_the_lease, Utc::now())
        .await
        .unwrap();
    assert_eq!(reaped.iter().map(|job| job.id).collect::<Vec<_>>(), [id]);
    assert_eq!(reaped[0].status, Status::Queued);

    // A cancel asked for while nobody followed the job: Cancelled.
    let (_, third) = claim_one(&store, &worker()).await;
    store.mark_started(id, third, true).await.unwrap();
    store.cancel(id, None).await.unwrap();
    let cancelled = store
        .requeue_unstarted(id, third, past_the_lease)
        .await
        .unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
}

pub async fn tokens_are_kept_by_the_hash_of_their_secret_and_revoked_at_once(
    store: Arc<dyn JobStore>,
) {
    assert!(!store.has_tokens().await.unwrap());
    let hosts = HostNames::new("local", ["web-1"]);
    let new = NewToken::parse(
        &json!({"name": "ci", "role": "run", "hosts": ["web-1"], "labels": ["eu"]}),
        &hosts,
    )
    .unwrap();
    let secret = new_secret();
    let created = store
        .create_token(&new, &hash_secret(&secret))
        .await
        .unwrap();
    assert_eq!(created.name, "ci");
    assert_eq!(created.role, Role::Run);
    assert_eq!(created.scope.hosts, ["web-1"]);
    assert_eq!(created.scope.labels, ["eu"]);
    assert_eq!(created.last_used_at, None);
    let again = store.create_token(&new, &hash_secret(&new_secret())).await;
    assert!(
        matches!(&again, Err(StoreError::NameTaken(name)) if name == "ci"),
        "{again:?}"
    );
    let viewer = NewToken::parse(&json!({"name": "viewer", "role": "read"}), &hosts).unwrap();
    store
        .create_token(&viewer, &hash_secret(&new_secret()))
        .await
        .unwrap();
    let names: Vec<String> = store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|token| token.name)
        .collect();
    assert_eq!(names, ["ci", "viewer"]);

    let found = store
        .token_by_hash(&hash_secret(&secret))
        .await
        .unwrap()
        .expect("the token of that secret");
    assert_eq!(found.name, "ci");
    assert!(found.last_used_at.is_some(), "its use is recorded");
    let listed = store.tokens().await.unwrap();
    assert!(listed[0].last_used_at.is_some());
    assert!(
        store.token_by_hash(&secret).await.unwrap().is_none(),
        "the secret itself is not what is kept"
    );
    assert!(
        store
            .token_by_hash(&hash_secret("rje_guess"))
            .await
            .unwrap()
            .is_none()
    );

    store.revoke_token("ci").await.unwrap();
    assert!(
        store
            .token_by_hash(&hash_secret(&secret))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.revoke_token("ci").await,
        Err(StoreError::NotFound)
    ));
    // Revoked, it is no longer listed, and its name stays its own.
    assert!(store.tokens().await.unwrap().iter().all(|t| t.name != "ci"));
    assert!(
        store.has_tokens().await.unwrap(),
        "once made, tokens are asked for"
    );
    for name in ["ci", "CI", "Ci"] {
        let again = NewToken::parse(&json!({"name": name, "role": "read"}), &hosts).unwrap();
        assert!(
            matches!(
                store
                    .create_token(&again, &hash_secret(&new_secret()))
                    .await,
                Err(StoreError::NameTaken(_))
            ),
            "{name}: a name is never another's, in any letter case"
        );
    }
}

pub async fn the_audit_trail_is_appended_paged_filtered_and_pruned(store: Arc<dyn JobStore>) {
    let start = Utc::now() - chrono::Duration::hours(1);
    let mut entries = Vec::new();
    for (i, (token, route)) in [
        (Some("ci"), "/jobs/"),
        (Some("ci"), "/jobs/{id}/cancel/"),
        (None, "/jobs/"),
        (Some("admin"), "/tokens/"),
        (Some("ci"), "/jobs/"),
    ]
    .into_iter()
    .enumerate()
    {
        entries.push(AuditEntry {
            at: start + chrono::Duration::minutes(i as i64 * 10),
            token: token.map(str::to_owned),
            client: "127.0.0.1".into(),
            method: "POST".into(),
            route: route.into(),
            target: Some(format!("target-{i}")),
            status: 201,
        });
    }
    // One alone, then the rest in one batch, which keeps its order.
    store.append_audit(&entries[..1]).await.unwrap();
    store.append_audit(&entries[1..]).await.unwrap();
    store.append_audit(&[]).await.unwrap();
    let targets = |page: &rje_store::AuditPage| -> Vec<String> {
        page.entries
            .iter()
            .map(|entry| entry.target.clone().unwrap())
            .collect()
    };
    let page = store
        .audit(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total_count, 5);
    assert_eq!(targets(&page), ["target-4", "target-3"], "newest first");
    let page = store
        .audit(&AuditQuery {
            limit: 2,
            offset: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(targets(&page), ["target-2", "target-1"]);
    let ci = store
        .audit(&AuditQuery {
            limit: 10,
            token: Some("ci".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (ci.total_count, targets(&ci)),
        (
            3,
            vec![
                "target-4".to_owned(),
                "target-1".to_owned(),
                "target-0".to_owned()
            ]
        )
    );
    let creates = store
        .audit(&AuditQuery {
            limit: 10,
            token: Some("ci".into()),
            route: Some("/jobs/".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(creates.total_count, 2);
    assert_eq!(creates.entries[0].token.as_deref(), Some("ci"));
    assert_eq!(creates.entries[0].status, 201);
    assert_eq!(creates.entries[0].method, "POST");

    let pruned = store
        .prune_audit(start + chrono::Duration::minutes(25))
        .await
        .unwrap();
    assert_eq!(pruned, 3);
    let left = store
        .audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(targets(&left), ["target-4", "target-3"]);
}

pub async fn jobs_keep_their_submitter_and_lists_filter_by_it_and_by_scope(
    store: Arc<dyn JobStore>,
) {
    let on = |host: &str, by: Option<&str>| {
        request(json!({ "command": "true", "host": host })).submitted_by(by.map(str::to_owned))
    };
    let team_a = store.create(on("a", Some("team"))).await.unwrap();
    let team_b = store.create(on("b", Some("team"))).await.unwrap();
    let other = store.create(on("a", Some("other"))).await.unwrap();
    let nobody = store.create(on("elsewhere", None)).await.unwrap();
    assert_eq!(team_a.submitted_by.as_deref(), Some("team"));
    assert_eq!(nobody.submitted_by, None);
    assert_eq!(
        store.get(team_a.id).await.unwrap().submitted_by.as_deref(),
        Some("team"),
        "kept"
    );
    assert_eq!(team_a.cancelled_by, None);

    let ids = |page: rje_store::JobPage| {
        let mut ids: Vec<JobId> = page.jobs.iter().map(|listed| listed.job.id).collect();
        ids.sort_by_key(|id| id.to_string());
        ids
    };
    let sorted = |mut ids: Vec<JobId>| {
        ids.sort_by_key(|id| id.to_string());
        ids
    };
    let by_team = ListQuery {
        submitted_by: Some("team".into()),
        ..ListQuery::default()
    };
    let page = store.list(&by_team, 0).await.unwrap();
    assert_eq!(page.total_count, 2);
    assert_eq!(ids(page), sorted(vec![team_a.id, team_b.id]));

    let within_a = ListQuery {
        hosts_within: Some(vec!["a".into()]),
        ..ListQuery::default()
    };
    let page = store.list(&within_a, 0).await.unwrap();
    assert_eq!(page.total_count, 2);
    assert_eq!(ids(page), sorted(vec![team_a.id, other.id]));

    let both = ListQuery {
        submitted_by: Some("team".into()),
        hosts_within: Some(vec!["b".into(), "elsewhere".into()]),
        ..ListQuery::default()
    };
    assert_eq!(ids(store.list(&both, 0).await.unwrap()), vec![team_b.id]);

    let nowhere = ListQuery {
        hosts_within: Some(Vec::new()),
        ..ListQuery::default()
    };
    assert_eq!(store.list(&nowhere, 0).await.unwrap().total_count, 0);

    // Counted within a scope: every status, by priority.
    store.cancel(other.id, Some("team")).await.unwrap();
    let mut counted: Vec<(Status, Priority, u64)> = store
        .count_within(&["a".to_owned()])
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.status, count.priority, count.jobs))
        .collect();
    counted.sort_by_key(|(status, _, _)| status.as_str());
    assert_eq!(
        counted,
        vec![
            (Status::Cancelled, Priority::Medium, 1),
            (Status::Queued, Priority::Medium, 1)
        ]
    );
    assert!(store.count_within(&[]).await.unwrap().is_empty());
}

pub async fn a_key_makes_one_job_whatever_the_number_of_requests(store: Arc<dyn JobStore>) {
    let once = |key: &str, owner: &str, fingerprint: &str| rje_domain::Once {
        key: rje_domain::IdempotencyKey::parse(key.as_bytes()).unwrap(),
        owner: owner.to_owned(),
        fingerprint: fingerprint.to_owned(),
        since: Utc::now() - chrono::Duration::hours(24),
    };
    let jobs = |store: Arc<dyn JobStore>| async move {
        store
            .list(&ListQuery::default(), 0)
            .await
            .unwrap()
            .total_count
    };
    let Created::New(first) = store
        .create_once(new_job("true"), &once("k1", "ci", "f1"))
        .await
        .unwrap()
    else {
        panic!("a new key makes a job");
    };
    let Created::Replayed(again) = store
        .create_once(new_job("true"), &once("k1", "ci", "f1"))
        .await
        .unwrap()
    else {
        panic!("the same request again answers the job it made");
    };
    assert_eq!(again.id, first.id);
    assert!(matches!(
        store
            .create_once(new_job("false"), &once("k1", "ci", "f2"))
            .await,
        Err(StoreError::KeyReused(key)) if key == "k1"
    ));
    assert_eq!(
        jobs(store.clone()).await,
        1,
        "a refused repeat makes nothing"
    );
    // Keys are per owner.
    assert!(matches!(
        store
            .create_once(new_job("true"), &once("k1", "other", "f1"))
            .await
            .unwrap(),
        Created::New(_)
    ));
    // An expired key makes a new job.
    let mut fresh = once("k1", "ci", "f1");
    fresh.since = Utc::now() + chrono::Duration::seconds(1);
    let Created::New(renewed) = store.create_once(new_job("true"), &fresh).await.unwrap() else {
        panic!("an expired key makes a new job");
    };
    assert_ne!(renewed.id, first.id);

    // Many at once: one job, and every answer names it.
    let tries: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let once = once("k2", "ci", "f1");
            tokio::spawn(async move { store.create_once(new_job("echo once"), &once).await })
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in tries {
        answers.push(attempt.await.unwrap().unwrap());
    }
    let made: HashSet<JobId> = answers
        .iter()
        .map(|answer| match answer {
            Created::New(job) | Created::Replayed(job) => job.id,
        })
        .collect();
    assert_eq!(made.len(), 1, "{answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|answer| matches!(answer, Created::New(_)))
            .count(),
        1
    );
    assert_eq!(jobs(store.clone()).await, 4);

    // Pruned, a key is forgotten: the same request makes a new job.
    assert_eq!(
        store
            .prune_idempotency_keys(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        3
    );
    let Created::New(after_prune) = store
        .create_once(new_job("true"), &once("k1", "other", "f1"))
        .await
        .unwrap()
    else {
        panic!("a pruned key makes a new job");
    };
    store.delete(after_prune.id).await.unwrap();
    // A deleted job takes its key with it.
    let Created::New(_) = store
        .create_once(new_job("echo once"), &once("k2", "ci", "f1"))
        .await
        .unwrap()
    else {
        panic!("k2 was pruned");
    };
    let made = match store
        .create_once(new_job("echo once"), &once("k2", "ci", "f1"))
        .await
        .unwrap()
    {
        Created::Replayed(job) => job.id,
        Created::New(_) => panic!("k2 holds again"),
    };
    store.delete(made).await.unwrap();
    assert!(matches!(
        store
            .create_once(new_job("echo once"), &once("k2", "ci", "f1"))
            .await
            .unwrap(),
        Created::New(job) if job.id != made
    ));
}
