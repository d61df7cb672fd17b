//! Each injected fault ends in the state a real ESP32 would be in, seen from outside (reports,
//! `/info`, the node's status, the file server's request log).

use std::time::Duration;

use aegis_image::{Chip, SimBehavior};
use aegis_protocol::{DeviceState, Phase, Sha256Hex, Slot};
use aegis_sim::faults::{Fault, FaultPlan, Point};
use aegis_sim::node::Power;

use crate::node_kit::{DeviceOpts, FileServer, TestDevice, image, runtime};

fn with_faults(faults: impl IntoIterator<Item = Fault>) -> DeviceOpts {
    DeviceOpts {
        faults: FaultPlan::of(faults),
        ..DeviceOpts::default()
    }
}

/// After a power loss the old image runs, the attempt is `failed`, and the next update works.
async fn power_loss_then_recovery(fault: Fault, expect_error: &str) {
    let fw = FileServer::start().await;
    let dev = TestDevice::start(with_faults([fault])).await;
    let before = dev.info().await;
    let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
    dev.deploy(&fw, &img, "2.0.0", "cut").await;
    let report = fw
        .wait_report("failed", |r| {
            r.deployment == "cut" && r.phase == Phase::Failed
        })
        .await;
    let error = report.error.unwrap_or_default();
    assert!(error.starts_with(expect_error), "{error}");
    assert_eq!(report.ver.as_deref(), Some("1.0.0"));
    let status = dev.wait_done("cut").await;
    assert_eq!(
        (status.version.as_str(), status.slot),
        ("1.0.0", Slot::OTA_0)
    );
    assert_eq!(status.boots, 2, "one power-on after the cut");
    let info = dev.info().await;
    assert_eq!(
        (info.sha256, info.state),
        (before.sha256, DeviceState::Idle)
    );
    assert_ne!(info.nonce, before.nonce);

    dev.deploy(&fw, &img, "2.0.0", "again").await;
    fw.wait_report("booted", |r| {
        r.deployment == "again" && r.phase == Phase::Booted
    })
    .await;
    let info = dev.info().await;
    assert_eq!((info.ver.as_str(), info.slot), ("2.0.0", Slot::OTA_1));
    dev.stop().await;
}

aegis_testkit::netns_test! {
    fn power_loss_mid_download_keeps_old_image() {
        runtime().block_on(power_loss_then_recovery(
            Fault::PowerLossDuringDownload(Point::Percent(50)),
            "power_loss: ",
        ));
    }
}

aegis_testkit::netns_test! {
    fn power_loss_while_selecting_slot_keeps_old_image() {
        runtime().block_on(power_loss_then_recovery(Fault::PowerLossDuringWrite, "power_loss: "));
    }
}

aegis_testkit::netns_test! {
    fn power_loss_during_reboot_rolls_back() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(with_faults([Fault::PowerLossDuringReboot])).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "boot-cut").await;
            let report = fw
                .wait_report("final", |r| r.deployment == "boot-cut" && r.phase.is_final())
                .await;
            let status = dev.wait_done("boot-cut").await;
            // Whatever the bootloader made of the torn otadata write, the report matches what
            // runs, and the device is usable.
            assert_eq!(report.sha256, Some(status.sha256.clone()));
            match report.phase {
                Phase::RolledBack => assert_eq!(status.version, "1.0.0"),
                Phase::Booted => assert_eq!(status.version, "2.0.0"),
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(status.state, DeviceState::Idle);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn corrupted_transfer_is_rejected_and_reported() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(with_faults([Fault::CorruptAt(Point::Byte(100_000))])).await;
            let before = dev.info().await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "flip").await;
            let report = fw
                .wait_report("failed", |r| r.deployment == "flip" && r.phase == Phase::Failed)
                .await;
            let error = report.error.unwrap();
            assert!(error.starts_with("hash_mismatch: "), "{error}");
            assert_eq!(report.sha256, Some(before.sha256.clone()));
            let status = dev.wait_done("flip").await;
            assert_eq!(status.boots, 1, "no reboot for a rejected image");
            let info = dev.info().await;
            assert_eq!((info.ver.as_str(), info.sha256), ("1.0.0", before.sha256));
            let last = info.last.unwrap();
            assert_eq!(last.result, Phase::Failed);
            assert!(last.error.unwrap().starts_with("hash_mismatch"));
            assert!(!fw.phases("flip").contains(&"rebooting".to_owned()));
            // The fault fired once: the retried deployment goes through.
            dev.deploy(&fw, &img, "2.0.0", "flip-again").await;
            dev.wait_done("flip-again").await;
            assert_eq!(dev.info().await.ver, "2.0.0");
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn crashing_image_rolls_back_and_announces_previous_version() {
        runtime().block_on(async {
            use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let before = dev.info().await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::CrashesAtBoot);
            dev.deploy(&fw, &img, "2.0.0", "crash").await;
            let report = fw
                .wait_report("rolled_back", |r| r.deployment == "crash" && r.phase == Phase::RolledBack)
                .await;
            assert_eq!(report.ver.as_deref(), Some("1.0.0"));
            assert_eq!(report.sha256, Some(before.sha256.clone()));
            assert!(report.error.unwrap().starts_with("rolled_back: "));
            assert!(!fw.phases("crash").contains(&"booted".to_owned()));
            let status = dev.wait_done("crash").await;
            assert_eq!((status.version.as_str(), status.slot), ("1.0.0", Slot::OTA_0));
            let info = dev.info().await;
            assert_eq!((info.sha256, info.state), (before.sha256.clone(), DeviceState::Idle));
            assert_eq!(info.last.unwrap().result, Phase::RolledBack);

            // A browser that starts now finds the device announcing its previous version.
            let browser = ServiceDaemon::new().unwrap();
            browser.disable_interface(IfKind::All).unwrap();
            browser.enable_interface(IfKind::LoopbackV4).unwrap();
            let events = browser.browse(aegis_protocol::SERVICE_TYPE).unwrap();
            let found = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    if let Ok(ServiceEvent::ServiceResolved(svc)) = events.recv_async().await {
                        let txt = |k: &str| svc.txt_properties.get_property_val_str(k).map(str::to_owned);
                        return (txt("ver"), txt("sha"), txt("state"));
                    }
                }
            })
            .await
            .expect("the device is announced");
            assert_eq!(found.0.as_deref(), Some("1.0.0"));
            assert_eq!(found.1.as_deref(), Some(&before.sha256.as_str()[..16]));
            assert_eq!(found.2.as_deref(), Some("idle"));
            let _ = browser.shutdown();
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn dropped_connection_resumes_with_range() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(with_faults([Fault::DropAt(Point::Percent(40))])).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "drop").await;
            let booted = fw
                .wait_report("booted", |r| r.deployment == "drop" && r.phase == Phase::Booted)
                .await;
            assert_eq!(booted.sha256, Some(Sha256Hex::digest(&img)));
            let ranges = fw.ranges();
            assert_eq!(ranges.len(), 2, "{ranges:?}");
            assert_eq!(ranges[0], None);
            let at = img.len() as u64 * 40 / 100;
            assert_eq!(ranges[1].as_deref(), Some(format!("bytes={at}-").as_str()));
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn server_ignoring_range_restarts_from_zero() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            fw.ignore_range(true);
            let dev = TestDevice::start(with_faults([Fault::DropAt(Point::Percent(60))])).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "naive").await;
            fw.wait_report("booted", |r| r.deployment == "naive" && r.phase == Phase::Booted)
                .await;
            assert_eq!(fw.ranges().len(), 2);
            assert_eq!(dev.info().await.sha256, Sha256Hex::digest(&img));
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn never_return_goes_silent() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(with_faults([Fault::NeverReturn])).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "gone").await;
            fw.wait_report("rebooting", |r| r.deployment == "gone" && r.phase == Phase::Rebooting)
                .await;
            dev.wait("silent", |s| s.power == Power::Silent).await;
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            assert!(client.get(format!("{}/aegis/v1/info", dev.base)).send().await.is_err());
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!fw.phases("gone").iter().any(|p| p == "booted" || p == "rolled_back"));
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn unreachable_device_never_answers() {
        runtime().block_on(async {
            let dev = TestDevice::start(with_faults([Fault::Unreachable])).await;
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            let err = client
                .get(format!("{}/aegis/v1/info", dev.base))
                .send()
                .await
                .unwrap_err();
            assert!(err.is_timeout(), "connected, then no answer: {err}");
            // Shutting down still works with a request left hanging.
            tokio::time::timeout(Duration::from_secs(5), dev.stop()).await.unwrap();
        });
    }
}

aegis_testkit::netns_test! {
    fn power_cycle_mid_download_keeps_old_image() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(with_faults([Fault::SlowLink(64 * 1024)])).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            dev.deploy(&fw, &img, "2.0.0", "cycle").await;
            dev.wait("updating", |s| s.state == DeviceState::Updating).await;
            dev.handle.power_cycle().await.unwrap();
            let status = dev
                .wait_done("cycle")
                .await;
            assert_eq!(status.version, "1.0.0");
            let report = fw
                .wait_report("failed", |r| r.deployment == "cycle" && r.phase == Phase::Failed)
                .await;
            assert!(report.error.unwrap().starts_with("power_loss: "));
            assert_eq!(dev.info().await.state, DeviceState::Idle);
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn missing_image_fails_with_http_error() {
        runtime().block_on(async {
            let fw = FileServer::start().await;
            let dev = TestDevice::start(DeviceOpts::default()).await;
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let url = format!("{}/fw/absent.bin", fw.base);
            let t = dev.trigger(&fw, &url, &img, "2.0.0", "absent").await;
            assert_eq!(dev.post(&t).await.0, 202);
            let report = fw
                .wait_report("failed", |r| r.deployment == "absent" && r.phase == Phase::Failed)
                .await;
            let error = report.error.unwrap();
            assert!(error.starts_with("http_error: ") && error.contains("404"), "{error}");
            assert_eq!(fw.ranges().len(), 1, "a 404 is not retried");
            let status = dev.wait_done("absent").await;
            assert_eq!((status.version.as_str(), status.state), ("1.0.0", DeviceState::Idle));
            dev.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn restarted_node_runs_what_it_had() {
        runtime().block_on(async {
            use std::net::Ipv4Addr;
            use std::sync::Arc;

            use aegis_sim::announce::{AnnounceOptions, Announcer};
            use aegis_sim::model::BlobStore;
            use aegis_sim::node::{FactoryImage, NodeConfig, spawn_node};
            use aegis_sim::timing::Timing;
            use tokio_util::sync::CancellationToken;

            let fw = FileServer::start().await;
            let dir = tempfile::tempdir().unwrap();
            let blobs = Arc::new(BlobStore::open(&dir.path().join("blobs")).unwrap());
            let announcer = Announcer::new(AnnounceOptions::default()).unwrap();
            let cfg = NodeConfig {
                id: "0a0b0c0d0e0f".into(),
                hostname: "esp-sim-042".into(),
                ip: Ipv4Addr::new(127, 0, 1, 42),
                port: 8080,
                chip: Chip::Esp32,
                slot_size: 1536 * 1024,
                trusted_key: None,
                timing: Timing::fast(),
                faults: FaultPlan::none(),
                dir: dir.path().join("dev"),
                factory_image: FactoryImage::build("1.0.0", "demo"),
            };
            let node = spawn_node(cfg.clone(), Arc::clone(&blobs), announcer.clone(), CancellationToken::new())
                .await
                .unwrap();
            let img = image(Chip::Esp32, "2.0.0", SimBehavior::Boots);
            let url = fw.put("a.bin", &img);
            let body = serde_json::json!({
                "url": url, "hash": Sha256Hex::digest(&img).as_str(), "version": "2.0.0",
                "size": img.len(), "deployment": "persist",
            });
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let resp = client
                .post("http://127.0.1.42:8080/aegis/v1/ota")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let done = tokio::time::timeout(
                Duration::from_secs(20),
                node.wait_for(|s| s.version == "2.0.0" && s.state == DeviceState::Idle),
            )
            .await;
            assert_eq!(done, Ok(true));
            node.shutdown().await;
            assert_eq!(node.status().power, Power::Silent);
            assert!(client.get("http://127.0.1.42:8080/aegis/v1/info").send().await.is_err());

            // The simulator restarts: same directory, same blobs.
            let node = spawn_node(cfg, blobs, announcer, CancellationToken::new()).await.unwrap();
            let status = node.status();
            assert_eq!((status.version.as_str(), status.slot), ("2.0.0", Slot::OTA_1));
            let info: serde_json::Value = client
                .get("http://127.0.1.42:8080/aegis/v1/info")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(info["ver"], "2.0.0");
            assert_eq!(info["state"], "idle");
            node.shutdown().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn stopping_one_node_leaves_its_neighbours_running() {
        runtime().block_on(async {
            use std::net::Ipv4Addr;
            use std::sync::Arc;

            use aegis_sim::announce::{AnnounceOptions, Announcer};
            use aegis_sim::model::BlobStore;
            use aegis_sim::node::{FactoryImage, NodeConfig, spawn_node};
            use aegis_sim::timing::Timing;
            use tokio_util::sync::CancellationToken;

            let dir = tempfile::tempdir().unwrap();
            let blobs = Arc::new(BlobStore::open(&dir.path().join("blobs")).unwrap());
            let announcer = Announcer::new(AnnounceOptions::default()).unwrap();
            let fleet = CancellationToken::new();
            let mut nodes = Vec::new();
            for n in 1..=2u8 {
                let cfg = NodeConfig {
                    id: format!("00000000000{n}"),
                    hostname: format!("esp-sim-{n:03}"),
                    ip: Ipv4Addr::new(127, 0, 1, n),
                    port: 80,
                    chip: Chip::Esp32,
                    slot_size: 1536 * 1024,
                    trusted_key: None,
                    timing: Timing::fast(),
                    faults: FaultPlan::none(),
                    dir: dir.path().join(format!("dev{n}")),
                    factory_image: FactoryImage::build("1.0.0", "demo"),
                };
                nodes.push(
                    spawn_node(cfg, Arc::clone(&blobs), announcer.clone(), fleet.clone())
                        .await
                        .unwrap(),
                );
            }
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            nodes[0].shutdown().await;
            assert!(client.get("http://127.0.1.1/aegis/v1/info").send().await.is_err());
            let resp = client.get("http://127.0.1.2/aegis/v1/info").send().await.unwrap();
            assert_eq!(resp.status(), 200);
            // The owner's token stops the rest.
            fleet.cancel();
            nodes[1].join().await;
            assert_eq!(nodes[1].status().power, Power::Silent);
            assert!(client.get("http://127.0.1.2/aegis/v1/info").send().await.is_err());
        });
    }
}
