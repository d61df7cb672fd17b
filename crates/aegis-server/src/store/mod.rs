//! Storage: the [`Store`] trait every backend implements, and the embedded SQLite
//! implementation ([`sqlite::SqliteStore`]). PostgreSQL is the planned second backend, so SQL
//! stays portable and the conformance tests (tests/it/store.rs) run against any `Store`.
//!
//! The trait is synchronous: callers on the async runtime go through `spawn_blocking` (or the
//! audit writer task), never blocking the runtime on disk.

pub mod sqlite;

use crate::Result;
use crate::audit::AuditRecord;
use crate::devices::{Device, RejectedSighting};
use crate::firmware::FirmwareEntry;
use crate::rollout::{RolloutSummary, Target, TargetState};
use crate::time::Timestamp;

/// Filter for audit queries; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub device: Option<String>,
    pub rollout: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub outcome: Option<String>,
    pub kind: Option<String>,
    /// At most this many records, newest last; None = all.
    pub limit: Option<usize>,
}

/// Everything the server persists.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // --- devices ---
    /// Insert or replace a device record (keyed by id).
    fn put_device(&self, device: &Device) -> Result<()>;
    fn device(&self, id: &str) -> Result<Option<Device>>;
    /// All devices, ordered by hostname then id.
    fn devices(&self) -> Result<Vec<Device>>;
    fn put_rejected(&self, sighting: &RejectedSighting) -> Result<()>;
    /// The most recent rejected sightings, newest first.
    fn rejected(&self, limit: usize) -> Result<Vec<RejectedSighting>>;

    // --- firmware ---
    /// Insert an entry; returns false (and changes nothing) if the sha256 already exists.
    fn put_firmware(&self, entry: &FirmwareEntry) -> Result<bool>;
    fn firmware(&self, sha256: &str) -> Result<Option<FirmwareEntry>>;
    /// All entries, newest upload first.
    fn firmware_list(&self) -> Result<Vec<FirmwareEntry>>;
    /// Returns false if there was no such entry.
    fn delete_firmware(&self, sha256: &str) -> Result<bool>;

    // --- rollouts ---
    /// Insert or replace the rollout's own row (not its targets).
    fn put_rollout(&self, rollout: &RolloutSummary) -> Result<()>;
    /// Insert or replace one target of a rollout.
    fn put_target(&self, rollout: &str, target: &Target) -> Result<()>;
    /// Several targets in one transaction.
    fn put_targets(&self, rollout: &str, targets: &[Target]) -> Result<()>;
    fn rollout(&self, id: &str) -> Result<Option<(RolloutSummary, Vec<Target>)>>;
    /// All rollouts, newest first (counts filled from their targets).
    fn rollouts(&self) -> Result<Vec<RolloutSummary>>;
    /// Ids of rollouts that use this firmware and are not finished.
    fn active_rollouts_using(&self, sha256: &str) -> Result<Vec<String>>;
    /// Every (rollout, target) of unfinished rollouts whose state is one of `states`.
    fn targets_in_states(&self, states: &[TargetState]) -> Result<Vec<(String, Target)>>;

    // --- audit ---
    /// Append records atomically (one transaction). Records must carry consecutive `seq`
    /// values following the last stored one, and their chained `hash`.
    fn append_audit(&self, records: &[AuditRecord]) -> Result<()>;
    /// The last stored record (to continue the chain after a restart).
    fn last_audit(&self) -> Result<Option<AuditRecord>>;
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
    /// Records with seq in `[from, from + limit)`, in order (for chain verification).
    fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>>;

    // --- settings (small key/value: schema version, ids) ---
    fn setting(&self, key: &str) -> Result<Option<String>>;
    fn put_setting(&self, key: &str, value: &str) -> Result<()>;
}
