//! The trigger body: JSON round trips, optional fields, and the signed-message rule.

use aegis_protocol::{Trigger, TriggerError};
use serde_json::{Value, json};

use crate::fixtures;

#[test]
fn json_round_trip() {
    for t in [fixtures::trigger(), fixtures::signed_trigger()] {
        let body = t.to_body().unwrap();
        assert_eq!(Trigger::parse(body.as_bytes()).unwrap(), t);
        assert_eq!(serde_json::from_str::<Trigger>(&body).unwrap(), t);
    }
}

#[test]
fn field_names_are_protocol_names() {
    let v: Value = serde_json::to_value(fixtures::signed_trigger()).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "allow_downgrade",
            "deployment",
            "hash",
            "nonce",
            "report",
            "sig",
            "size",
            "url",
            "version"
        ]
    );
}

#[test]
fn the_original_three_field_handshake_plus_required_fields_parses() {
    let body = json!({
        "url": "http://10.0.0.5:3001/fw/a.bin",
        "hash": "0".repeat(64),
        "version": "2.0.0",
        "size": 1,
        "deployment": "d",
        "something_new": {"ignored": true},
        "report": null,
    });
    let t = Trigger::parse(body.to_string().as_bytes()).unwrap();
    assert!(!t.allow_downgrade);
    assert_eq!((t.report, t.nonce, t.sig), (None, None, None));
}

#[test]
fn duplicate_fields_and_deep_nesting_are_malformed_not_panics() {
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    assert!(matches!(
        Trigger::parse(deep.as_bytes()),
        Err(TriggerError::MalformedJson { .. })
    ));
    let t = Trigger::parse(br#"{"url":"http://a/","url":"http://b/"}"#);
    assert!(t.is_err());
}

#[test]
fn signed_message_rule() {
    let mut t = fixtures::trigger();
    t.allow_downgrade = true;
    let m = t.signed_message(&fixtures::device_id());
    let lines: Vec<&str> = m.split('\n').collect();
    assert_eq!(
        lines,
        [
            "aegis-ota/1",
            "240ac4123456",
            t.url.as_str(),
            t.hash.as_str(),
            "1048576",
            "2.0.0",
            "rollout-0001",
            fixtures::NONCE,
            "1"
        ]
    );
    // The report URL is not part of the message.
    let mut r = t.clone();
    r.report = None;
    assert_eq!(r.signed_message(&fixtures::device_id()), m);
}

#[test]
fn newlines_cannot_shift_fields() {
    let mut t = fixtures::trigger();
    t.version = "2.0.0\nrollout-0001".into();
    assert!(matches!(
        t.validate(),
        Err(TriggerError::InvalidField {
            field: "version",
            ..
        })
    ));
    assert!(t.sign(&fixtures::device_id(), &fixtures::key()).is_err());
    let mut t = fixtures::trigger();
    t.deployment = "a\rb".into();
    assert!(t.to_body().is_err());
}

#[test]
fn deployment_limit_counts_characters() {
    let mut t = fixtures::trigger();
    t.deployment = "é".repeat(64);
    assert!(t.validate().is_ok());
    t.deployment.push('é');
    assert!(t.validate().is_err());
}

#[test]
fn to_body_refuses_over_4_kib() {
    let mut t = fixtures::trigger();
    t.url = format!("http://h/{}", "a".repeat(4096));
    assert!(matches!(
        t.to_body(),
        Err(TriggerError::BodyTooLarge { .. })
    ));
}
