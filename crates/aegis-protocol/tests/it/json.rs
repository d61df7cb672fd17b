//! `/info`, reports and error bodies: JSON field names and round trips.

use aegis_protocol::{
    Accepted, Chip, DeviceState, ErrorBody, Info, LastAttempt, Nonce, Phase, Report, ReportError,
    Sha256Hex, Slot,
};
use serde_json::{Value, json};

use crate::fixtures;

fn info() -> Info {
    Info {
        id: fixtures::device_id(),
        ver: "1.0.0".into(),
        proj: "demo".into(),
        chip: Chip::Esp32c3,
        host: "aegis-3456".into(),
        ip: "10.0.0.7".parse().unwrap(),
        sha256: Sha256Hex::digest(b"running"),
        slot: Slot::Factory,
        state: DeviceState::Idle,
        secure_version: 0,
        slot_size: 0x18_0000,
        nonce: Nonce::random(),
        last: None,
    }
}

#[test]
fn info_round_trip_and_names() {
    let mut i = info();
    let v: Value = serde_json::to_value(&i).unwrap();
    assert_eq!(v["last"], Value::Null);
    assert_eq!(v["ip"], json!("10.0.0.7"));
    assert_eq!(v["slot"], json!("factory"));
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "chip",
            "host",
            "id",
            "ip",
            "last",
            "nonce",
            "proj",
            "secure_version",
            "sha256",
            "slot",
            "slot_size",
            "state",
            "ver"
        ]
    );
    assert_eq!(Info::from_json(i.to_json().unwrap().as_bytes()).unwrap(), i);
    i.last = Some(LastAttempt {
        deployment: "rollout-0001".into(),
        result: Phase::RolledBack,
        error: Some("new image did not confirm".into()),
    });
    let text = i.to_json().unwrap();
    assert!(text.contains(r#""last":{"deployment":"rollout-0001","result":"rolled_back","error""#));
    assert_eq!(Info::from_json(text.as_bytes()).unwrap(), i);
}

#[test]
fn info_rejects_bad_nonce() {
    let mut v = serde_json::to_value(info()).unwrap();
    v["nonce"] = json!("XYZ");
    assert!(Info::from_json(v.to_string().as_bytes()).is_err());
}

#[test]
fn report_round_trip_and_rules() {
    let booted = Report {
        id: fixtures::device_id(),
        deployment: "rollout-0001".into(),
        phase: Phase::Booted,
        bytes: 1024,
        total: 1024,
        ver: Some("2.0.0".into()),
        sha256: Some(Sha256Hex::digest(b"new")),
        error: None,
    };
    let text = booted.to_json().unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for key in [
        "id",
        "deployment",
        "phase",
        "bytes",
        "total",
        "ver",
        "sha256",
        "error",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(Report::from_json(text.as_bytes()).unwrap(), booted);

    let mut no_sha = booted.clone();
    no_sha.sha256 = None;
    assert_eq!(no_sha.validate(), Err(ReportError::BootedWithoutImage));
    let mut past = booted.clone();
    past.phase = Phase::Downloading;
    past.bytes = 2048;
    assert!(matches!(
        past.validate(),
        Err(ReportError::BytesPastTotal { .. })
    ));
    let minimal = json!({"id": fixtures::DEVICE_ID, "deployment": "d", "phase": "failed", "error": "bad digest"});
    let r = Report::from_json(minimal.to_string().as_bytes()).unwrap();
    assert_eq!((r.bytes, r.total, r.phase.is_final()), (0, 0, true));
    assert!(matches!(
        Report::from_json(br#"{"id":"x"}"#),
        Err(ReportError::Json(_))
    ));
    for (phase, name) in [
        (Phase::Downloading, "downloading"),
        (Phase::Verifying, "verifying"),
        (Phase::Rebooting, "rebooting"),
        (Phase::Booted, "booted"),
        (Phase::Failed, "failed"),
        (Phase::RolledBack, "rolled_back"),
    ] {
        assert_eq!(serde_json::to_value(phase).unwrap(), json!(name));
    }
}

#[test]
fn error_and_accepted_bodies() {
    let e = ErrorBody::new("too_large", "The image is too large.");
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"error": {"code": "too_large", "message": "The image is too large."}})
    );
    assert_eq!(Accepted::BODY, r#"{"accepted":true}"#);
    assert_eq!(Accepted::STATUS, 202);
}
