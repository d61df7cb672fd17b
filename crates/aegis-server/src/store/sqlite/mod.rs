//! The embedded storage backend: one SQLite file (`aegis.db`) in WAL mode.
//!
//! Durability: `synchronous=FULL`, so a transaction is on disk (WAL fsynced) before its commit
//! returns; an acknowledged audit record survives a hard kill or a power cut
//! (docs/reliability.md). Writes go through one connection behind a mutex; reads use a second,
//! read-only connection, so audit queries and exports never wait behind the writer (WAL lets
//! readers and one writer proceed at once). The trait is synchronous: async callers use
//! `spawn_blocking` or the audit writer task.

mod migrations;
mod rows;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};

pub use migrations::LATEST as SCHEMA_VERSION;

use super::{AuditQuery, Store};
use crate::Result;
use crate::audit::AuditRecord;
use crate::devices::{Device, RejectedSighting};
use crate::error::{Error, ErrorKind};
use crate::firmware::FirmwareEntry;
use crate::rollout::{RolloutSummary, Target, TargetState};
use rows::{enum_text, int, json_text};

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Rejected sightings kept (the newest); older ones are pruned on insert.
pub const REJECTED_KEPT: i64 = 1000;

/// Rollout states that are not finished.
const ACTIVE_ROLLOUT: &str = "('planned', 'running', 'paused')";

/// The SQLite [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// A read-only connection to the same file; None for an in-memory database (which a second
    /// connection could not see), where reads share the writer.
    reader: Option<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    /// Refuses a database written by a newer version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let what = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut writer = Connection::open(path).map_err(|e| open_error(&what, &e))?;
        configure_writer(&writer, &what)?;
        migrations::migrate(&mut writer, &what)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(&what, &e))?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: Some(Mutex::new(reader)),
        })
    }

    /// A fresh private in-memory database (tests, dry runs). Nothing survives the value.
    pub fn open_in_memory() -> Result<Self> {
        let what = ":memory:";
        let mut writer = Connection::open_in_memory().map_err(|e| open_error(what, &e))?;
        configure_writer(&writer, what)?;
        migrations::migrate(&mut writer, what)?;
        Ok(Self {
            writer: Mutex::new(writer),
            reader: None,
        })
    }

    fn write(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(reader) => reader.lock().unwrap_or_else(|e| e.into_inner()),
            None => self.write(),
        }
    }

    /// Targets per state name, per rollout.
    fn counts(&self) -> Result<BTreeMap<String, BTreeMap<String, u32>>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(
            "SELECT rollout, state, COUNT(*) FROM targets GROUP BY rollout, state",
        )?;
        let mut counts: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
            ))
        })?;
        for row in rows {
            let (rollout, state, n) = row?;
            counts.entry(rollout).or_default().insert(state, n);
        }
        Ok(counts)
    }
}

fn open_error(what: &str, e: &rusqlite::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        "storage",
        format!(
            "cannot open the database {what}: {e}; check the data directory's path, disk space \
             and permissions"
        ),
    )
}

fn configure_writer(conn: &Connection, what: &str) -> Result<()> {
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if what != ":memory:" && !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::new(
            ErrorKind::Internal,
            "storage",
            format!(
                "the database {what} cannot use write-ahead logging (journal mode is {mode}); \
                 put the data directory on a local file system"
            ),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

fn insert_target(conn: &Connection, rollout: &str, t: &Target) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO targets (rollout, device, position, state, phase, bytes, total, error, \
             from_version, to_version, attempts, started_at, finished_at) \
         VALUES (?1, ?2, (SELECT COALESCE(MAX(position), 0) + 1 FROM targets WHERE rollout = ?1), \
             ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (rollout, device) DO UPDATE SET state = excluded.state, \
             phase = excluded.phase, bytes = excluded.bytes, total = excluded.total, \
             error = excluded.error, from_version = excluded.from_version, \
             to_version = excluded.to_version, attempts = excluded.attempts, \
             started_at = excluded.started_at, finished_at = excluded.finished_at",
    )?;
    stmt.execute(params![
        rollout,
        t.device,
        t.state.as_str(),
        enum_text(&t.phase)?,
        int(t.bytes)?,
        int(t.total)?,
        t.error,
        t.from_version,
        t.to_version,
        t.attempts,
        t.started_at.map(|t| t.0),
        t.finished_at.map(|t| t.0),
    ])
    .map_err(|e| target_error(rollout, e))?;
    Ok(())
}

fn target_error(rollout: &str, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => Error::not_found(
            "rollout_not_found",
            format!("there is no rollout `{rollout}` to add a target to; store the rollout first"),
        ),
        _ => e.into(),
    }
}

fn audit_seq_error(expected: u64, got: u64) -> Error {
    Error::conflict(
        "audit_sequence",
        format!(
            "audit record {got} cannot be appended where record {expected} is due; another \
             writer is appending to the same log, run only one server per database"
        ),
    )
}

impl Store for SqliteStore {
    fn put_device(&self, d: &Device) -> Result<()> {
        let conn = self.write();
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO devices ({}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, ip = excluded.ip, \
                 port = excluded.port, version = excluded.version, project = excluded.project, \
                 chip = excluded.chip, sha = excluded.sha, slot = excluded.slot, \
                 state = excluded.state, proto = excluded.proto, trust_key = excluded.trust_key, \
                 online = excluded.online, first_seen = excluded.first_seen, \
                 last_seen = excluded.last_seen, duplicate = excluded.duplicate",
            rows::DEVICE_COLUMNS
        ))?;
        stmt.execute(params![
            d.id,
            d.hostname,
            d.ip,
            d.port,
            d.version,
            d.project,
            d.chip,
            d.sha,
            d.slot,
            d.state,
            d.proto,
            d.key,
            d.online,
            d.first_seen.0,
            d.last_seen.0,
            d.duplicate,
        ])?;
        Ok(())
    }

    fn device(&self, id: &str) -> Result<Option<Device>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM devices WHERE id = ?1",
            rows::DEVICE_COLUMNS
        ))?;
        Ok(stmt.query_row([id], rows::device).optional()?)
    }

    fn devices(&self) -> Result<Vec<Device>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM devices ORDER BY hostname, id",
            rows::DEVICE_COLUMNS
        ))?;
        let devices = stmt.query_map([], rows::device)?;
        Ok(devices.collect::<rusqlite::Result<_>>()?)
    }

    fn put_rejected(&self, s: &RejectedSighting) -> Result<()> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO rejected_sightings ({}) VALUES (?1, ?2, ?3, ?4, ?5)",
                rows::REJECTED_COLUMNS
            ),
            params![s.at.0, s.instance, s.addr, s.reason, json_text(&s.txt)?],
        )?;
        tx.execute(
            "DELETE FROM rejected_sightings \
             WHERE id <= (SELECT MAX(id) FROM rejected_sightings) - ?1",
            [REJECTED_KEPT],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn rejected(&self, limit: usize) -> Result<Vec<RejectedSighting>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM rejected_sightings ORDER BY at DESC, id DESC LIMIT ?1",
            rows::REJECTED_COLUMNS
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sightings = stmt.query_map([limit], rows::rejected)?;
        Ok(sightings.collect::<rusqlite::Result<_>>()?)
    }

    fn put_firmware(&self, f: &FirmwareEntry) -> Result<bool> {
        let conn = self.write();
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO firmware ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (sha256) DO NOTHING",
            rows::FIRMWARE_COLUMNS
        ))?;
        let inserted = stmt.execute(params![
            f.sha256,
            int(f.size)?,
            f.chip,
            f.project,
            f.version,
            f.idf_version,
            f.secure_version,
            f.filename,
            f.notes,
            f.uploaded_at.0,
        ])?;
        Ok(inserted == 1)
    }

    fn firmware(&self, sha256: &str) -> Result<Option<FirmwareEntry>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM firmware WHERE sha256 = ?1",
            rows::FIRMWARE_COLUMNS
        ))?;
        Ok(stmt.query_row([sha256], rows::firmware).optional()?)
    }

    fn firmware_list(&self) -> Result<Vec<FirmwareEntry>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM firmware ORDER BY uploaded_at DESC, sha256",
            rows::FIRMWARE_COLUMNS
        ))?;
        let entries = stmt.query_map([], rows::firmware)?;
        Ok(entries.collect::<rusqlite::Result<_>>()?)
    }

    fn delete_firmware(&self, sha256: &str) -> Result<bool> {
        let conn = self.write();
        let deleted = conn.execute("DELETE FROM firmware WHERE sha256 = ?1", [sha256])?;
        Ok(deleted > 0)
    }

    fn put_rollout(&self, r: &RolloutSummary) -> Result<()> {
        let conn = self.write();
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO rollouts ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
                 firmware = excluded.firmware, strategy = excluded.strategy, \
                 reason = excluded.reason, created_at = excluded.created_at, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at",
            rows::ROLLOUT_COLUMNS
        ))?;
        stmt.execute(params![
            r.id,
            enum_text(&r.state)?,
            r.firmware,
            json_text(&r.strategy)?,
            r.reason,
            r.created_at.0,
            r.started_at.map(|t| t.0),
            r.finished_at.map(|t| t.0),
        ])?;
        Ok(())
    }

    fn put_target(&self, rollout: &str, target: &Target) -> Result<()> {
        let conn = self.write();
        insert_target(&conn, rollout, target)
    }

    fn put_targets(&self, rollout: &str, targets: &[Target]) -> Result<()> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        for target in targets {
            insert_target(&tx, rollout, target)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn rollout(&self, id: &str) -> Result<Option<(RolloutSummary, Vec<Target>)>> {
        let (summary, targets) = {
            let conn = self.read();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM rollouts WHERE id = ?1",
                rows::ROLLOUT_COLUMNS
            ))?;
            let Some(summary) = stmt.query_row([id], rows::rollout).optional()? else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM targets WHERE rollout = ?1 ORDER BY position",
                rows::TARGET_COLUMNS
            ))?;
            let targets = stmt
                .query_map([id], rows::target)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            (summary, targets)
        };
        let mut summary = summary;
        summary.counts = BTreeMap::new();
        for t in &targets {
            *summary
                .counts
                .entry(t.state.as_str().to_string())
                .or_default() += 1;
        }
        Ok(Some((summary, targets)))
    }

    fn rollouts(&self) -> Result<Vec<RolloutSummary>> {
        let mut summaries: Vec<RolloutSummary> = {
            let conn = self.read();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {} FROM rollouts ORDER BY created_at DESC, id DESC",
                rows::ROLLOUT_COLUMNS
            ))?;
            let rollouts = stmt.query_map([], rows::rollout)?;
            rollouts.collect::<rusqlite::Result<_>>()?
        };
        let mut counts = self.counts()?;
        for s in &mut summaries {
            s.counts = counts.remove(&s.id).unwrap_or_default();
        }
        Ok(summaries)
    }

    fn active_rollouts_using(&self, sha256: &str) -> Result<Vec<String>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id FROM rollouts WHERE firmware = ?1 AND state IN {ACTIVE_ROLLOUT} \
             ORDER BY created_at, id"
        ))?;
        let ids = stmt.query_map([sha256], |row| row.get(0))?;
        Ok(ids.collect::<rusqlite::Result<_>>()?)
    }

    fn targets_in_states(&self, states: &[TargetState]) -> Result<Vec<(String, Target)>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; states.len()].join(", ");
        let columns = rows::TARGET_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let conn = self.read();
        let mut stmt = conn.prepare(&format!(
            "SELECT t.rollout, {columns} FROM targets t JOIN rollouts r ON r.id = t.rollout \
             WHERE r.state IN {ACTIVE_ROLLOUT} AND t.state IN ({placeholders}) \
             ORDER BY r.created_at, r.id, t.position"
        ))?;
        let params = states.iter().map(|s| s.as_str());
        let found = stmt.query_map(params_from_iter(params), |row| {
            let rollout: String = row.get(0)?;
            // The target columns follow the rollout id.
            let target = rows::target_at(row, 1)?;
            Ok((rollout, target))
        })?;
        Ok(found.collect::<rusqlite::Result<_>>()?)
    }

    fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let last: Option<i64> = tx.query_row("SELECT MAX(seq) FROM audit", [], |row| row.get(0))?;
        let expected = last.and_then(|s| u64::try_from(s).ok()).unwrap_or(0) + 1;
        if first.seq != expected {
            return Err(audit_seq_error(expected, first.seq));
        }
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO audit ({}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                rows::AUDIT_COLUMNS
            ))?;
            for (i, r) in records.iter().enumerate() {
                let expected = first.seq + i as u64;
                if r.seq != expected {
                    return Err(audit_seq_error(expected, r.seq));
                }
                stmt.execute(params![
                    int(r.seq)?,
                    r.at.0,
                    r.kind,
                    r.rollout,
                    r.device,
                    r.firmware,
                    r.from_version,
                    r.to_version,
                    r.outcome,
                    r.bytes.map(int).transpose()?,
                    r.error,
                    r.started_at.map(|t| t.0),
                    r.ended_at.map(|t| t.0),
                    json_text(&r.detail)?,
                    r.hash,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn last_audit(&self) -> Result<Option<AuditRecord>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM audit ORDER BY seq DESC LIMIT 1",
            rows::AUDIT_COLUMNS
        ))?;
        Ok(stmt.query_row([], rows::audit).optional()?)
    }

    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut text = |cond: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                conditions.push(cond);
                values.push(Value::Text(v.clone()));
            }
        };
        text("device = ?", &q.device);
        text("rollout = ?", &q.rollout);
        text("outcome = ?", &q.outcome);
        text("kind = ?", &q.kind);
        if let Some(since) = q.since {
            conditions.push("at >= ?");
            values.push(Value::Integer(since.0));
        }
        if let Some(until) = q.until {
            conditions.push("at < ?");
            values.push(Value::Integer(until.0));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        // With a limit: the newest `limit` matches, returned oldest first.
        let order = match q.limit {
            Some(limit) => {
                values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
                "ORDER BY seq DESC LIMIT ?"
            }
            None => "ORDER BY seq",
        };
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM audit {filter} {order}",
            rows::AUDIT_COLUMNS
        ))?;
        let mut records = stmt
            .query_map(params_from_iter(values), rows::audit)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if q.limit.is_some() {
            records.reverse();
        }
        Ok(records)
    }

    fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let end = from.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX));
        let conn = self.read();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM audit WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
            rows::AUDIT_COLUMNS
        ))?;
        let records = stmt.query_map([from, end], rows::audit)?;
        Ok(records.collect::<rusqlite::Result<_>>()?)
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        let conn = self.read();
        let mut stmt = conn.prepare_cached("SELECT value FROM settings WHERE name = ?1")?;
        Ok(stmt.query_row([key], |row| row.get(0)).optional()?)
    }

    fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let conn = self.write();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        stmt.execute([key, value])?;
        Ok(())
    }
}
