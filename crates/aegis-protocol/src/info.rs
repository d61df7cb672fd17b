//! The device's self-description: the `GET /aegis/v1/info` reply.
//!
//! The server reads it to get a fresh [`Nonce`] before signing a trigger, and to confirm which
//! image a device runs. `last` is `null` until the device has attempted an update; its `result`
//! is the last [`Phase`] that attempt reached (`booted` for a success).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::device::{Chip, DeviceState, Slot};
use crate::ids::{DeviceId, Nonce, Sha256Hex};
use crate::report::Phase;

/// `GET /aegis/v1/info` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Stable device id.
    pub id: DeviceId,
    /// Running app version (may be empty).
    pub ver: String,
    /// Project name.
    pub proj: String,
    /// Chip.
    pub chip: Chip,
    /// Hostname.
    pub host: String,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// SHA-256 of the running image file.
    pub sha256: Sha256Hex,
    /// Running partition.
    pub slot: Slot,
    /// OTA state.
    pub state: DeviceState,
    /// The running image's anti-rollback `secure_version`.
    pub secure_version: u32,
    /// Bytes available in the inactive OTA slot.
    pub slot_size: u64,
    /// The current single-use nonce.
    pub nonce: Nonce,
    /// The last update attempt, or `null`.
    #[serde(default)]
    pub last: Option<LastAttempt>,
}

/// The last update attempt a device remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastAttempt {
    /// The deployment id of the attempt.
    pub deployment: String,
    /// The last phase the attempt reached.
    pub result: Phase,
    /// Why it failed, or `null`.
    #[serde(default)]
    pub error: Option<String>,
}

impl Info {
    /// Parses an `/info` reply body.
    pub fn from_json(body: &[u8]) -> Result<Info, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
