//! Test support shared by rje's test suites: real services on loopback.

pub mod packages;
pub mod postgres;
pub mod redis;
pub mod sshd;

pub use postgres::{HeldLock, TestSchema};
pub use redis::OwnRedis;
pub use sshd::TestSshd;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Live processes (not zombies) whose command line is exactly `args`: how
/// a test finds what a job left running.
pub fn processes_running(args: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z');
            (cmdline == wanted && !zombie).then_some(pid)
        })
        .collect()
}
