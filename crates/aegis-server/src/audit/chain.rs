//! The hash chain. Each record's `hash` is
//! `hex(SHA-256(prev_hash_hex || canonical_json(record without hash)))`, where `prev_hash_hex`
//! is the previous record's `hash` (64 lower-case hex ASCII bytes) or [`GENESIS`] for record 1.
//!
//! The canonical JSON is exact so that any script can recompute it (docs/reliability.md):
//! a compact JSON object (no whitespace) of every field except `hash`, with the keys of every
//! object, nested ones included, in ascending code-point order; timestamps (`at`,
//! `started_at`, `ended_at`) as integer milliseconds since the Unix epoch; absent values as
//! `null`; strings escaped as JSON requires (`"`, `\`, control characters; `\n` style escapes
//! where they exist, `\u00xx` lower-case otherwise) with other characters written as UTF-8.
//! This is what Python's `json.dumps(obj, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)` produces for integer-valued data.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::AuditRecord;

/// The `prev_hash` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical JSON of a record, without its `hash`.
pub fn canonical_json(r: &AuditRecord) -> String {
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let mut fields = Map::new();
    fields.insert("seq".into(), Value::from(r.seq));
    fields.insert("at".into(), Value::from(r.at.0));
    fields.insert("kind".into(), Value::String(r.kind.clone()));
    fields.insert("rollout".into(), text(&r.rollout));
    fields.insert("device".into(), text(&r.device));
    fields.insert("firmware".into(), text(&r.firmware));
    fields.insert("from_version".into(), text(&r.from_version));
    fields.insert("to_version".into(), text(&r.to_version));
    fields.insert("outcome".into(), text(&r.outcome));
    fields.insert("bytes".into(), r.bytes.map_or(Value::Null, Value::from));
    fields.insert("error".into(), text(&r.error));
    fields.insert(
        "started_at".into(),
        r.started_at.map_or(Value::Null, |t| Value::from(t.0)),
    );
    fields.insert(
        "ended_at".into(),
        r.ended_at.map_or(Value::Null, |t| Value::from(t.0)),
    );
    fields.insert("detail".into(), r.detail.clone());
    let mut out = String::with_capacity(256);
    write_canonical(&Value::Object(fields), &mut out);
    out
}

/// The hash a record must carry after `prev_hash`.
pub fn record_hash(prev_hash: &str, r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical_json(r).as_bytes());
    hex::encode(h.finalize())
}

/// Writes `v` compactly with object keys sorted, whatever order the map type keeps.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        // null, booleans and numbers have one compact form each.
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn record() -> AuditRecord {
        AuditRecord {
            seq: 1,
            at: Timestamp(1_700_000_000_123),
            kind: "attempt".into(),
            rollout: Some("r1".into()),
            device: Some("aabbccddeeff".into()),
            firmware: None,
            from_version: Some("1.0".into()),
            to_version: Some("1.1".into()),
            outcome: Some("succeeded".into()),
            bytes: Some(1024),
            error: Some("tab\there \"quoted\" \u{1} é".into()),
            started_at: Some(Timestamp(5)),
            ended_at: None,
            detail: serde_json::json!({"z": 1, "a": {"y": [true, null], "b": "x"}}),
            hash: "ignored".into(),
        }
    }

    #[test]
    fn canonical_form_is_sorted_compact_and_excludes_the_hash() {
        assert_eq!(
            canonical_json(&record()),
            concat!(
                r#"{"at":1700000000123,"bytes":1024,"detail":{"a":{"b":"x","y":[true,null]},"z":1},"#,
                r#""device":"aabbccddeeff","ended_at":null,"#,
                r#""error":"tab\there \"quoted\" \u0001 é","firmware":null,"from_version":"1.0","#,
                r#""kind":"attempt","outcome":"succeeded","rollout":"r1","seq":1,"started_at":5,"#,
                r#""to_version":"1.1"}"#
            )
        );
    }

    #[test]
    fn hash_covers_the_previous_hash_and_every_field() {
        let r = record();
        let h = record_hash(GENESIS, &r);
        assert_eq!(h.len(), 64);
        assert_ne!(record_hash(&h, &r), h);
        let mut edited = r.clone();
        edited.bytes = Some(1025);
        assert_ne!(record_hash(GENESIS, &edited), h);
        let mut rehashed = r;
        rehashed.hash = "something else".into();
        assert_eq!(record_hash(GENESIS, &rehashed), h);
    }
}
