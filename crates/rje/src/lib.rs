//! The `rje` binary's wiring: configuration, and the server that puts the
//! store, the bus, the worker and the API together.

pub mod bench_ssh;
pub mod config;
pub mod error;
pub mod hosts;
pub mod http;
pub mod local_tokens;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod store;

pub use config::Settings;
pub use error::ServerError;
pub use server::RunningServer;
