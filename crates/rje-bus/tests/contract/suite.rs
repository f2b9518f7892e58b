use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rje_bus::{Bus, JobEvent, Received, StatusEvent, Subscription};
use rje_domain::{Chunk, JobId, Status, Stream};

/// Instantiates every contract test for one implementation. `$make` is an
/// async fn returning `(Arc<dyn Bus>, guard)`.
#[macro_export]
macro_rules! bus_contract {
    ($make:path) => {
        $crate::bus_contract!(@tests $make;
            job_subscribers_get_their_jobs_events_in_order,
            status_subscribers_see_every_job,
            work_announcements_wake_idle_workers,
            cancel_requests_reach_workers,
            every_subscriber_gets_every_event,
        );
    };
    (@tests $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (bus, _guard) = $make().await;
                $crate::suite::$name(bus).await;
            }
        )+
    };
}

/// Long enough for any loopback hop; a test waiting this long has failed.
const DEADLINE: Duration = Duration::from_secs(10);

async fn next<T: Clone>(subscription: &mut Subscription<T>) -> T {
    match tokio::time::timeout(DEADLINE, subscription.recv()).await {
        Ok(Received::Message(message)) => message,
        Ok(other) => panic!(
            "expected a message, got {:?}",
            std::mem::discriminant(&other)
        ),
        Err(_) => panic!("no message within {DEADLINE:?}"),
    }
}

fn output(job: JobId, seq: i64) -> JobEvent {
    JobEvent::Output {
        job,
        chunks: Arc::from(vec![Chunk {
            seq,
            stream: Stream::Stdout,
            text: format!("line {seq}\n"),
            timestamp: Utc::now(),
            dropped_before: 0,
            source_end: None,
        }]),
    }
}

fn status(job: JobId, status: Status) -> JobEvent {
    JobEvent::Status(StatusEvent {
        job,
        status,
        exit_code: None,
        error: None,
        at: Utc::now(),
        host: Some("local".into()),
        retried_as: None,
    })
}

pub async fn job_subscribers_get_their_jobs_events_in_order(bus: Arc<dyn Bus>) {
    let mine = JobId::new();
    let other = JobId::new();
    let mut subscription = bus.subscribe_job(mine).await.unwrap();
    bus.publish(status(mine, Status::Running)).await;
    bus.publish(output(other, 1)).await;
    for seq in 1..=50 {
        bus.publish(output(mine, seq)).await;
    }
    bus.publish(status(mine, Status::Success)).await;

    match next(&mut subscription).await {
        JobEvent::Status(event) => assert_eq!((event.job, event.status), (mine, Status::Running)),
        other => panic!("expected the Running status first, got {other:?}"),
    }
    for seq in 1..=50 {
        match next(&mut subscription).await {
            JobEvent::Output { job, chunks } => {
                assert_eq!(job, mine);
                assert_eq!(chunks[0].seq, seq);
            }
            other => panic!("expected output {seq}, got {other:?}"),
        }
    }
    match next(&mut subscription).await {
        JobEvent::Status(event) => assert_eq!(event.status, Status::Success),
        other => panic!("expected the final status, got {other:?}"),
    }
}

pub async fn status_subscribers_see_every_job(bus: Arc<dyn Bus>) {
    let mut all = bus.subscribe_status().await.unwrap();
    let (a, b) = (JobId::new(), JobId::new());
    bus.publish(status(a, Status::Running)).await;
    bus.publish(output(a, 1)).await;
    bus.publish(status(b, Status::Failed)).await;
    let first: StatusEvent = next(&mut all).await;
    let second: StatusEvent = next(&mut all).await;
    assert_eq!((first.job, first.status), (a, Status::Running));
    assert_eq!((second.job, second.status), (b, Status::Failed));
}

pub async fn work_announcements_wake_idle_workers(bus: Arc<dyn Bus>) {
    let mut work = bus.subscribe_work().await.unwrap();
    bus.announce_work().await;
    next(&mut work).await;
}

pub async fn cancel_requests_reach_workers(bus: Arc<dyn Bus>) {
    let mut cancels = bus.subscribe_cancels().await.unwrap();
    let job = JobId::new();
    bus.request_cancel(job).await;
    assert_eq!(next(&mut cancels).await, job);
}

pub async fn every_subscriber_gets_every_event(bus: Arc<dyn Bus>) {
    let job = JobId::new();
    let mut first = bus.subscribe_job(job).await.unwrap();
    let mut second = bus.subscribe_job(job).await.unwrap();
    bus.publish(output(job, 1)).await;
    for subscription in [&mut first, &mut second] {
        assert!(matches!(next(subscription).await, JobEvent::Output { .. }));
    }
    drop(first);
    bus.publish(output(job, 2)).await;
    assert!(matches!(next(&mut second).await, JobEvent::Output { .. }));
    assert!(bus.ping().await.is_ok());
}
