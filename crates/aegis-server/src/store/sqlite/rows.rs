//! Conversions between table rows and the domain records: column lists, row readers, and the
//! small encodings the schema uses (enums as their snake_case names, nested values as JSON
//! text, unsigned numbers checked into SQL's signed INTEGER).

use rusqlite::Row;
use rusqlite::types::Type;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::audit::AuditRecord;
use crate::devices::{Device, RejectedSighting};
use crate::error::Error;
use crate::firmware::FirmwareEntry;
use crate::rollout::{RolloutSummary, Target};
use crate::time::Timestamp;

pub(super) const DEVICE_COLUMNS: &str = "id, hostname, ip, port, version, project, chip, sha, \
     slot, state, proto, trust_key, online, first_seen, last_seen, duplicate";

pub(super) fn device(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: row.get(0)?,
        hostname: row.get(1)?,
        ip: row.get(2)?,
        port: row.get(3)?,
        version: row.get(4)?,
        project: row.get(5)?,
        chip: row.get(6)?,
        sha: row.get(7)?,
        slot: row.get(8)?,
        state: row.get(9)?,
        proto: row.get(10)?,
        key: row.get(11)?,
        online: row.get(12)?,
        first_seen: Timestamp(row.get(13)?),
        last_seen: Timestamp(row.get(14)?),
        duplicate: row.get(15)?,
    })
}

pub(super) const REJECTED_COLUMNS: &str = "at, instance, addr, reason, txt";

pub(super) fn rejected(row: &Row<'_>) -> rusqlite::Result<RejectedSighting> {
    Ok(RejectedSighting {
        at: Timestamp(row.get(0)?),
        instance: row.get(1)?,
        addr: row.get(2)?,
        reason: row.get(3)?,
        txt: json_column(row, 4)?,
    })
}

pub(super) const FIRMWARE_COLUMNS: &str = "sha256, size, chip, project, version, idf_version, \
     secure_version, filename, notes, uploaded_at";

pub(super) fn firmware(row: &Row<'_>) -> rusqlite::Result<FirmwareEntry> {
    Ok(FirmwareEntry {
        sha256: row.get(0)?,
        size: uint(row, 1)?,
        chip: row.get(2)?,
        project: row.get(3)?,
        version: row.get(4)?,
        idf_version: row.get(5)?,
        secure_version: row.get(6)?,
        filename: row.get(7)?,
        notes: row.get(8)?,
        uploaded_at: Timestamp(row.get(9)?),
    })
}

pub(super) const ROLLOUT_COLUMNS: &str =
    "id, state, firmware, strategy, reason, created_at, started_at, finished_at";

/// A rollout row; `counts` is left empty for the caller to fill from the targets.
pub(super) fn rollout(row: &Row<'_>) -> rusqlite::Result<RolloutSummary> {
    Ok(RolloutSummary {
        id: row.get(0)?,
        state: enum_column(row, 1)?,
        firmware: row.get(2)?,
        strategy: json_column(row, 3)?,
        reason: row.get(4)?,
        created_at: Timestamp(row.get(5)?),
        started_at: row.get::<_, Option<i64>>(6)?.map(Timestamp),
        finished_at: row.get::<_, Option<i64>>(7)?.map(Timestamp),
        counts: Default::default(),
    })
}

pub(super) const TARGET_COLUMNS: &str = "device, state, phase, bytes, total, error, \
     from_version, to_version, attempts, started_at, finished_at";

/// A target whose columns ([`TARGET_COLUMNS`]) start at index `at` of the row.
pub(super) fn target_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Target> {
    Ok(Target {
        device: row.get(at)?,
        state: enum_column(row, at + 1)?,
        phase: enum_column(row, at + 2)?,
        bytes: uint(row, at + 3)?,
        total: uint(row, at + 4)?,
        error: row.get(at + 5)?,
        from_version: row.get(at + 6)?,
        to_version: row.get(at + 7)?,
        attempts: row.get(at + 8)?,
        started_at: row.get::<_, Option<i64>>(at + 9)?.map(Timestamp),
        finished_at: row.get::<_, Option<i64>>(at + 10)?.map(Timestamp),
    })
}

pub(super) fn target(row: &Row<'_>) -> rusqlite::Result<Target> {
    target_at(row, 0)
}

pub(super) const AUDIT_COLUMNS: &str = "seq, at, kind, rollout, device, firmware, from_version, \
     to_version, outcome, bytes, error, started_at, ended_at, detail, hash";

pub(super) fn audit(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let detail: String = row.get(13)?;
    Ok(AuditRecord {
        seq: uint(row, 0)?,
        at: Timestamp(row.get(1)?),
        kind: row.get(2)?,
        rollout: row.get(3)?,
        device: row.get(4)?,
        firmware: row.get(5)?,
        from_version: row.get(6)?,
        to_version: row.get(7)?,
        outcome: row.get(8)?,
        bytes: row
            .get::<_, Option<i64>>(9)?
            .map(|v| to_u64(v, 9))
            .transpose()?,
        error: row.get(10)?,
        started_at: row.get::<_, Option<i64>>(11)?.map(Timestamp),
        ended_at: row.get::<_, Option<i64>>(12)?.map(Timestamp),
        // Text that is not JSON (only possible if the table was edited by hand) is kept as a
        // JSON string, so that verification reports the record instead of failing to read it.
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        hash: row.get(14)?,
    })
}

/// An enum's serde name (`in_progress`), for storing in a TEXT column.
pub(super) fn enum_text<T: Serialize>(value: &T) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(Error::internal(
            "a value could not be encoded for the database; this is a bug, please report it",
        )),
    }
}

pub(super) fn json_text<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Error::internal(format!(
            "a value could not be encoded for the database: {e}; this is a bug, please report it"
        ))
    })
}

/// An unsigned count as SQL INTEGER (signed 64-bit).
pub(super) fn int(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::bad_request(
            "number_too_large",
            format!("the number {value} is too large to store; values up to 2^63-1 are accepted"),
        )
    })
}

fn enum_column<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_value(serde_json::Value::String(text))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn json_column<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// An INTEGER column holding an unsigned value.
pub(super) fn uint(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    to_u64(row.get(idx)?, idx)
}

fn to_u64(value: i64, idx: usize) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, value))
}
