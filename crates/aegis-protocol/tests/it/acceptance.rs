//! Every row of PROTOCOL.md's reply table, with the exact status and code, and the check order.

use aegis_protocol::{
    Chip, DeviceState, ErrorBody, Nonce, Rejection, SigningKey, Trigger, check_body,
    check_image_chip, check_trigger,
};
use serde_json::{Value, json};

use crate::fixtures::{self, Device};

fn body(t: &Trigger) -> Vec<u8> {
    t.to_body().unwrap().into_bytes()
}

/// Asserts a rejection's status and code, and that its error body has the protocol's shape.
fn assert_rejected(result: Result<Trigger, Rejection>, status: u16, code: &str) {
    let rejection = result.expect_err("the trigger should be rejected");
    assert_eq!(
        (rejection.status(), rejection.code()),
        (status, code),
        "{rejection}"
    );
    let message = rejection.message();
    assert!(message.ends_with('.') && message.len() > 10, "{message}");
    let json: Value = serde_json::from_str(&rejection.error_body().to_json()).unwrap();
    assert_eq!(json, json!({"error": {"code": code, "message": message}}));
    let parsed: ErrorBody = serde_json::from_value(json).unwrap();
    assert_eq!(parsed.error.code, code);
}

fn signed_json() -> Value {
    serde_json::to_value(fixtures::signed_trigger()).unwrap()
}

fn with(mut v: Value, field: &str, value: Value) -> Vec<u8> {
    v[field] = value;
    serde_json::to_vec(&v).unwrap()
}

fn without(mut v: Value, field: &str) -> Vec<u8> {
    v.as_object_mut().unwrap().remove(field);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn accepted_signed() {
    let device = Device::trusting();
    let t = check_body(&body(&fixtures::signed_trigger()), &device.view()).unwrap();
    assert_eq!(t, fixtures::signed_trigger());
}

#[test]
fn accepted_unsigned_without_a_trusted_key() {
    let device = Device::open();
    let mut t = fixtures::trigger();
    t.nonce = None;
    assert!(check_body(&body(&t), &device.view()).is_ok());
    // With the current nonce too.
    assert!(check_body(&body(&fixtures::trigger()), &device.view()).is_ok());
}

#[test]
fn bad_request_400() {
    let d = Device::trusting();
    let check = |b: &[u8]| check_body(b, &d.view());
    assert_rejected(check(b"{not json"), 400, "malformed_json");
    assert_rejected(check(b""), 400, "malformed_json");
    assert_rejected(check(b"[1,2]"), 400, "malformed_json");
    assert_rejected(check(&[0xff, 0xfe]), 400, "malformed_json");
    for field in ["url", "hash", "version", "size", "deployment"] {
        assert_rejected(check(&without(signed_json(), field)), 400, "missing_field");
        assert_rejected(
            check(&with(signed_json(), field, Value::Null)),
            400,
            "missing_field",
        );
    }
    assert_rejected(
        check(&without(signed_json(), "nonce")),
        400,
        "missing_field",
    );
    assert_rejected(
        check(&with(signed_json(), "hash", json!("abc"))),
        400,
        "bad_hex",
    );
    assert_rejected(
        check(&with(signed_json(), "hash", json!("X".repeat(64)))),
        400,
        "bad_hex",
    );
    assert_rejected(
        check(&with(signed_json(), "hash", json!("A".repeat(64)))),
        400,
        "bad_hex",
    );
    assert_rejected(
        check(&with(signed_json(), "sig", json!("00"))),
        400,
        "bad_hex",
    );
    assert_rejected(
        check(&with(signed_json(), "nonce", json!("0".repeat(31)))),
        400,
        "bad_hex",
    );
    assert_rejected(
        check(&with(signed_json(), "size", json!(0))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "size", json!(-1))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "size", json!(1.5))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "size", json!("10"))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "deployment", json!("d".repeat(65)))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "deployment", json!(""))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "version", json!("2.0.0\nrollout"))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "url", json!("ftp://x"))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "allow_downgrade", json!("yes"))),
        400,
        "invalid_field",
    );
    assert_rejected(
        check(&with(signed_json(), "url", json!(5))),
        400,
        "invalid_field",
    );
}

#[test]
fn body_larger_than_4_kib_is_400() {
    let d = Device::trusting();
    let padded = with(signed_json(), "padding", json!("x".repeat(4096)));
    assert!(padded.len() > 4096);
    assert_rejected(check_body(&padded, &d.view()), 400, "body_too_large");
    // Exactly 4096 bytes is fine (unknown fields are ignored).
    let mut v = signed_json();
    let base = serde_json::to_vec(&v).unwrap().len();
    v["padding"] = json!("x".repeat(4096 - base - r#","padding":"""#.len()));
    let exact = serde_json::to_vec(&v).unwrap();
    assert_eq!(exact.len(), 4096);
    assert!(check_body(&exact, &d.view()).is_ok());
}

#[test]
fn unauthorized_401() {
    let d = Device::trusting();
    let mut unsigned = fixtures::trigger();
    assert_rejected(
        check_body(&body(&unsigned), &d.view()),
        401,
        "signature_missing",
    );

    unsigned
        .sign(&fixtures::device_id(), &SigningKey::generate())
        .unwrap();
    assert_rejected(
        check_body(&body(&unsigned), &d.view()),
        401,
        "signature_invalid",
    );

    let mut tampered = fixtures::signed_trigger();
    tampered.size += 1;
    assert_rejected(
        check_body(&body(&tampered), &d.view()),
        401,
        "signature_invalid",
    );

    // A signature for another device does not verify on this one.
    let mut other = fixtures::trigger();
    other
        .sign(&"240ac4000000".parse().unwrap(), &fixtures::key())
        .unwrap();
    assert_rejected(
        check_body(&body(&other), &d.view()),
        401,
        "signature_invalid",
    );

    // Well-formed hex that is no P-256 signature at all.
    let impossible = with(signed_json(), "sig", json!("f".repeat(128)));
    assert_rejected(check_body(&impossible, &d.view()), 401, "signature_invalid");
}

#[test]
fn conflict_409() {
    let mut d = Device::trusting();
    d.state = DeviceState::Updating;
    assert_rejected(
        check_body(&body(&fixtures::signed_trigger()), &d.view()),
        409,
        "busy",
    );
    d.state = DeviceState::PendingVerify;
    assert_rejected(
        check_body(&body(&fixtures::signed_trigger()), &d.view()),
        409,
        "pending_verify",
    );
}

#[test]
fn precondition_failed_412() {
    let mut d = Device::trusting();
    // Unknown: the device handed out another nonce.
    let mut t = fixtures::trigger();
    t.nonce = Some(Nonce::random());
    t.sign(&d.id, &fixtures::key()).unwrap();
    assert_rejected(check_body(&body(&t), &d.view()), 412, "nonce_unknown");

    // Reused: the first trigger is accepted, the device rotates its nonce, the replay fails.
    let first = body(&fixtures::signed_trigger());
    assert!(check_body(&first, &d.view()).is_ok());
    d.nonce = Some(Nonce::random());
    assert_rejected(check_body(&first, &d.view()), 412, "nonce_unknown");
    d.nonce = None;
    assert_rejected(check_body(&first, &d.view()), 412, "nonce_unknown");

    // A device without a key still checks a nonce that is sent.
    let mut open = Device::open();
    open.nonce = Some(Nonce::random());
    assert_rejected(
        check_body(&body(&fixtures::trigger()), &open.view()),
        412,
        "nonce_unknown",
    );
}

#[test]
fn too_large_413() {
    let mut d = Device::trusting();
    d.slot_size = 1_048_575;
    assert_rejected(
        check_body(&body(&fixtures::signed_trigger()), &d.view()),
        413,
        "too_large",
    );
    d.slot_size = 1_048_576;
    assert!(check_body(&body(&fixtures::signed_trigger()), &d.view()).is_ok());
}

#[test]
fn unprocessable_422() {
    let mut d = Device::trusting();
    d.version = "2.1.0".into();
    assert_rejected(
        check_body(&body(&fixtures::signed_trigger()), &d.view()),
        422,
        "downgrade",
    );
    let mut allowed = fixtures::trigger();
    allowed.allow_downgrade = true;
    allowed.sign(&d.id, &fixtures::key()).unwrap();
    assert!(check_body(&body(&allowed), &d.view()).is_ok());
    // Same version re-installs; an unorderable running version never blocks.
    d.version = "2.0.0".into();
    assert!(check_body(&body(&fixtures::signed_trigger()), &d.view()).is_ok());
    d.version = String::new();
    assert!(check_body(&body(&fixtures::signed_trigger()), &d.view()).is_ok());

    assert_eq!(check_image_chip(&Chip::Esp32s3, &Chip::Esp32s3), Ok(()));
    let wrong = check_image_chip(&Chip::Esp32s3, &Chip::Esp32c3).unwrap_err();
    assert_eq!((wrong.status(), wrong.code()), (422, "wrong_chip"));
    assert_rejected(Err(wrong), 422, "wrong_chip");
}

#[test]
fn check_order() {
    // Everything wrong at once: each fix reveals the next check in the documented order.
    let mut d = Device::trusting();
    d.state = DeviceState::Updating;
    d.version = "9.0.0".into();
    d.slot_size = 1;
    d.nonce = Some(Nonce::random());
    let mut t = fixtures::trigger();
    t.sign(&d.id, &SigningKey::generate()).unwrap();

    let check = |t: &Trigger, d: &Device| check_trigger(t, &d.view()).unwrap_err().code();
    assert_eq!(check_body(b"{", &d.view()).unwrap_err().status(), 400);
    assert_eq!(check(&t, &d), "busy");
    d.state = DeviceState::Idle;
    assert_eq!(check(&t, &d), "signature_invalid");
    t.sign(&d.id, &fixtures::key()).unwrap();
    assert_eq!(check(&t, &d), "nonce_unknown");
    d.nonce = Some(fixtures::nonce());
    assert_eq!(check(&t, &d), "too_large");
    d.slot_size = u64::MAX;
    assert_eq!(check(&t, &d), "downgrade");
    d.version = "1.0.0".into();
    assert_eq!(check_trigger(&t, &d.view()), Ok(()));
}
