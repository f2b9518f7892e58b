//! The Redis bus survives Redis going away: subscribers are told to re-read
//! the store when it returns, and messages flow again.

use std::time::Duration;

use rje_bus::{Bus, JobEvent, Received, RedisBus};
use rje_domain::JobId;
use rje_testkit::{OwnRedis, free_port};

async fn next(subscription: &mut rje_bus::Subscription<JobEvent>) -> Received<JobEvent> {
    tokio::time::timeout(Duration::from_secs(30), subscription.recv())
        .await
        .expect("a message in time")
}

#[tokio::test]
async fn a_redis_restart_resyncs_subscribers_and_delivery_resumes() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let publisher = RedisBus::connect(&redis.url(), "restart").await.unwrap();
    let subscriber = RedisBus::connect(&redis.url(), "restart").await.unwrap();
    let job = JobId::new();
    let mut events = subscriber.subscribe_job(job).await.unwrap();

    drop(redis);
    // Published while Redis is away: lost to the other process.
    publisher.publish(JobEvent::Resync { job }).await;
    assert!(publisher.ping().await.is_err());

    let _redis = OwnRedis::start(port);
    // The subscriber reconnects and tells its subscribers to re-read.
    assert_eq!(
        next(&mut events).await,
        Received::Message(JobEvent::Resync { job })
    );

    // And messages flow again, once the publisher is back too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        publisher
            .publish(JobEvent::Output {
                job,
                chunks: std::sync::Arc::from(Vec::new()),
            })
            .await;
        match tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
            Ok(Received::Message(JobEvent::Output { .. })) => break,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "delivery never resumed"
            ),
        }
    }
    assert!(subscriber.ping().await.is_ok());
}
