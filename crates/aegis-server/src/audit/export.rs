//! The CSV export of audit records: a header row, then one row per record with the same fields
//! as the JSON (timestamps in RFC 3339, `detail` as compact JSON text, absent values as empty
//! fields), quoted per RFC 4180 (CRLF line ends; fields containing a comma, quote, CR or LF are
//! quoted, quotes doubled).

use super::AuditRecord;

/// The header row, in column order.
pub const CSV_COLUMNS: [&str; 15] = [
    "seq",
    "at",
    "kind",
    "rollout",
    "device",
    "firmware",
    "from_version",
    "to_version",
    "outcome",
    "bytes",
    "error",
    "started_at",
    "ended_at",
    "detail",
    "hash",
];

pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::with_capacity(64 + records.len() * 256);
    write_row(&mut out, CSV_COLUMNS.iter().map(|c| (*c).to_string()));
    for r in records {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let time = |t: Option<crate::time::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        write_row(
            &mut out,
            [
                r.seq.to_string(),
                r.at.to_string(),
                r.kind.clone(),
                text(&r.rollout),
                text(&r.device),
                text(&r.firmware),
                text(&r.from_version),
                text(&r.to_version),
                text(&r.outcome),
                r.bytes.map(|b| b.to_string()).unwrap_or_default(),
                text(&r.error),
                time(r.started_at),
                time(r.ended_at),
                r.detail.to_string(),
                r.hash.clone(),
            ],
        );
    }
    out
}

fn write_row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
}
