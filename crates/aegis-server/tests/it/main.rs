//! Integration tests of the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod api;
mod audit;
mod dashboard;
mod devices;
mod discovery;
mod download;
mod firmware;
mod openapi;
mod posix_device;
mod rollout_e2e;
mod rollout_engine;
mod serve;
mod sse;
mod store;
mod support;
