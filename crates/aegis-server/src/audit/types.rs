//! One audit record.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// One line of the audit log (`GET /api/v1/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    pub at: Timestamp,
    /// What happened: `attempt` (one device's deployment attempt, with its outcome),
    /// `transition` (a rollout or target changed state), `firmware_added`, `firmware_deleted`,
    /// `rollout_created`, `server_started`, ...
    pub kind: String,
    pub rollout: Option<String>,
    pub device: Option<String>,
    /// Firmware SHA-256.
    pub firmware: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    /// For attempts and target transitions: the (new) state, e.g. `succeeded`.
    pub outcome: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Free-form detail (JSON object), e.g. the previous state of a transition.
    pub detail: serde_json::Value,
    /// Hex SHA-256 of the previous record's `hash` and this record's content.
    pub hash: String,
}
