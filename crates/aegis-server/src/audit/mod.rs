//! The audit trail: an append-only log of every deployment attempt and every state transition,
//! each record hash-chained to the previous one so that tampering is detectable.
//!
//! - [`AuditLog`]: the handle the rest of the server records through; one writer task batches
//!   records into store transactions and publishes each on the event bus once committed.
//! - [`chain`]: the canonical form of a record and its hash (specified in docs/reliability.md).
//! - [`verify()`]: recomputes the chain from the store and names the first bad record.
//! - [`to_csv`]: the CSV export (same fields as the JSON).

pub mod chain;
mod export;
mod log;
mod types;
mod verify;

pub use export::{CSV_COLUMNS, to_csv};
pub use log::{AuditLog, NewRecord, WriterTask};
pub use types::AuditRecord;
pub use verify::{BadRecord, VerifyReport, verify};
