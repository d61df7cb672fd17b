//! Each way the builder can break an image is caught by `inspect()` with the right reason,
//! and the simulator behaviour marker survives the round trip.

use aegis_image::{Chip, Corruption, ImageBuilder, Kind, SimBehavior, inspect};

#[test]
fn every_corruption_is_detected_with_its_reason() {
    for &chip in Chip::ALL {
        for &c in Corruption::ALL {
            let img = ImageBuilder::new(chip)
                .size(20_000)
                .corrupt(c)
                .build()
                .unwrap();
            let ins = inspect(&img);
            let reason = ins.reason.clone().unwrap_or_default();
            assert!(!ins.valid, "{chip} {c:?} passed");
            assert_eq!(ins.kind, Kind::App, "{chip} {c:?}: {reason}");
            let (needle, checksum, digest) = match c {
                Corruption::BadChecksum => ("checksum is wrong", Some(false), Some(true)),
                Corruption::BadDigest => ("SHA-256 digest does not match", Some(true), Some(false)),
                Corruption::Truncated => ("truncated", None, None),
                Corruption::WrongChip => ("built for another chip", Some(true), Some(true)),
            };
            assert!(reason.contains(needle), "{chip} {c:?}: {reason}");
            assert_eq!(ins.checksum_valid, checksum, "{chip} {c:?}");
            assert_eq!(ins.digest_valid, digest, "{chip} {c:?}");
            if c == Corruption::WrongChip {
                assert_ne!(
                    ins.chip,
                    Some(chip),
                    "{chip}: header still names the right chip"
                );
            } else {
                assert_eq!(ins.chip, Some(chip));
            }
        }
    }
}

#[test]
fn descriptor_and_behavior_round_trip() {
    for &b in SimBehavior::ALL {
        let img = ImageBuilder::new(Chip::Esp32c3)
            .version("3.1.4")
            .project("thermostat")
            .idf_version("v5.3.1")
            .secure_version(7)
            .behavior(b)
            .build()
            .unwrap();
        let ins = inspect(&img);
        assert!(ins.valid, "{:?}", ins.reason);
        let app = ins.app.unwrap();
        assert_eq!(app.version, "3.1.4");
        assert_eq!(app.project, "thermostat");
        assert_eq!(app.idf_version, "v5.3.1");
        assert_eq!(app.secure_version, 7);
        assert_eq!(app.offset, 0x20);
        assert_eq!(ins.sim_behavior, Some(b));
    }
}

#[test]
fn json_shape_is_stable() {
    let img = ImageBuilder::new(Chip::Esp32s3)
        .version("2.0.0")
        .build()
        .unwrap();
    let v = serde_json::to_value(inspect(&img)).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["kind"], "app");
    assert!(v["reason"].is_null());
    assert_eq!(v["chip"], "esp32s3");
    assert_eq!(v["chip_id"], 9);
    assert_eq!(v["checksum_valid"], true);
    assert_eq!(v["digest_valid"], true);
    assert_eq!(v["size"], 256 * 1024);
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["app"]["version"], "2.0.0");
    assert_eq!(v["app"]["elf_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["sim_behavior"], "boots");
    assert_eq!(v["segments"].as_array().unwrap().len(), 4);
    assert_eq!(v["header"]["flash_mode"], "dio");
}
