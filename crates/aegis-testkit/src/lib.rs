//! Test support shared by the workspace's integration tests.
//!
//! The one rule it enforces: a test that binds addresses or speaks multicast (mDNS) runs inside
//! a private network namespace of its own, so `cargo test` never sends a packet onto the LAN and
//! never sees a real device. See [`netns`].

#![forbid(unsafe_code)]
// A test kit fails tests by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod netns;
pub mod paths;
