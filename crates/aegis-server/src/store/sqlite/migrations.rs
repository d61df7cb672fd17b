//! Versioned schema migrations: numbered SQL scripts applied in order, each in its own
//! transaction together with the `schema_version` setting it brings the database to. A
//! database written by a newer build (a version this build does not know) is refused rather
//! than guessed at.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::Result;
use crate::error::{Error, ErrorKind};

/// The setting that records which migrations have been applied.
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Every migration, in order; the version of script `i` is `i + 1`. Append only: a script that
/// has shipped is never edited, a change is a new script.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_initial.sql")];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The one table that exists before any migration: it holds `schema_version`.
const BOOTSTRAP: &str =
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Brings the database up to [`LATEST`]; a no-op when it is there already.
pub(crate) fn migrate(conn: &mut Connection, what: &str) -> Result<()> {
    conn.execute(BOOTSTRAP, [])?;
    loop {
        // IMMEDIATE: take the write lock before reading the version, so that two processes
        // opening the same new database cannot both apply the same script.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = read_version(&tx, what)?;
        if current > LATEST {
            return Err(Error::new(
                ErrorKind::Internal,
                "schema_too_new",
                format!(
                    "the database {what} was written by a newer AegisOTA (schema version \
                     {current}, this build knows up to {LATEST}); upgrade aegis or use another \
                     data directory"
                ),
            ));
        }
        let Some(script) = MIGRATIONS.get(current as usize) else {
            return Ok(());
        };
        let next = current + 1;
        tx.execute_batch(script).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                "migration_failed",
                format!(
                    "upgrading the database {what} to schema version {next} failed: {e}; \
                     the database was left unchanged, restore a backup or report this"
                ),
            )
        })?;
        tx.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (SCHEMA_VERSION_KEY, next.to_string()),
        )?;
        tx.commit()?;
        tracing::info!(database = what, version = next, "applied schema migration");
    }
}

fn read_version(conn: &Connection, what: &str) -> Result<u32> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM settings WHERE name = ?1",
            [SCHEMA_VERSION_KEY],
            |row| row.get(0),
        )
        .optional()?;
    match value {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "schema_version_invalid",
                format!(
                    "the database {what} has an unreadable schema version `{v}`; restore a \
                     backup or use another data directory"
                ),
            )
        }),
    }
}
