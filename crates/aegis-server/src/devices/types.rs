//! The registry's records, as stored and as the API returns them.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A device the server knows. JSON shape is part of the API (`GET /api/v1/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// 12 lower-case hex digits (the Wi-Fi station MAC).
    pub id: String,
    pub hostname: String,
    /// IPv4, dotted.
    pub ip: String,
    /// The control endpoint's port (mDNS SRV).
    pub port: u16,
    /// Running app version (`ver`; may be empty).
    pub version: String,
    pub project: Option<String>,
    pub chip: Option<String>,
    /// First 16 hex digits of the running image's SHA-256 (TXT `sha`), or the full 64 when
    /// learned from `/info`.
    pub sha: Option<String>,
    pub slot: Option<String>,
    /// `idle`, `updating`, `pending_verify`.
    pub state: Option<String>,
    /// Protocol version the device speaks.
    pub proto: u32,
    /// Fingerprint prefix of the server key the device trusts (TXT `key`); None = accepts
    /// unsigned triggers.
    pub key: Option<String>,
    pub online: bool,
    pub first_seen: Timestamp,
    /// Last time anything (announcement, /info, report) showed the device alive.
    pub last_seen: Timestamp,
    /// Another address announced the same id (ip:port), flagged until it goes away.
    pub duplicate: Option<String>,
}

/// An announcement that could not become a device record (malformed TXT and the like).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedSighting {
    pub at: Timestamp,
    /// mDNS instance name.
    pub instance: String,
    /// Address it came from, if known.
    pub addr: Option<String>,
    /// One sentence: what is wrong with it.
    pub reason: String,
    /// The TXT items as received (bounded).
    pub txt: Vec<(String, String)>,
}
