//! Chain verification: re-reads the whole log from the store in pages and recomputes every
//! hash. Reports the first record that is missing (a gap in `seq`), out of place, or whose
//! content no longer matches its hash — which covers edited fields, deleted, inserted and
//! reordered records. (Cutting records off the end leaves a valid shorter chain: compare
//! `head` with a value noted earlier to detect that; docs/reliability.md.)

use serde::Serialize;

use super::chain::{GENESIS, record_hash};
use crate::Result;
use crate::store::Store;

/// Records read per store query.
const PAGE: usize = 1000;

/// The outcome of [`verify`] (`GET /api/v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked and found intact (all of them when `first_bad` is None).
    pub records: u64,
    /// The first record that breaks the chain, if any.
    pub first_bad: Option<BadRecord>,
    /// The hash of the last record checked: note it to detect later truncation.
    pub head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    pub seq: u64,
    /// One sentence.
    pub reason: String,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Recomputes the chain over every stored record. Blocking: call it on the blocking pool.
pub fn verify(store: &dyn Store) -> Result<VerifyReport> {
    let Some(last) = store.last_audit()? else {
        return Ok(VerifyReport {
            records: 0,
            first_bad: None,
            head: None,
        });
    };
    let mut expected: u64 = 1;
    let mut prev = GENESIS.to_string();
    let bad = |seq: u64, reason: String, records: u64, prev: &str| VerifyReport {
        records,
        first_bad: Some(BadRecord { seq, reason }),
        head: (records > 0).then(|| prev.to_string()),
    };
    while expected <= last.seq {
        let page = store.audit_range(expected, PAGE)?;
        if page.is_empty() {
            return Ok(bad(
                expected,
                format!(
                    "record {expected} is missing (the log jumps past it); records were deleted"
                ),
                expected - 1,
                &prev,
            ));
        }
        for r in page {
            if r.seq != expected {
                let reason = if r.seq > expected {
                    format!(
                        "record {expected} is missing (the next stored record is {}); records were deleted",
                        r.seq
                    )
                } else {
                    format!("record {} appears where record {expected} is due", r.seq)
                };
                return Ok(bad(expected, reason, expected - 1, &prev));
            }
            if record_hash(&prev, &r) != r.hash {
                return Ok(bad(
                    r.seq,
                    format!(
                        "record {} does not match its hash: it, or its place in the chain, was \
                         altered",
                        r.seq
                    ),
                    expected - 1,
                    &prev,
                ));
            }
            prev = r.hash;
            expected += 1;
        }
    }
    Ok(VerifyReport {
        records: expected - 1,
        first_bad: None,
        head: Some(prev),
    })
}
