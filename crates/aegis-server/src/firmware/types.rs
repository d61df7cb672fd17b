//! A library entry, as stored and as the API returns it.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// One image in the library (`GET /api/v1/firmware`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareEntry {
    /// Full hex SHA-256 of the file; the entry's identity.
    pub sha256: String,
    pub size: u64,
    pub chip: String,
    pub project: String,
    pub version: String,
    pub idf_version: String,
    pub secure_version: u32,
    pub filename: Option<String>,
    pub notes: Option<String>,
    pub uploaded_at: Timestamp,
}
