//! TXT records: round trips, RFC 6763 reading rules and every rejection.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use aegis_protocol::{
    Chip, DeviceState, HexError, KeyId, Sha256Hex, Slot, TxtError, TxtRecord, ValueError,
};

use crate::fixtures;

fn full() -> TxtRecord {
    TxtRecord {
        proj: Some("demo".into()),
        chip: Some(Chip::Esp32s3),
        sha: Some(Sha256Hex::digest(b"image").prefix()),
        slot: Some(Slot::OTA_1),
        state: Some(DeviceState::PendingVerify),
        key: Some(fixtures::key().public_key().key_id()),
        ..TxtRecord::new(
            fixtures::device_id(),
            "1.0.0",
            "aegis-3456",
            Ipv4Addr::new(10, 0, 0, 7),
        )
    }
}

fn pairs(r: &TxtRecord) -> Vec<(String, String)> {
    r.to_pairs().unwrap()
}

fn with(r: &TxtRecord, key: &str, value: &str) -> Vec<(String, String)> {
    let mut p = pairs(r);
    p.retain(|(k, _)| k != key);
    p.push((key.to_owned(), value.to_owned()));
    p
}

fn without(r: &TxtRecord, key: &str) -> Vec<(String, String)> {
    let mut p = pairs(r);
    p.retain(|(k, _)| k != key);
    p
}

#[test]
fn round_trip() {
    let minimal = TxtRecord::new(fixtures::device_id(), "", "h", Ipv4Addr::LOCALHOST);
    for r in [full(), minimal] {
        assert_eq!(TxtRecord::from_pairs(pairs(&r)).unwrap(), r);
        let map: HashMap<String, String> = pairs(&r).into_iter().collect();
        assert_eq!(TxtRecord::from_pairs(&map).unwrap(), r);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<TxtRecord>(&json).unwrap(), r);
    }
}

#[test]
fn emitted_in_protocol_order() {
    let keys: Vec<String> = pairs(&full()).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "id", "ver", "host", "ip", "proto", "proj", "chip", "sha", "slot", "state", "key"
        ]
    );
    assert_eq!(full().wire_size().unwrap(), 159);
}

#[test]
fn reading_rules() {
    let mut p: Vec<(&str, &str)> = vec![
        ("ID", "240ac4123456"),
        ("id", "ffffffffffff"),
        ("ver", "1.0"),
        ("Host", "h"),
        ("ip", "10.0.0.1"),
        ("proto", "2"),
        ("future", "whatever"),
        ("chip", "esp32h4"),
        ("slot", ""),
    ];
    let r = TxtRecord::from_pairs(p.clone()).unwrap();
    assert_eq!(r.id.as_str(), "240ac4123456", "first occurrence wins");
    assert_eq!(r.host, "h");
    assert_eq!(r.proto, 2);
    assert!(!r.speaks_protocol());
    assert_eq!(r.chip, Some(Chip::Other("esp32h4".into())));
    assert_eq!(r.slot, None, "empty optional value is unknown");
    assert_eq!((r.proj, r.sha, r.state, r.key), (None, None, None, None));
    p[5] = ("proto", "1");
    assert!(TxtRecord::from_pairs(p).unwrap().speaks_protocol());
}

#[test]
fn missing_required_keys() {
    for key in ["id", "ver", "host", "ip", "proto"] {
        assert_eq!(
            TxtRecord::from_pairs(without(&full(), key)),
            Err(TxtError::MissingKey {
                key: match key {
                    "id" => "id",
                    "ver" => "ver",
                    "host" => "host",
                    "ip" => "ip",
                    _ => "proto",
                }
            }),
            "{key}"
        );
    }
}

#[test]
fn bad_values() {
    let r = full();
    assert_eq!(
        TxtRecord::from_pairs(with(&r, "id", "240AC4123456")),
        Err(TxtError::InvalidId(HexError::NotLowerHex {
            what: "device id"
        }))
    );
    assert!(matches!(
        TxtRecord::from_pairs(with(&r, "id", "240ac412345")),
        Err(TxtError::InvalidId(HexError::WrongLength { .. }))
    ));
    assert_eq!(
        TxtRecord::from_pairs(with(&r, "host", "")),
        Err(TxtError::EmptyHost)
    );
    assert!(matches!(
        TxtRecord::from_pairs(with(&r, "ip", "10.0.0.256")),
        Err(TxtError::InvalidIp(_))
    ));
    assert!(matches!(
        TxtRecord::from_pairs(with(&r, "ip", "fe80::1")),
        Err(TxtError::InvalidIp(_))
    ));
    for bad in ["", "one", "-1", "+1", "99999999999"] {
        assert!(
            matches!(
                TxtRecord::from_pairs(with(&r, "proto", bad)),
                Err(TxtError::InvalidProto(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        TxtRecord::from_pairs(with(&r, "slot", "ota_16")),
        Err(TxtError::InvalidValue(ValueError::Slot("ota_16".into())))
    );
    assert_eq!(
        TxtRecord::from_pairs(with(&r, "state", "busy")),
        Err(TxtError::InvalidValue(ValueError::State("busy".into())))
    );
    assert_eq!(
        TxtRecord::from_pairs(with(&r, "chip", "ESP32")),
        Err(TxtError::InvalidValue(ValueError::Chip("ESP32".into())))
    );
    assert!(matches!(
        TxtRecord::from_pairs(with(&r, "sha", "abc")),
        Err(TxtError::InvalidHex { key: "sha", .. })
    ));
    assert!(matches!(
        TxtRecord::from_pairs(with(&r, "key", &"0".repeat(64))),
        Err(TxtError::InvalidHex { key: "key", .. })
    ));
}

#[test]
fn size_limits() {
    let r = full();
    // proj=<251 bytes> is exactly 255 bytes; one more is too long.
    let at_limit = with(&r, "proj", &"p".repeat(250));
    assert!(TxtRecord::from_pairs(at_limit).is_ok());
    assert_eq!(
        TxtRecord::from_pairs(with(&r, "proj", &"p".repeat(251))),
        Err(TxtError::ItemTooLong {
            key: "proj".into(),
            len: 256
        })
    );
    let mut long = r.clone();
    long.proj = Some("p".repeat(251));
    assert!(matches!(long.to_pairs(), Err(TxtError::ItemTooLong { .. })));
    // Unknown keys count towards the total.
    let mut p = pairs(&r);
    for i in 0..5 {
        p.push((format!("x{i}"), "v".repeat(250)));
    }
    assert!(matches!(
        TxtRecord::from_pairs(p),
        Err(TxtError::TooLarge { len }) if len > 1300
    ));
}

#[test]
fn key_id_matches_fingerprint_prefix() {
    let public = fixtures::key().public_key();
    let id: KeyId = public.key_id();
    assert!(public.fingerprint().to_hex().starts_with(id.as_str()));
}
