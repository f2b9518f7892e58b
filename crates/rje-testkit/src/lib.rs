//! Test support shared by rje's test suites: real services on loopback.

pub mod packages;
pub mod postgres;
pub mod redis;
pub mod sshd;

pub use postgres::TestSchema;
pub use redis::OwnRedis;
pub use sshd::TestSshd;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}
