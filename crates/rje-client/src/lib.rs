//! The `rje` client: the commands people run against a server, and
//! `rje bench`. It speaks only the public HTTP and WebSocket API, so it works
//! against any rje server (or the original system, for the original routes).

mod access;
mod api;
pub mod bench;

mod commands;
mod config;
mod error;
mod follow;
mod hosts;
mod present;
mod prune;
mod runs;
mod schedules;

pub use access::{LocalTokens, NoLocalTokens};
pub use commands::ClientCommand;
pub use config::Connection;
pub use error::{ClientError, ExitCode};
