//! The audit trail: an append-only log of every deployment attempt and every state transition,
//! each record hash-chained to the previous one so that tampering is detectable.

mod types;

pub use types::AuditRecord;
