//! End-to-end tests of the `aegis` executable: they run the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod client;
mod crash_recovery;
mod demo;
mod deploy_e2e;
mod harness;
mod inspect;
mod keys;
mod make_image;
mod snapshots;
