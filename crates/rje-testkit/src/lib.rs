//! Test support shared by rje's test suites: real services on loopback.

pub mod sshd;

pub use sshd::TestSshd;
