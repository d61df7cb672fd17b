//! The fixed test vector. Firmware in C checks itself against these exact values, which are
//! also printed in docs/protocol.md; the last test keeps the two from drifting apart.

use aegis_protocol::{PublicKey, Signature, Trigger};

use crate::fixtures::{self, Device};

const PUBLIC_KEY_HEX: &str = "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb67903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
const FINGERPRINT: &str = "b18b86ce1389e46de87aa4a5131ce83c1160fa33c087ab15b863574d31d8ff3c";
const KEY_ID: &str = "b18b86ce1389e46d";
const IMAGE_HASH: &str = "94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e";
const MESSAGE: &str = "aegis-ota/1
240ac4123456
http://10.0.0.5:3001/fw/94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e.bin
94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e
1048576
2.0.0
rollout-0001
000102030405060708090a0b0c0d0e0f
0";
const MESSAGE_SHA256: &str = "99bf0c30208561d563e4139e71df9d6633624fa59e3d381d24429e5af0122494";
const SIGNATURE: &str = "a142c8359dfe5f8ec29767d931aec1a36dac7667fe482aa11601b081b45ea4e552cee6bd7b5e6f81cc61cdbdcffb63c6234201f99e5c92c851554a799110c516";
const BODY: &str = r#"{"url":"http://10.0.0.5:3001/fw/94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e.bin","hash":"94f09ca36ec05416d8c275b3f1053a16ce233dbd7af10c98fda3fc7165fd746e","version":"2.0.0","size":1048576,"deployment":"rollout-0001","report":"http://10.0.0.5:3001/api/v1/report","nonce":"000102030405060708090a0b0c0d0e0f","allow_downgrade":false,"sig":"a142c8359dfe5f8ec29767d931aec1a36dac7667fe482aa11601b081b45ea4e552cee6bd7b5e6f81cc61cdbdcffb63c6234201f99e5c92c851554a799110c516"}"#;
const PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYP7UuiVanTHJYet0xjVtaMBJuJI7
Yfps5mliLmDyn7Z5A/4QCLi8maQa6elWKLxk8vGyDC1+n1F3o8KU1EYimQ==
-----END PUBLIC KEY-----";

#[test]
fn key_values() {
    let public = fixtures::key().public_key();
    assert_eq!(public.to_hex(), PUBLIC_KEY_HEX);
    assert_eq!(public.fingerprint().to_hex(), FINGERPRINT);
    assert_eq!(public.key_id().as_str(), KEY_ID);
    assert_eq!(
        public.to_public_key_pem().unwrap().trim_end(),
        PUBLIC_KEY_PEM
    );
    assert_eq!(
        PublicKey::from_public_key_pem(PUBLIC_KEY_PEM).unwrap(),
        public
    );
}

#[test]
fn message_and_signature() {
    let t = fixtures::signed_trigger();
    assert_eq!(t.hash.as_str(), IMAGE_HASH);
    let message = t.signed_message(&fixtures::device_id());
    assert_eq!(message, MESSAGE);
    assert_eq!(message.len(), 244);
    assert_eq!(
        aegis_protocol::Sha256Hex::digest(message.as_bytes()).as_str(),
        MESSAGE_SHA256
    );
    assert_eq!(t.sig.unwrap().to_hex(), SIGNATURE);
    assert_eq!(t.to_body().unwrap(), BODY);
}

#[test]
fn body_is_accepted_by_a_device_that_trusts_the_key() {
    let device = Device::trusting();
    let accepted = aegis_protocol::check_body(BODY.as_bytes(), &device.view()).unwrap();
    assert_eq!(accepted, fixtures::signed_trigger());
    let public = PublicKey::from_hex(PUBLIC_KEY_HEX).unwrap();
    let sig = Signature::parse(SIGNATURE).unwrap();
    assert_eq!(public.verify(MESSAGE.as_bytes(), &sig), Ok(()));
    assert!(Trigger::parse(BODY.as_bytes()).is_ok());
}

/// The expected outcomes listed under the vector in docs/protocol.md.
#[test]
fn documented_outcomes() {
    let check = |body: &str, device: &Device| {
        aegis_protocol::check_body(body.as_bytes(), &device.view())
            .map(|_| 202)
            .unwrap_or_else(|r| r.status())
    };
    let device = Device::trusting();
    assert_eq!(check(BODY, &device), 202);
    let mut rotated = Device::trusting();
    rotated.nonce = Some(aegis_protocol::Nonce::random());
    assert_eq!(check(BODY, &rotated), 412);
    assert_eq!(check(&BODY.replace("1048576", "1048577"), &device), 401);
    let unsigned = BODY.replace(&format!(r#","sig":"{SIGNATURE}""#), "");
    assert_eq!(
        aegis_protocol::check_body(unsigned.as_bytes(), &device.view())
            .unwrap_err()
            .code(),
        "signature_missing"
    );
    let mut newer = Device::trusting();
    newer.version = "2.1.0".into();
    assert_eq!(check(BODY, &newer), 422);
    let mut small = Device::trusting();
    small.slot_size = 1_048_575;
    assert_eq!(check(BODY, &small), 413);
}

#[test]
fn docs_show_the_same_values() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    for (name, value) in [
        ("private key", fixtures::PRIVATE_KEY_HEX),
        ("device id", fixtures::DEVICE_ID),
        ("nonce", fixtures::NONCE),
        ("public key", PUBLIC_KEY_HEX),
        ("fingerprint", FINGERPRINT),
        ("key id", KEY_ID),
        ("image hash", IMAGE_HASH),
        ("signed message", MESSAGE),
        ("message SHA-256", MESSAGE_SHA256),
        ("signature", SIGNATURE),
        ("body", BODY),
        ("public key PEM", PUBLIC_KEY_PEM),
        ("message length", "nine lines, 244 bytes"),
    ] {
        assert!(
            doc.contains(value),
            "docs/protocol.md does not show the test vector's {name} verbatim:\n{value}"
        );
    }
}
