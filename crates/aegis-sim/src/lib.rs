//! Simulated ESP32 devices speaking the Aegis protocol.
//!
//! - [`model`]: one device's flash (OTA slots, otadata) and bootloader, as ESP-IDF does them;
//!   synchronous and persistent, no networking.
//!
//! The network side (control endpoint, downloads, mDNS announcements, faults, the fleet runner)
//! is built on top of the model.

#![forbid(unsafe_code)]

pub mod announce;
pub mod faults;
pub mod model;
pub mod timing;
