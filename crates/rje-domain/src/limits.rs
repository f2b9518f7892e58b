//! The explicit limits on what a job may ask for.

/// The explicit limits on what a job may ask for. They live in one place so
/// the API, the worker and the docs agree on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command accepted, in bytes.
    pub max_command_bytes: usize,
    /// Shortest timeout, in seconds.
    pub min_timeout_secs: u32,
    /// Longest timeout, in seconds.
    pub max_timeout_secs: u32,
    /// Highest `max_retries` a job may ask for.
    pub max_retries: u32,
    /// Largest `parameters` object, in bytes of JSON.
    pub max_parameters_bytes: usize,
}

impl Limits {
    pub const DEFAULT_TIMEOUT_SECS: u32 = 60;
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_bytes: 64 * 1024,
            min_timeout_secs: 1,
            max_timeout_secs: 7 * 24 * 3600,
            max_retries: 10,
            max_parameters_bytes: 64 * 1024,
        }
    }
}
