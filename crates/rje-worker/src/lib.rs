//! The worker: claims queued jobs, runs them with timeout and cancel,
//! batches their output into the store and then onto the bus, renews its
//! leases, reaps the jobs of workers that vanished, and retries jobs whose
//! command could not start.

mod config;
mod executors;
mod pump;
mod run;
mod worker;

pub use config::{ShutdownMode, WorkerConfig};
pub use executors::Executors;
pub use worker::{Worker, settle_left_running};
