//! Simulated ESP32 devices speaking the Aegis protocol.
//!
//! - [`model`]: one device's flash (OTA slots, otadata) and bootloader, as ESP-IDF does them;
//!   synchronous and persistent, no networking.
//! - [`node`]: one device at run time ([`node::spawn_node`]): its app, reboots, power cuts;
//!   [`control`] is its HTTP control endpoint and [`updater`] its download → verify → write →
//!   reboot → confirm loop with reports (PROTOCOL.md sections 2 to 5).
//!
//! The network side (control endpoint, downloads, mDNS announcements, faults, the fleet runner)
//! is built on top of the model.

#![forbid(unsafe_code)]

pub mod announce;
pub mod control;
pub mod faults;
pub mod fleet;
pub mod model;
pub mod node;
pub mod timing;
pub mod updater;
