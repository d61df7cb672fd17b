//! Property tests: signatures bind every field, parsers never panic, round trips hold.

use aegis_protocol::{
    DeviceId, Nonce, Sha256Hex, SigningKey, Trigger, TxtRecord, compare_versions,
};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = SigningKey> {
    any::<[u8; 32]>().prop_filter_map("valid scalar", |b| SigningKey::from_bytes(&b).ok())
}

fn trigger() -> impl Strategy<Value = Trigger> {
    (
        "[a-z0-9.:/-]{1,40}",
        any::<[u8; 32]>(),
        "[0-9a-z.+-]{0,16}",
        1u64..=u64::MAX,
        "[a-zA-Z0-9 _-]{1,64}",
        any::<[u8; 16]>(),
        any::<bool>(),
    )
        .prop_map(
            |(path, hash, version, size, deployment, nonce, allow_downgrade)| Trigger {
                url: format!("http://{path}"),
                hash: Sha256Hex::from_bytes(&hash),
                version,
                size,
                deployment,
                report: None,
                nonce: Some(Nonce::from_bytes(&nonce)),
                allow_downgrade,
                sig: None,
            },
        )
}

/// Changes exactly one signed input (field `which`, or the device id for 7).
fn mutate(t: &mut Trigger, id: &mut DeviceId, which: u8) {
    match which {
        0 => t.url.push('x'),
        1 => {
            let mut b = t.hash.to_bytes();
            b[31] ^= 1;
            t.hash = Sha256Hex::from_bytes(&b);
        }
        2 => t.size = t.size.wrapping_add(1).max(1),
        3 => t.version.push('1'),
        4 => t.deployment = format!("{}x", &t.deployment[1..]),
        5 => {
            let mut b = t.nonce.as_ref().unwrap().to_bytes();
            b[0] ^= 0x80;
            t.nonce = Some(Nonce::from_bytes(&b));
        }
        6 => t.allow_downgrade = !t.allow_downgrade,
        _ => {
            let mut b = id.to_bytes();
            b[5] ^= 1;
            *id = DeviceId::from_bytes(&b);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn signed_verifies_and_any_change_fails(
        key in key(),
        mut t in trigger(),
        mac in any::<[u8; 6]>(),
        which in 0u8..8,
    ) {
        let mut id = DeviceId::from_mac(mac);
        t.sign(&id, &key).unwrap();
        let public = key.public_key();
        prop_assert!(t.verify(&id, &public).is_ok());
        let parsed = Trigger::parse(t.to_body().unwrap().as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &t);
        prop_assert!(parsed.verify(&id, &public).is_ok());

        let before = t.signed_message(&id);
        mutate(&mut t, &mut id, which);
        prop_assert_ne!(t.signed_message(&id), before);
        prop_assert!(t.verify(&id, &public).is_err());
        prop_assert!(t.verify(&DeviceId::from_mac(mac), &SigningKey::generate().public_key()).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn trigger_parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Trigger::parse(&body);
    }

    #[test]
    fn trigger_parse_never_panics_on_near_json(
        fields in proptest::collection::vec(
            (prop::sample::select(vec!["url", "hash", "version", "size", "deployment", "nonce", "sig", "allow_downgrade", "report"]),
             prop_oneof![
                 Just(serde_json::Value::Null),
                 any::<bool>().prop_map(serde_json::Value::from),
                 any::<i64>().prop_map(serde_json::Value::from),
                 any::<f64>().prop_map(serde_json::Value::from),
                 "[0-9a-f]{0,130}".prop_map(serde_json::Value::from),
                 "\\PC{0,80}".prop_map(serde_json::Value::from),
             ]),
            0..12),
    ) {
        let map: serde_json::Map<String, serde_json::Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let body = serde_json::Value::Object(map).to_string();
        if let Err(e) = Trigger::parse(body.as_bytes()) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn txt_from_pairs_never_panics(pairs in proptest::collection::vec(("\\PC{0,6}", "\\PC{0,40}"), 0..14)) {
        if let Ok(r) = TxtRecord::from_pairs(pairs) {
            // Whatever is accepted can be written back and read again to the same record.
            if let Ok(p) = r.to_pairs() {
                prop_assert_eq!(TxtRecord::from_pairs(p).unwrap(), r);
            }
        }
    }

    #[test]
    fn version_order_is_antisymmetric(a in "v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-[a-z0-9]{1,4}(\\.[a-z0-9]{1,3})?)?",
                                      b in "v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-[a-z0-9]{1,4}(\\.[a-z0-9]{1,3})?)?") {
        let ab = compare_versions(&a, &b);
        let ba = compare_versions(&b, &a);
        prop_assert!(ab.is_some());
        prop_assert_eq!(ab.map(std::cmp::Ordering::reverse), ba);
        prop_assert_eq!(compare_versions(&a, &a), Some(std::cmp::Ordering::Equal));
    }

    #[test]
    fn version_parse_never_panics(s in "\\PC{0,40}") {
        let _ = compare_versions(&s, "1.0.0");
    }
}
