//! Integration tests of the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod audit;
mod rollout_engine;
mod store;
mod download;
mod firmware;
mod devices;
mod support;
mod discovery;
mod api;
mod openapi;
mod posix_device;
mod serve;
mod sse;
mod rollout_e2e;
mod dashboard;
