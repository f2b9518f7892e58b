//! The bus contract: every `Bus` implementation passes these unchanged.

mod suite;

mod memory {
    use std::sync::Arc;

    use rje_bus::{Bus, MemoryBus};

    pub async fn bus() -> (Arc<dyn Bus>, ()) {
        (Arc::new(MemoryBus::new()), ())
    }

    crate::bus_contract!(bus);
}

/// Redis, across processes: everything is published through one
/// connection and received through another, as two rje processes would,
/// so nothing passes by the in-process shortcut.
mod redis {
    use std::sync::Arc;

    use async_trait::async_trait;
    use rje_bus::{Bus, BusError, JobEvent, RedisBus, StatusEvent, Subscription};
    use rje_domain::JobId;

    struct TwoProcesses {
        publisher: RedisBus,
        subscriber: RedisBus,
    }

    #[async_trait]
    impl Bus for TwoProcesses {
        async fn ping(&self) -> Result<(), BusError> {
            self.publisher.ping().await?;
            self.subscriber.ping().await
        }
        async fn publish(&self, event: JobEvent) {
            self.publisher.publish(event).await
        }
        async fn subscribe_job(&self, job: JobId) -> Result<Subscription<JobEvent>, BusError> {
            self.subscriber.subscribe_job(job).await
        }
        async fn subscribe_status(&self) -> Result<Subscription<StatusEvent>, BusError> {
            self.subscriber.subscribe_status().await
        }
        async fn announce_work(&self) {
            self.publisher.announce_work().await
        }
        async fn subscribe_work(&self) -> Result<Subscription<()>, BusError> {
            self.subscriber.subscribe_work().await
        }
        async fn request_cancel(&self, job: JobId) {
            self.publisher.request_cancel(job).await
        }
        async fn subscribe_cancels(&self) -> Result<Subscription<JobId>, BusError> {
            self.subscriber.subscribe_cancels().await
        }
    }

    pub fn redis_url() -> String {
        std::env::var("RJE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    pub async fn bus() -> (Arc<dyn Bus>, ()) {
        let url = redis_url();
        // A namespace per test: tests run in parallel on one Redis.
        let namespace = format!("rje-test-{}", uuid::Uuid::new_v4().simple());
        let connect =
            |url: String, namespace: String| async move {
                RedisBus::connect(&url, &namespace).await.unwrap_or_else(|err| {
                panic!(
                    "Redis is needed at {url} ({err}). Start it with `redis-server --daemonize \
                     yes --port 6379`, or point RJE_TEST_REDIS_URL at one."
                )
            })
            };
        let publisher = connect(url.clone(), namespace.clone()).await;
        let subscriber = connect(url, namespace).await;
        (
            Arc::new(TwoProcesses {
                publisher,
                subscriber,
            }),
            (),
        )
    }

    crate::bus_contract!(bus);
}
