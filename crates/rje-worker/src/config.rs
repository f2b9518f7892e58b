//! How a worker behaves: concurrency, leases, polling and shutdown times.

use std::time::Duration;

/// How a worker behaves. Defaults suit production; tests shorten the times.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once.
    pub concurrency: usize,
    /// The machine's name, as the worker announces itself.
    pub host_name: String,
    /// How long a claim stays valid without renewal. A worker that dies
    /// loses its jobs to the reaper after at most this long.
    pub lease: Duration,
    /// How often leases are renewed (and pending cancels looked up).
    pub renew_every: Duration,
    /// How often expired leases are looked for.
    pub reap_every: Duration,
    /// The slow poll for work that backs up the bus's wake-ups.
    pub poll_every: Duration,
    /// Output kept per stream and job.
    pub max_output_bytes: u64,
    /// First wait before retrying a job whose command could not start.
    pub retry_base: Duration,
    /// Output is written at most this long after it was read...
    pub batch_interval: Duration,
    /// ...or as soon as this much is waiting.
    pub batch_bytes: usize,
    /// How long a line without its newline is held back before it is
    /// written anyway (prompts, progress bars).
    pub partial_line_wait: Duration,
    /// On shutdown, how long running jobs may take to finish before they are
    /// killed.
    pub shutdown_grace: Duration,
    /// What a shutdown does to running jobs.
    pub shutdown_mode: ShutdownMode,
}

/// What a worker does with its running jobs when asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ShutdownMode {
    /// Wait up to the grace for them to finish, then kill them.
    #[default]
    Drain,
    /// Leave jobs that run under this machine's supervisors (durable jobs)
    /// to the next process and stop at once; others drain.
    Detach,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            host_name: "localhost".into(),
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            reap_every: Duration::from_secs(5),
            poll_every: Duration::from_secs(1),
            max_output_bytes: 10 * 1024 * 1024,
            retry_base: Duration::from_secs(30),
            batch_interval: Duration::from_millis(50),
            batch_bytes: 64 * 1024,
            partial_line_wait: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            shutdown_mode: ShutdownMode::Drain,
        }
    }
}
