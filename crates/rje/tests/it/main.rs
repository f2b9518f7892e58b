//! rje end to end: the real app on 127.0.0.1:0, spoken to over HTTP and
//! WebSocket, and the real binary where a test needs a process to kill.

mod access;
mod api;
mod browser;
mod cli;
mod connections;
mod dashboard;
mod distributed;
mod durable;
mod durable_ssh;
mod execution;
mod hardening;
mod helpers;
mod idempotency;
mod original_client;
mod output;
mod readme;
mod restart;
mod retention;
mod runs;
mod schedules;
mod security;
mod ssh;
mod surface;
mod websocket;
