//! Integration tests of the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod rollout_engine;
mod download;
mod firmware;
mod devices;
mod support;
mod discovery;
