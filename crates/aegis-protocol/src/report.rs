//! Progress reports a device POSTs to the trigger's `report` URL.
//!
//! Reports are optional and the server never depends on them (PROTOCOL.md section 5), but when
//! one arrives it must be well-formed: [`Report::validate`] enforces that a `booted` report
//! carries the running `ver` and `sha256`, and that `bytes` does not exceed a known `total`.

use serde::{Deserialize, Serialize};

use crate::MAX_DEPLOYMENT_CHARS;
use crate::ids::{DeviceId, Sha256Hex};

/// How far an update got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Pulling the image (reported at most every 64 KiB or 1 s).
    Downloading,
    /// Checking length, SHA-256 and the image header.
    Verifying,
    /// About to reboot into the new slot.
    Rebooting,
    /// Running the new image and marked valid.
    Booted,
    /// Gave up; still running the old image.
    Failed,
    /// Came back on the previous image after the new one failed to confirm.
    RolledBack,
}

impl Phase {
    /// Whether the attempt is over in this phase.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Booted | Phase::Failed | Phase::RolledBack)
    }
}

/// Why a report is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The body is not a report.
    #[error("the report is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// `deployment` is empty or longer than 64 characters.
    #[error("the report's deployment id must be 1 to 64 characters")]
    Deployment,
    /// A `booted` report lacks `ver` or `sha256`.
    #[error("a booted report must carry the running ver and sha256")]
    BootedWithoutImage,
    /// `bytes` is larger than `total`.
    #[error("the report says {bytes} bytes of {total}")]
    BytesPastTotal {
        /// Bytes received.
        bytes: u64,
        /// Image size.
        total: u64,
    },
}

/// `POST <report>` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Device id.
    pub id: DeviceId,
    /// The trigger's deployment id.
    pub deployment: String,
    /// Phase reached.
    pub phase: Phase,
    /// Bytes received so far.
    #[serde(default)]
    pub bytes: u64,
    /// Image size (0 when unknown).
    #[serde(default)]
    pub total: u64,
    /// Running version (required for `booted`).
    #[serde(default)]
    pub ver: Option<String>,
    /// SHA-256 of the running image (required for `booted`).
    #[serde(default)]
    pub sha256: Option<Sha256Hex>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl Report {
    /// Parses and validates a report body.
    pub fn from_json(body: &[u8]) -> Result<Report, ReportError> {
        let report: Report =
            serde_json::from_slice(body).map_err(|e| ReportError::Json(e.to_string()))?;
        report.validate()?;
        Ok(report)
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<String, ReportError> {
        serde_json::to_string(self).map_err(|e| ReportError::Json(e.to_string()))
    }

    /// Checks the rules beyond the field types.
    pub fn validate(&self) -> Result<(), ReportError> {
        let chars = self.deployment.chars().count();
        if chars == 0 || chars > MAX_DEPLOYMENT_CHARS {
            return Err(ReportError::Deployment);
        }
        if self.phase == Phase::Booted && (self.ver.is_none() || self.sha256.is_none()) {
            return Err(ReportError::BootedWithoutImage);
        }
        if self.total > 0 && self.bytes > self.total {
            return Err(ReportError::BytesPastTotal {
                bytes: self.bytes,
                total: self.total,
            });
        }
        Ok(())
    }
}
