//! The fleet runner: layout (ids, hostnames, addresses, ports, faults), a running fleet as an
//! mDNS browser and an HTTP client see it, persistence across restarts, mixed fleets.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aegis_image::Chip;
use aegis_sim::faults::FaultSpec;
use aegis_sim::fleet::{
    self, Fleet, FleetConfig, FleetError, FleetFile, GroupConfig, RunOptions, StateDir,
};
use aegis_sim::timing::Timing;

use crate::announce::{Browser, instance};

fn fast(count: u32) -> FleetConfig {
    let mut cfg = FleetConfig::new(count);
    cfg.timing = Timing::fast();
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_layout_is_deterministic() {
    let mut cfg = fast(300);
    cfg.ip_base = Ipv4Addr::new(127, 0, 1, 250);
    cfg.port_base = 9000;
    let plan = fleet::plan(&cfg).unwrap();
    assert_eq!(plan.len(), 300);
    assert_eq!(plan[0].hostname, "esp-sim-001");
    assert_eq!(plan[0].id, "240ac4000001");
    assert_eq!(plan[0].ip, Ipv4Addr::new(127, 0, 1, 250));
    assert_eq!(plan[0].port, 9000);
    assert_eq!(plan[299].hostname, "esp-sim-300");
    assert_eq!(plan[299].id, "240ac400012c");
    assert_eq!(
        plan[299].ip,
        Ipv4Addr::new(127, 0, 3, 37),
        "crosses octet boundaries"
    );
    assert_eq!(plan[299].port, 9299);
    assert_eq!(fleet::hostname(0, 1000), "esp-sim-0001");
    cfg.same_port = true;
    assert!(fleet::plan(&cfg).unwrap().iter().all(|p| p.port == 9000));
}

#[test]
fn impossible_layouts_are_refused_with_a_reason() {
    let mut cfg = fast(10);
    cfg.ip_base = Ipv4Addr::new(127, 255, 255, 250);
    let err = fleet::plan(&cfg).unwrap_err();
    assert!(matches!(err, FleetError::AddressRange { .. }), "{err}");
    assert!(err.to_string().contains("127.255.255.254"), "{err}");

    let mut cfg = fast(10);
    cfg.port_base = 65530;
    let err = fleet::plan(&cfg).unwrap_err();
    assert!(err.to_string().contains("--same-port"), "{err}");
    cfg.same_port = true;
    assert!(fleet::plan(&cfg).is_ok());

    assert!(matches!(fleet::plan(&fast(0)), Err(FleetError::Empty)));
    let mut huge = fast(u32::MAX);
    huge.ip_base = Ipv4Addr::new(10, 0, 0, 1);
    huge.same_port = true;
    assert!(matches!(
        fleet::plan(&huge),
        Err(FleetError::TooMany { .. })
    ));
}

#[test]
fn group_and_fleet_faults_land_on_the_right_devices() {
    let mut cfg = fast(0);
    let mut a = GroupConfig::new(10);
    a.faults = FaultSpec::from_str("busy:dev=1;drop@50%:frac=0.5").unwrap();
    let mut b = GroupConfig::new(10);
    b.faults = FaultSpec::from_str("unreachable:dev=1").unwrap();
    b.bandwidth = Some(Some(1000));
    cfg.groups = vec![a, b];
    cfg.faults = FaultSpec::from_str("slow=5KiB/s:dev=esp-sim-020;busy:dev=20").unwrap();
    let plan = fleet::plan(&cfg).unwrap();
    let busy: Vec<usize> = plan
        .iter()
        .filter(|p| p.faults.busy())
        .map(|p| p.index)
        .collect();
    assert_eq!(busy, vec![0, 19], "group-local dev=1 and fleet-wide dev=20");
    let unreachable: Vec<usize> = plan
        .iter()
        .filter(|p| p.faults.unreachable())
        .map(|p| p.index)
        .collect();
    assert_eq!(
        unreachable,
        vec![10],
        "dev=1 of the second group is device 11"
    );
    assert_eq!(
        plan[..10]
            .iter()
            .filter(|p| p.faults.drop_at(100).is_some())
            .count(),
        5
    );
    assert!(plan[10..].iter().all(|p| p.faults.drop_at(100).is_none()));
    assert_eq!(plan[19].faults.slow_link(), Some(5120));
    assert_eq!(
        plan[19].timing.bandwidth,
        Some(1000),
        "the group's bandwidth"
    );
    assert_eq!(plan[0].timing.bandwidth, None, "the fleet's (fast) timing");
    assert_eq!(plan[10].group, 1);

    // The same seed gives the same fleet; another seed another choice of the 50%.
    let again = fleet::plan(&cfg).unwrap();
    let drops = |p: &[fleet::DevicePlan]| -> Vec<bool> {
        p.iter().map(|d| d.faults.drop_at(100).is_some()).collect()
    };
    assert_eq!(drops(&plan), drops(&again));
    let differs = (1..20u64).any(|seed| {
        let mut c = cfg.clone();
        c.seed = seed;
        drops(&fleet::plan(&c).unwrap()) != drops(&plan)
    });
    assert!(differs);
}

#[test]
fn fleet_files_describe_mixed_fleets_and_their_errors_are_precise() {
    let text = r#"
        faults = "busy:dev=3"

        [[group]]
        count = 2
        project = "thermostat"
        version = "1.4.2"
        chip = "esp32c3"

        [[group]]
        count = 3
        project = "doorbell"
        chip = "ESP32-S3"
        secure_version = 2
        faults = "drop@50%:dev=1"
        bandwidth = "50KiB/s"
        slot_size = "2MiB"
    "#;
    let file = FleetFile::parse(text, "fleet.toml", &GroupConfig::new(1)).unwrap();
    assert_eq!(file.groups.len(), 2);
    let (a, b) = (&file.groups[0], &file.groups[1]);
    assert_eq!(
        (a.count, a.project.as_str(), a.version.as_str()),
        (2, "thermostat", "1.4.2")
    );
    assert_eq!(a.chip, Chip::Esp32c3);
    assert_eq!(b.version, "1.0.0", "defaults fill what a group leaves out");
    assert_eq!(b.chip, Chip::Esp32s3);
    assert_eq!(b.secure_version, 2);
    assert_eq!(b.bandwidth, Some(Some(50 * 1024)));
    assert_eq!(b.slot_size, 2 << 20);
    assert_eq!(file.faults.rules().len(), 1);

    let bad = [
        (
            "[[group]]\ncount = 0",
            "group 1, count: it must be at least 1",
        ),
        (
            "[[group]]\ncount = 1\nchip = \"z80\"",
            "group 1, chip: unknown chip `z80`",
        ),
        (
            "[[group]]\ncount = 1\nfaults = \"explode\"",
            "`explode` is not a fault",
        ),
        (
            "[[group]]\ncount = 1\nbandwidth = \"fast\"",
            "`fast` is not a rate",
        ),
        (
            "[[group]]\ncount = 1\nslot_size = \"1000\"",
            "multiple of 4 KiB",
        ),
        (
            "[[group]]\ncount = 1\ncolour = \"red\"",
            "unknown field `colour`",
        ),
        ("faults = \"busy\"", "no [[group]] table"),
        ("[[group]]\nproject = \"x\"", "missing field `count`"),
    ];
    for (text, needle) in bad {
        let err = FleetFile::parse(text, "f.toml", &GroupConfig::new(1)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("the fleet file f.toml is invalid: "),
            "{msg}"
        );
        assert!(msg.contains(needle), "{text:?}: {msg}");
    }
}

aegis_testkit::netns_test! {
    fn a_running_fleet_is_browsable_answers_info_and_says_goodbye() {
        const N: u32 = 20;
        let browser = Browser::start();
        let rt = runtime();
        let mut cfg = fast(N);
        cfg.faults = FaultSpec::from_str("busy:dev=2").unwrap();
        let fleet = rt.block_on(Fleet::start(cfg)).unwrap();
        let state = fleet.state_dir().to_path_buf();
        assert!(state.join("devices/240ac4000001").is_dir());
        assert!(fleet.summary().contains("20 simulated ESP32 devices"), "{}", fleet.summary());
        assert!(fleet.summary().contains("127.0.1.1 .. 127.0.1.20"), "{}", fleet.summary());
        assert!(fleet.summary().contains("temporary"), "{}", fleet.summary());

        let seen = browser.resolve_all(N as usize, Duration::from_secs(60));
        assert_eq!(seen.len(), N as usize);
        for d in fleet.devices() {
            let p = &d.plan;
            let ev = &seen[&instance(&p.hostname)];
            assert_eq!(ev.addresses, vec![p.ip.to_string()]);
            assert_eq!(ev.port, p.port);
            let txt = |k: &str| ev.txt.get(k).cloned().flatten();
            assert_eq!(txt("id").as_deref(), Some(p.id.as_str()));
            assert_eq!(txt("host").as_deref(), Some(p.hostname.as_str()));
            assert_eq!(txt("ip"), Some(p.ip.to_string()));
            assert_eq!(txt("ver").as_deref(), Some("1.0.0"));
            assert_eq!(txt("proj").as_deref(), Some("demo"));
            assert_eq!(txt("chip").as_deref(), Some("esp32"));
            assert_eq!(txt("proto").as_deref(), Some("1"));
            assert_eq!(txt("state").as_deref(), Some("idle"));
            assert_eq!(txt("key"), None, "no trusted key");
        }

        rt.block_on(async {
            let http = reqwest::Client::new();
            for d in &fleet.devices()[..3] {
                let url = format!("http://{}:{}/aegis/v1/info", d.plan.ip, d.plan.port);
                let info: serde_json::Value =
                    http.get(&url).send().await.unwrap().json().await.unwrap();
                assert_eq!(info["id"], d.plan.id.as_str());
                assert_eq!(info["ip"], d.plan.ip.to_string());
            }
            // The fault spec reached the devices: device 2 is busy, device 1 is not.
            let post = |d: &fleet::FleetDevice| {
                http.post(format!("http://{}:{}/aegis/v1/ota", d.plan.ip, d.plan.port))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
            };
            assert_eq!(post(&fleet.devices()[1]).await.unwrap().status(), 409);
            assert_eq!(post(&fleet.devices()[0]).await.unwrap().status(), 400);
        });

        let t = Instant::now();
        rt.block_on(fleet.shutdown());
        println!("20 devices shut down in {:.2?}", t.elapsed());
        let mut removed = std::collections::HashSet::new();
        while removed.len() < N as usize {
            let ev = browser
                .wait_for(Duration::from_secs(10), |ev| ev.event == "removed")
                .expect("every device says goodbye");
            removed.insert(ev.name);
        }
        assert!(!state.exists(), "the temporary state dir is removed");
    }
}

aegis_testkit::netns_test! {
    fn a_persistent_fleet_comes_back_running_what_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let mut cfg = fast(3);
        cfg.state_dir = StateDir::Persistent(dir.path().to_path_buf());
        let fleet = rt.block_on(Fleet::start(cfg.clone())).unwrap();
        for d in fleet.devices() {
            assert_eq!(d.node.status().version, "1.0.0");
        }
        rt.block_on(fleet.shutdown());
        assert!(dir.path().join("devices/240ac4000003").is_dir(), "the state is kept");

        // Restarted with other flags: the flash decides, not the flags.
        cfg.groups[0].version = "9.9.9".into();
        let fleet = rt.block_on(Fleet::start(cfg)).unwrap();
        assert!(fleet.summary().contains("(kept)"), "{}", fleet.summary());
        for d in fleet.devices() {
            assert_eq!(d.node.status().version, "1.0.0", "{}", d.plan.hostname);
        }
        rt.block_on(fleet.shutdown());
    }
}

aegis_testkit::netns_test! {
    fn a_mixed_fleet_announces_each_group_as_configured() {
        let browser = Browser::start();
        let rt = runtime();
        let text = "[[group]]\ncount = 2\nproject = \"thermostat\"\nversion = \"1.4.2\"\n\
                    chip = \"esp32c3\"\n[[group]]\ncount = 2\nproject = \"doorbell\"\n\
                    version = \"0.9.0\"\nchip = \"esp32s3\"\n";
        let file = FleetFile::parse(text, "fleet.toml", &GroupConfig::new(1)).unwrap();
        let mut cfg = fast(0);
        cfg.groups = file.groups;
        let fleet = rt.block_on(Fleet::start(cfg)).unwrap();
        let seen = browser.resolve_all(4, Duration::from_secs(30));
        let got = |host: &str, key: &str| seen[&instance(host)].txt.get(key).cloned().flatten();
        assert_eq!(got("esp-sim-001", "proj").as_deref(), Some("thermostat"));
        assert_eq!(got("esp-sim-002", "chip").as_deref(), Some("esp32c3"));
        assert_eq!(got("esp-sim-003", "ver").as_deref(), Some("0.9.0"));
        assert_eq!(got("esp-sim-004", "chip").as_deref(), Some("esp32s3"));
        // Identical factory images within a group are stored once.
        let blobs = std::fs::read_dir(fleet.state_dir().join("blobs")).unwrap().count();
        assert_eq!(blobs, 2, "one blob per group");
        rt.block_on(fleet.shutdown());
    }
}

aegis_testkit::netns_test! {
    fn run_stops_by_itself_after_the_set_time() {
        let opts = RunOptions {
            report_stats: Some(Duration::from_millis(100)),
            stop_after: Some(Duration::from_millis(400)),
        };
        fleet::run(fast(5), opts).unwrap();
    }
}

aegis_testkit::netns_test! {
    /// A measurement, not a check: how many bytes per second a fleet in one process absorbs
    /// when every device updates at once (fast timing, unlimited bandwidth, 1 MiB image,
    /// devices from `AEGIS_SIM_BENCH_DEVICES`, default 200). Run it in release mode:
    /// `cargo test --release -p aegis-sim --test it -- --ignored --nocapture measure_`.
    #[ignore = "a measurement; run it on purpose"]
    fn measure_a_full_update_of_the_whole_fleet() {
        use aegis_protocol::{Sha256Hex, Trigger};
        let n: u32 = std::env::var("AEGIS_SIM_BENCH_DEVICES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let rt = runtime();
        rt.block_on(async {
            let fw = crate::node_kit::FileServer::start().await;
            let image = aegis_image::ImageBuilder::new(Chip::Esp32)
                .version("2.0.0")
                .project("demo")
                .size(1 << 20)
                .build()
                .unwrap();
            let url = fw.put("v2.bin", &image);
            let fleet = Fleet::start(fast(n)).await.unwrap();
            let http = reqwest::Client::new();
            let start = Instant::now();
            let posts = fleet.devices().iter().map(|d| {
                let (http, url, image) = (http.clone(), url.clone(), &image);
                async move {
                    let base = format!("http://{}:{}", d.plan.ip, d.plan.port);
                    let info: serde_json::Value = http
                        .get(format!("{base}/aegis/v1/info"))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let t = Trigger {
                        url,
                        hash: Sha256Hex::digest(image),
                        version: "2.0.0".into(),
                        size: image.len() as u64,
                        deployment: "bench".into(),
                        report: None,
                        nonce: Some(aegis_protocol::Nonce::parse(info["nonce"].as_str().unwrap()).unwrap()),
                        allow_downgrade: false,
                        sig: None,
                    };
                    let r = http
                        .post(format!("{base}/aegis/v1/ota"))
                        .header("content-type", "application/json")
                        .body(t.to_body().unwrap())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
            });
            futures_util::future::join_all(posts).await;
            for d in fleet.devices() {
                let done = tokio::time::timeout(
                    Duration::from_secs(600),
                    d.node.wait_for(|s| s.version == "2.0.0" && s.last.is_some()),
                )
                .await;
                assert!(matches!(done, Ok(true)), "{} did not update", d.plan.hostname);
            }
            let secs = start.elapsed().as_secs_f64();
            let bytes = f64::from(n) * image.len() as f64;
            println!(
                "{n} devices updated with a 1 MiB image in {secs:.2} s: {:.1} MiB/s absorbed \
                 ({:.1} devices/s)",
                bytes / secs / 1048576.0,
                f64::from(n) / secs
            );
            fleet.shutdown().await;
        });
    }
}
