//! The AegisOTA server.
//!
//! Modules by domain, each owning its data and its tests:
//! - [`discovery`]: mDNS browse → device sightings (one daemon)
//! - [`devices`]: the registry: who exists, online/offline, last seen
//! - [`firmware`]: the content-addressed image library, upload checks, the download endpoint
//! - [`rollout`]: plans and runs deployments: waves, parallelism, thresholds, retries, timeouts
//! - [`audit`]: the append-only, hash-chained attempt/event log
//! - [`store`]: the storage trait and its SQLite implementation
//! - [`web`]: JSON API, server-sent events, dashboard
//!
//! Shared vocabulary: [`time`] (the injected clock and timestamps), [`events`] (the in-process
//! event bus behind SSE), [`error`] (the one error type that reaches users as a sentence).

#![forbid(unsafe_code)]

pub mod audit;
pub mod devices;
pub mod discovery;
pub mod error;
pub mod events;
pub mod firmware;
pub mod keys;
pub mod rollout;
pub mod server;
pub mod store;
pub mod time;
pub mod web;

pub use error::{Error, Result};
