//! The contract of schedules, fires, automatic retries, serial jobs and
//! retention: every store passes it unchanged.

use std::sync::Arc;

use chrono::{Duration as TimeDelta, Utc};
use rje_domain::{JobId, NewJob, Outcome, PruneFilter, ScheduleId, Status};
use rje_store::{Fire, FireOutcome, JobStore, ScheduleWrite, StoreError};
use serde_json::json;

use crate::suite::{LEASE, claim_one, request, worker};

fn definition(name: &str, host: &str) -> serde_json::Value {
    json!({"name": name, "cron": "* * * * * *", "timezone": "UTC", "command": "true", "host": host})
}

async fn make_schedule(store: &Arc<dyn JobStore>, name: &str) -> rje_store::ScheduleRecord {
    let definition = definition(name, "local");
    store
        .create_schedule(
            &ScheduleWrite {
                name,
                definition: &definition,
                host: "local",
                paused: false,
            },
            Some("ci"),
        )
        .await
        .expect("schedule made")
}

fn fire_of(
    record: &rje_store::ScheduleRecord,
    at: chrono::DateTime<Utc>,
    job: Option<NewJob>,
) -> Fire {
    Fire {
        schedule: record.id,
        read_at: record.modified_at,
        at,
        missed: 0,
        job: job.map(|job| {
            job.submitted_by(record.created_by.clone())
                .fired_by(record.id, at, false)
        }),
        skip_while_active: false,
        skip_while_waiting: false,
    }
}

pub async fn schedules_are_made_read_listed_changed_and_deleted(store: Arc<dyn JobStore>) {
    let made = make_schedule(&store, "nightly").await;
    assert_eq!(made.created_by.as_deref(), Some("ci"));
    assert_eq!(made.last_job, None);
    assert_eq!(store.schedule("nightly").await.unwrap(), made);
    assert_eq!(store.schedule(&made.id.to_string()).await.unwrap(), made);
    assert!(matches!(
        store.schedule("nope").await,
        Err(StoreError::NotFound)
    ));
    let again = definition("nightly", "local");
    let taken = store
        .create_schedule(
            &ScheduleWrite {
                name: "nightly",
                definition: &again,
                host: "local",
                paused: false,
            },
            None,
        )
        .await;
    assert!(matches!(taken, Err(StoreError::NameTaken(name)) if name == "nightly"));

    let other = make_schedule(&store, "hourly").await;
    let elsewhere = definition("far", "elsewhere");
    store
        .create_schedule(
            &ScheduleWrite {
                name: "far",
                definition: &elsewhere,
                host: "elsewhere",
                paused: true,
            },
            None,
        )
        .await
        .unwrap();
    let (page, total) = store.schedules(10, 0, None).await.unwrap();
    let names: Vec<_> = page.iter().map(|s| s.name.as_str()).collect();
    assert_eq!((names, total), (vec!["far", "hourly", "nightly"], 3));
    let (page, total) = store.schedules(1, 1, None).await.unwrap();
    assert_eq!((page[0].name.as_str(), total), ("hourly", 3));
    let (page, total) = store
        .schedules(10, 0, Some(&["local".to_owned()]))
        .await
        .unwrap();
    assert_eq!((page.len(), total), (2, 2), "only the scope's hosts");
    let active: Vec<_> = store
        .active_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(active.len(), 2, "paused ones are not followed: {active:?}");

    let since = Utc::now() + TimeDelta::seconds(5);
    let changed = store
        .update_schedule(
            other.id,
            &ScheduleWrite {
                name: "hourly-2",
                definition: &definition("hourly-2", "local"),
                host: "local",
                paused: true,
            },
            Some(since),
        )
        .await
        .unwrap();
    assert_eq!(changed.name, "hourly-2");
    assert!(changed.paused);
    assert!(
        changed.modified_at > other.modified_at,
        "an edit always moves modified_at"
    );
    assert_eq!(changed.since.timestamp_micros(), since.timestamp_micros());
    store.delete_schedule(other.id).await.unwrap();
    assert!(matches!(
        store.delete_schedule(other.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_schedule(ScheduleId::new()).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn a_fire_time_is_won_by_one_fire_whatever_the_number_of_processes(
    store: Arc<dyn JobStore>,
) {
    let record = make_schedule(&store, "every-second").await;
    let at = Utc::now();
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        let fire = fire_of(&record, at, Some(crate::suite::new_job("echo fired")));
        racing.spawn(async move { store.fire(&fire).await.unwrap() });
    }
    let fires = racing.join_all().await;
    let fired: Vec<_> = fires
        .iter()
        .filter_map(|outcome| match outcome {
            FireOutcome::Fired(job) => Some(job.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(fired.len(), 1, "{fires:?}");
    assert!(
        fires
            .iter()
            .all(|o| matches!(o, FireOutcome::Fired(_) | FireOutcome::Taken)),
        "{fires:?}"
    );
    let job = &fired[0];
    assert_eq!(job.lineage.schedule, Some(record.id));
    assert_eq!(
        job.lineage.scheduled_for.map(|t| t.timestamp_micros()),
        Some(at.timestamp_micros())
    );
    assert_eq!(job.submitted_by.as_deref(), Some("ci"));
    let now = store.schedule("every-second").await.unwrap();
    assert_eq!(now.last_job, Some((job.id, Status::Queued)));
    assert_eq!(now.since.timestamp_micros(), at.timestamp_micros());
    let query = rje_domain::ListQuery {
        schedule: Some(record.id),
        ..Default::default()
    };
    assert_eq!(store.list(&query, 0).await.unwrap().total_count, 1);

    // A fire time at or before one handled is never fired: a late
    // process's fire of an earlier time is taken.
    let earlier = fire_of(
        &record,
        at - TimeDelta::seconds(1),
        Some(crate::suite::new_job("echo late")),
    );
    assert_eq!(store.fire(&earlier).await.unwrap(), FireOutcome::Taken);
    // A fire from a reading the schedule moved on from is stale.
    store
        .update_schedule(
            record.id,
            &ScheduleWrite {
                name: "every-second",
                definition: &record.definition,
                host: "local",
                paused: false,
            },
            None,
        )
        .await
        .unwrap();
    let later = at + TimeDelta::seconds(1);
    let stale = fire_of(&record, later, Some(crate::suite::new_job("echo fired")));
    assert_eq!(store.fire(&stale).await.unwrap(), FireOutcome::Stale);
    let fresh = store.schedule("every-second").await.unwrap();
    // A miss is recorded once, and moves the mark on.
    let miss = fire_of(&fresh, later, None);
    assert_eq!(store.fire(&miss).await.unwrap(), FireOutcome::Missed);
    assert_eq!(store.fire(&miss).await.unwrap(), FireOutcome::Taken);
    assert_eq!(
        store
            .schedule("every-second")
            .await
            .unwrap()
            .since
            .timestamp_micros(),
        later.timestamp_micros()
    );
    // A paused schedule fires nothing.
    let paused = store
        .update_schedule(
            record.id,
            &ScheduleWrite {
                name: "every-second",
                definition: &record.definition,
                host: "local",
                paused: true,
            },
            None,
        )
        .await
        .unwrap();
    let fire = fire_of(
        &paused,
        later + TimeDelta::seconds(1),
        Some(crate::suite::new_job("x")),
    );
    assert_eq!(store.fire(&fire).await.unwrap(), FireOutcome::Stale);
    assert!(
        store
            .prune_fires(Utc::now() + TimeDelta::seconds(1))
            .await
            .unwrap()
            >= 2
    );
}

pub async fn a_fire_is_skipped_while_the_schedules_job_is_active(store: Arc<dyn JobStore>) {
    let record = make_schedule(&store, "no-overlap").await;
    let first = Utc::now();
    let mut fire = fire_of(&record, first, Some(crate::suite::new_job("sleep 9")));
    fire.skip_while_active = true;
    let FireOutcome::Fired(job) = store.fire(&fire).await.unwrap() else {
        panic!("nothing active: it fires");
    };
    let second = first + TimeDelta::seconds(1);
    let mut again = fire_of(&record, second, Some(crate::suite::new_job("sleep 9")));
    again.skip_while_active = true;
    assert_eq!(store.fire(&again).await.unwrap(), FireOutcome::Skipped);
    // Overlap `queue`: one job may wait, not two.
    let mut waits = fire_of(
        &record,
        second + TimeDelta::milliseconds(500),
        Some(crate::suite::new_job("sleep 9")),
    );
    waits.skip_while_waiting = true;
    assert_eq!(
        store.fire(&waits).await.unwrap(),
        FireOutcome::Skipped,
        "the first still waits"
    );
    store.cancel(job.id, None).await.unwrap();
    let mut third = fire_of(
        &record,
        second + TimeDelta::seconds(1),
        Some(crate::suite::new_job("sleep 9")),
    );
    third.skip_while_active = true;
    assert!(matches!(
        store.fire(&third).await.unwrap(),
        FireOutcome::Fired(_)
    ));
}

pub async fn serial_jobs_run_one_at_a_time_in_order(store: Arc<dyn JobStore>) {
    let record = make_schedule(&store, "serial").await;
    let at = Utc::now();
    let serial = |n: i64| {
        crate::suite::new_job(&format!("echo {n}")).fired_by(
            record.id,
            at + TimeDelta::seconds(n),
            true,
        )
    };
    let first = store.create(serial(0)).await.unwrap();
    let second = store.create(serial(1)).await.unwrap();
    let free = store
        .create(crate::suite::new_job("echo free"))
        .await
        .unwrap();
    let claimed: Vec<JobId> = store
        .claim(&worker(), 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert!(
        claimed.contains(&first.id) && claimed.contains(&free.id),
        "{claimed:?}"
    );
    assert!(
        !claimed.contains(&second.id),
        "waits for the first: {claimed:?}"
    );
    assert!(store.claim(&worker(), 10, LEASE).await.unwrap().is_empty());
    store
        .finish(first.id, 1, &Outcome::Exited { code: 0 }, None, Utc::now())
        .await
        .unwrap();
    let next = store.claim(&worker(), 10, LEASE).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job.id, second.id);
    assert!(next[0].job.lineage.serial);
}

pub async fn a_failure_that_asks_for_it_runs_again_in_the_same_transaction(
    store: Arc<dyn JobStore>,
) {
    let job = store
        .create(request(
            json!({"command": "exit 3", "retry_on_failure": true, "max_retries": 1}),
        ))
        .await
        .unwrap();
    let (id, attempt) = claim_one(&store, &worker()).await;
    assert_eq!(id, job.id);
    let due = Utc::now() + TimeDelta::seconds(60);
    let finished = store
        .finish(id, attempt, &Outcome::Exited { code: 3 }, None, due)
        .await
        .unwrap();
    let follow_up = finished.follow_up.expect("a retry");
    assert_eq!(finished.job.status, Status::Failed);
    assert_eq!(finished.job.lineage.retries, [follow_up.id]);
    assert_eq!(finished.job.automatic_retry(), Some(follow_up.id));
    assert_eq!(follow_up.status, Status::Queued);
    assert_eq!(follow_up.lineage.retry_of, Some(id));
    assert_eq!(follow_up.lineage.retry_number, 1);
    assert_eq!(follow_up.run_at.timestamp_micros(), due.timestamp_micros());
    assert_eq!(store.get(id).await.unwrap().lineage.retries, [follow_up.id]);
    assert!(
        store.claim(&worker(), 1, LEASE).await.unwrap().is_empty(),
        "not before its backoff"
    );

    // The chain stops at max_retries, and never after a success.
    let last = store
        .create(NewJob::follow_up(&finished.job).expect("one retry left"))
        .await
        .unwrap();
    assert_eq!(last.lineage.retry_number, 1);
    assert!(NewJob::follow_up(&failed_at_retry(&last, 1)).is_none());
    // A job without retry_on_failure never runs again by itself.
    store.create(crate::suite::new_job("exit 1")).await.unwrap();
    let plain = store.claim(&worker(), 10, LEASE).await.unwrap();
    let plain = plain.iter().find(|c| c.job.command == "exit 1").unwrap();
    let done = store
        .finish(
            plain.job.id,
            plain.job.attempts,
            &Outcome::Exited { code: 1 },
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(done.follow_up.is_none());
}

/// `job` as it would end Failed, `number` retries down its chain.
fn failed_at_retry(job: &rje_domain::Job, number: u32) -> rje_domain::Job {
    let mut job = job.clone();
    job.status = Status::Failed;
    job.exit_code = Some(1);
    job.lineage.retry_number = number;
    job
}

pub async fn retention_deletes_finished_jobs_only_a_batch_at_a_time(store: Arc<dyn JobStore>) {
    let mut finished = Vec::new();
    for n in 0..5 {
        store
            .create(crate::suite::new_job(&format!("echo {n}")))
            .await
            .unwrap();
        let (id, attempt) = claim_one(&store, &worker()).await;
        let code = if n % 2 == 0 { 0 } else { 1 };
        store
            .finish(id, attempt, &Outcome::Exited { code }, None, Utc::now())
            .await
            .unwrap();
        finished.push(id);
    }
    store
        .create(crate::suite::new_job("echo running"))
        .await
        .unwrap();
    let (running, _) = claim_one(&store, &worker()).await;
    let queued = store
        .create(crate::suite::new_job("echo queued"))
        .await
        .unwrap();

    // The 2 newest are kept; the cutoff is the 2nd newest's completion.
    let cutoff = store.finished_cutoff(2).await.unwrap().expect("5 > 2");
    assert!(store.finished_cutoff(5).await.unwrap().is_some());
    assert_eq!(store.finished_cutoff(6).await.unwrap(), None);
    let failed_only = PruneFilter {
        before: Utc::now() + TimeDelta::seconds(1),
        statuses: vec![Status::Failed],
    };
    assert_eq!(store.prune_finished(&failed_only, 100).await.unwrap(), 2);
    // Before the cutoff: the two oldest successes, a batch of one at a time.
    assert_eq!(
        store
            .prune_finished(&PruneFilter::before(cutoff), 1)
            .await
            .unwrap(),
        1,
        "a batch"
    );
    assert_eq!(
        store
            .prune_finished(&PruneFilter::before(cutoff), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .prune_finished(&PruneFilter::before(cutoff), 100)
            .await
            .unwrap(),
        0
    );
    let everything = PruneFilter::before(Utc::now() + TimeDelta::seconds(1));
    assert_eq!(store.prune_finished(&everything, 100).await.unwrap(), 1);
    assert_eq!(
        store.get_meta(queued.id).await.unwrap().status,
        Status::Queued
    );
    assert_eq!(
        store.get_meta(running).await.unwrap().status,
        Status::Running
    );
    for id in finished {
        assert!(matches!(store.get(id).await, Err(StoreError::NotFound)));
    }
}

pub async fn a_chore_is_held_by_one_holder_until_it_lapses(store: Arc<dyn JobStore>) {
    let soon = Utc::now() + TimeDelta::milliseconds(300);
    assert!(store.hold_chore("retention", "a", soon).await.unwrap());
    assert!(!store.hold_chore("retention", "b", soon).await.unwrap());
    assert!(
        store.hold_chore("retention", "a", soon).await.unwrap(),
        "renewed"
    );
    assert!(
        store.hold_chore("other", "b", soon).await.unwrap(),
        "chores apart"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        store
            .hold_chore("retention", "b", soon + TimeDelta::seconds(60))
            .await
            .unwrap(),
        "lapsed"
    );
    assert!(!store.hold_chore("retention", "a", soon).await.unwrap());
    // Let go, it is the next holder's at once; another's release is a
    // no-op.
    store.release_chore("retention", "a").await.unwrap();
    assert!(!store.hold_chore("retention", "a", soon).await.unwrap());
    store.release_chore("retention", "b").await.unwrap();
    assert!(store.hold_chore("retention", "a", soon).await.unwrap());
}
