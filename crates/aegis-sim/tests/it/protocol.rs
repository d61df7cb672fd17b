//! One simulated device against a test client written from PROTOCOL.md: the full update
//! (202, download, verify, reboot, re-announce, `booted` report) and every reply code of the
//! trigger table.

use std::time::Duration;

use aegis_image::{Chip, SimBehavior};
use aegis_protocol::{DeviceState, Nonce, Phase, Sha256Hex, SigningKey, Slot};
use aegis_sim::faults::{Fault, FaultPlan};
use aegis_sim::node::Power;
use aegis_sim::timing::Timing;
use serde_json::json;

use crate::node_kit::{DeviceOpts, FileServer, TestDevice, image, runtime};

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

aegis_testkit::netns_test! {
    fn signed_update_end_to_end() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let before = dev.info().await;
            assert_eq!(before.ver, "1.0.0");
            assert_eq!(before.slot, Slot::OTA_0);
            assert_eq!(before.state, DeviceState::Idle);
            assert_eq!(before.last, None);
            assert_eq!(before.host, "esp-sim-001");
            assert_eq!(before.nonce.as_str().len(), 32);

            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "dep-1").await;
            let booted = fw
                .wait_report("booted", |r| r.deployment == "dep-1" && r.phase == Phase::Booted)
                .await;
            assert_eq!(booted.sha256, Some(Sha256Hex::digest(&img)));
            assert_eq!(booted.ver.as_deref(), Some("2.0.0"));
            assert_eq!(booted.bytes, img.len() as u64);
            assert_eq!(booted.total, img.len() as u64);
            dev.wait_done("dep-1").await;

            let after = dev.info().await;
            assert_eq!(after.ver, "2.0.0");
            assert_eq!(after.sha256, Sha256Hex::digest(&img));
            assert_eq!(after.slot, Slot::OTA_1);
            assert_eq!(after.state, DeviceState::Idle);
            assert_ne!(after.nonce, before.nonce);
            let last = after.last.unwrap();
            assert_eq!((last.deployment.as_str(), last.result, last.error), ("dep-1", Phase::Booted, None));

            let phases = fw.phases("dep-1");
            assert_eq!(phases.first().map(String::as_str), Some("downloading"), "{phases:?}");
            let tail: Vec<&str> = phases.iter().map(String::as_str).filter(|p| *p != "downloading").collect();
            assert_eq!(tail, ["verifying", "rebooting", "booted"]);
            // One GET, no resume needed, from the device's own address.
            assert_eq!(fw.ranges(), vec![None]);
            let status = dev.handle.status();
            assert_eq!(status.boots, 2);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn reannounces_new_version_over_mdns() {
        runtime().block_on(async {
            use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
            let browser = ServiceDaemon::new().unwrap();
            browser.disable_interface(IfKind::All).unwrap();
            browser.enable_interface(IfKind::LoopbackV4).unwrap();
            let events = browser.browse(aegis_protocol::SERVICE_TYPE).unwrap();
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let sha = Sha256Hex::digest(&img);

            let mut seen_old = false;
            let mut seen_new = None;
            let mut deployed = false;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while seen_new.is_none() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                assert!(!left.is_zero(), "no announcement of 2.0.0 (saw 1.0.0: {seen_old})");
                let Ok(Ok(ev)) = tokio::time::timeout(left, events.recv_async()).await else {
                    continue;
                };
                let ServiceEvent::ServiceResolved(svc) = ev else { continue };
                let txt = |k: &str| svc.txt_properties.get_property_val_str(k).map(str::to_owned);
                assert_eq!(svc.port, crate::node_kit::PORT);
                assert_eq!(txt("id").as_deref(), Some(dev.id.as_str()));
                assert_eq!(txt("ip").as_deref(), Some("127.0.1.1"));
                assert_eq!(txt("proto").as_deref(), Some("1"));
                assert_eq!(txt("chip").as_deref(), Some("esp32"));
                let key_id = dev.key.as_ref().unwrap().public_key().key_id();
                assert_eq!(txt("key").as_deref(), Some(key_id.as_str()));
                match txt("ver").as_deref() {
                    Some("1.0.0") => {
                        seen_old = true;
                        if !deployed {
                            deployed = true;
                            dev.deploy(&fw, &img, "2.0.0", "dep-mdns").await;
                        }
                    }
                    Some("2.0.0") if txt("state").as_deref() == Some("idle") => {
                        seen_new = Some((txt("sha"), txt("slot")));
                    }
                    _ => {}
                }
            }
            assert!(seen_old);
            let (sha_txt, slot) = seen_new.unwrap();
            assert_eq!(sha_txt.as_deref(), Some(&sha.as_str()[..16]));
            assert_eq!(slot.as_deref(), Some("ota_1"));
            let _ = browser.shutdown();
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn nonce_is_single_use() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let url = fw.put("a.bin", &img);

            // A nonce the device never handed out.
            let mut t = dev.trigger(&fw, &url, &img, "2.0.0", "d1").await;
            t.nonce = Some(Nonce::random());
            t.sign(&dev.id, dev.key.as_ref().unwrap()).unwrap();
            let (status, body) = dev.post(&t).await;
            assert_eq!((status, code(&body)), (412, "nonce_unknown"));

            // A rejected trigger retires the nonce too: this one was current before the 412.
            let stale = dev.trigger(&fw, &url, &img, "2.0.0", "d2").await;
            let (status, _) = dev.post(&t).await;
            assert_eq!(status, 412);
            let (status, body) = dev.post(&stale).await;
            assert_eq!((status, code(&body)), (412, "nonce_unknown"), "{body}");

            // An accepted trigger, replayed after the update: 412.
            let good = dev.trigger(&fw, &url, &img, "2.0.0", "d3").await;
            assert_eq!(dev.post(&good).await.0, 202);
            dev.wait_done("d3").await;
            let (status, body) = dev.post(&good).await;
            assert_eq!((status, code(&body)), (412, "nonce_unknown"));
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn signatures_are_enforced() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let url = fw.put("a.bin", &img);

            let mut unsigned = dev.trigger(&fw, &url, &img, "2.0.0", "d1").await;
            unsigned.sig = None;
            let (status, body) = dev.post(&unsigned).await;
            assert_eq!((status, code(&body)), (401, "signature_missing"));
            assert!(body["error"]["message"].as_str().unwrap().len() > 10);

            let mut forged = dev.trigger(&fw, &url, &img, "2.0.0", "d2").await;
            forged.sign(&dev.id, &SigningKey::generate()).unwrap();
            let (status, body) = dev.post(&forged).await;
            assert_eq!((status, code(&body)), (401, "signature_invalid"));

            // Signed for another device id: the device rebuilds the message with its own id.
            let mut other = dev.trigger(&fw, &url, &img, "2.0.0", "d3").await;
            let other_id = aegis_protocol::DeviceId::parse("ffffffffffff").unwrap();
            other.sign(&other_id, dev.key.as_ref().unwrap()).unwrap();
            assert_eq!(dev.post(&other).await.0, 401);

            // Tampered after signing.
            let mut tampered = dev.trigger(&fw, &url, &img, "2.0.0", "d4").await;
            tampered.allow_downgrade = true;
            assert_eq!(dev.post(&tampered).await.0, 401);
            assert_eq!(dev.info().await.ver, "1.0.0");
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn keyless_device_accepts_unsigned_triggers() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts { key: None, ..DeviceOpts::default() }).await;
            let info = dev.info().await;
            let img = image(Chip::Esp32, "1.1.0", SimBehavior::Boots);
            let url = fw.put("a.bin", &img);
            // The original handshake: no nonce, no signature.
            let body = json!({
                "url": url, "hash": Sha256Hex::digest(&img).as_str(), "version": "1.1.0",
                "size": img.len(), "deployment": "plain",
            });
            let (status, reply) = dev.post_raw(body.to_string()).await;
            assert_eq!(status, 202, "{reply}");
            dev.wait_done("plain").await;
            let after = dev.info().await;
            assert_eq!(after.ver, "1.1.0");
            assert_ne!(after.nonce, info.nonce);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn downgrade_needs_allow_downgrade() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts { version: "2.0.0".into(), ..DeviceOpts::default() }).await;
            let img = image(Chip::Esp32, "1.9.0", SimBehavior::Boots);
            let url = fw.put("old.bin", &img);
            let t = dev.trigger(&fw, &url, &img, "1.9.0", "down").await;
            let (status, body) = dev.post(&t).await;
            assert_eq!((status, code(&body)), (422, "downgrade"));

            let mut t = dev.trigger(&fw, &url, &img, "1.9.0", "down2").await;
            t.allow_downgrade = true;
            t.sign(&dev.id, dev.key.as_ref().unwrap()).unwrap();
            assert_eq!(dev.post(&t).await.0, 202);
            dev.wait_done("down2").await;
            assert_eq!(dev.info().await.ver, "1.9.0");
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn too_large_and_malformed_triggers() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let info = dev.info().await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let url = fw.put("a.bin", &img);

            let mut big = dev.trigger(&fw, &url, &img, "2.0.0", "big").await;
            big.size = info.slot_size + 1;
            big.sign(&dev.id, dev.key.as_ref().unwrap()).unwrap();
            let (status, body) = dev.post(&big).await;
            assert_eq!((status, code(&body)), (413, "too_large"));

            for (raw, want) in [
                ("not json".to_owned(), "malformed_json"),
                (json!({"url": url}).to_string(), "missing_field"),
                (json!({"url": url, "hash": "XYZ", "version": "2", "size": 1, "deployment": "d"}).to_string(), "bad_hex"),
            ] {
                let (status, body) = dev.post_raw(raw).await;
                assert_eq!((status, code(&body)), (400, want), "{body}");
            }
            // Over 4 KiB: refused at the HTTP layer, still with the protocol's 400 body.
            let huge = format!("{{\"url\":\"{}\"}}", "a".repeat(5000));
            let (status, body) = dev.post_raw(huge).await;
            assert_eq!((status, code(&body)), (400, "body_too_large"));
            // Unknown paths and methods get the error body too.
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let resp = client.get(format!("{}/nope", dev.base)).send().await.unwrap();
            assert_eq!(resp.status(), 404);
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(code(&body), "not_found");
            let resp = client.get(format!("{}/aegis/v1/ota", dev.base)).send().await.unwrap();
            assert_eq!(resp.status(), 405);
            // Every answer rotated the nonce; the device is untouched.
            let after = dev.info().await;
            assert_ne!(after.nonce, info.nonce);
            assert_eq!(after.ver, "1.0.0");
            assert_eq!(after.last, None);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn busy_while_updating() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts {
                faults: FaultPlan::of([Fault::SlowLink(128 * 1024)]),
                ..DeviceOpts::default()
            })
            .await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "slow").await;
            let info = dev.info().await;
            assert_eq!(info.state, DeviceState::Updating);
            let url = fw.put("b.bin", &img);
            let t = dev.trigger(&fw, &url, &img, "2.0.0", "second").await;
            let (status, body) = dev.post(&t).await;
            assert_eq!((status, code(&body)), (409, "busy"));
            dev.wait_done("slow").await;
            assert_eq!(dev.info().await.ver, "2.0.0");
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn busy_while_pending_verify_then_watchdog_rollback() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let mut timing = Timing::fast();
            timing.hang_reset = Duration::from_secs(2);
            let dev = TestDevice::start(DeviceOpts { timing, ..DeviceOpts::default() }).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::NeverConfirms);
            dev.deploy(&fw, &img, "2.0.0", "hang").await;
            dev.wait("pending_verify", |s| s.state == DeviceState::PendingVerify && s.power == Power::Online)
                .await;
            let info = dev.info().await;
            assert_eq!((info.ver.as_str(), info.state), ("2.0.0", DeviceState::PendingVerify));
            let other = image(Chip::Esp32, "3.0.0", SimBehavior::Boots);
            let url = fw.put("c.bin", &other);
            let t = dev.trigger(&fw, &url, &other, "3.0.0", "next").await;
            let (status, body) = dev.post(&t).await;
            assert_eq!((status, code(&body)), (409, "pending_verify"));

            let report = fw
                .wait_report("rolled_back", |r| r.deployment == "hang" && r.phase == Phase::RolledBack)
                .await;
            assert_eq!(report.ver.as_deref(), Some("1.0.0"));
            let status = dev.wait_done("hang").await;
            assert_eq!((status.version.as_str(), status.slot), ("1.0.0", Slot::OTA_0));
            assert_eq!(dev.info().await.state, DeviceState::Idle);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn wrong_chip_is_reported_failed() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let img = image(Chip::Esp32s3, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "chip").await;
            let report = fw
                .wait_report("failed", |r| r.deployment == "chip" && r.phase == Phase::Failed)
                .await;
            let error = report.error.unwrap();
            assert!(error.starts_with("wrong_chip: "), "{error}");
            assert!(report.bytes < img.len() as u64, "stopped after the header: {}", report.bytes);
            let info = dev.info().await;
            assert_eq!((info.ver.as_str(), info.state), ("1.0.0", DeviceState::Idle));
            assert_eq!(info.last.unwrap().result, Phase::Failed);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn busy_fault_answers_409() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts {
                faults: FaultPlan::of([Fault::Busy]),
                ..DeviceOpts::default()
            })
            .await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let url = fw.put("a.bin", &img);
            for n in 0..3 {
                let t = dev.trigger(&fw, &url, &img, "2.0.0", &format!("b{n}")).await;
                let (status, body) = dev.post(&t).await;
                assert_eq!((status, code(&body)), (409, "busy"));
            }
            assert_eq!(dev.info().await.state, DeviceState::Idle);
            dev.stop().await;
        });
    }
}
