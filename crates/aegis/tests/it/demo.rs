//! `aegis demo`: the real binary starts a server and a simulated fleet on loopback, the fleet
//! is discovered, the library holds the demo releases, and Ctrl-C stops everything cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

aegis_testkit::netns_test! {
    fn demo_starts_a_discoverable_fleet_with_releases_and_stops_on_ctrl_c() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aegis"))
            .args(["demo", "--devices", "5", "--no-open", "--bandwidth", "unlimited"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read what it prints until it says how to stop it (bounded by the child's own start).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                if line.starts_with("Ctrl-C") {
                    let _ = tx.send(text.clone());
                }
            }
        });
        let banner = rx.recv_timeout(Duration::from_secs(120)).expect("the demo printed its banner");
        assert!(banner.contains("dashboard  http://127.0.0.1:3000/"), "{banner}");
        assert!(banner.contains("5 simulated ESP32s on 127.0.1.1 to 127.0.1.5"), "{banner}");
        assert!(banner.contains("aegis deploy "), "{banner}");

        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let base = "http://127.0.0.1:3000/api/v1";
            let firmware: serde_json::Value =
                http.get(format!("{base}/firmware")).send().await.unwrap().json().await.unwrap();
            let mut versions: Vec<String> = firmware
                .as_array()
                .unwrap()
                .iter()
                .map(|f| format!("{} {}", f["project"].as_str().unwrap(), f["version"].as_str().unwrap()))
                .collect();
            versions.sort();
            assert_eq!(versions, ["demo 2.0.0", "demo 2.1.0", "sensor 1.5.0"]);

            // Wait (on the event stream) until all five devices are online.
            let mut events = http.get(format!("{base}/events")).send().await.unwrap().bytes_stream();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let devices: serde_json::Value =
                    http.get(format!("{base}/devices")).send().await.unwrap().json().await.unwrap();
                let online = devices.as_array().unwrap().iter().filter(|d| d["online"] == true).count();
                if online == 5 {
                    let outdated = devices
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|d| d["project"] == "demo" && d["version"] == "1.0.0")
                        .count();
                    assert_eq!(outdated, 2, "{devices}");
                    break;
                }
                assert!(Instant::now() < deadline, "only {online} of 5 devices online: {devices}");
                let _ = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
            }
        });

        // Ctrl-C: a clean stop.
        let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        let exit = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo stopped after Ctrl-C")
            .unwrap();
        assert!(exit.success(), "{exit}");
    }
}

/// Refused before anything is bound, so no namespace is needed.
#[test]
fn demo_refuses_non_loopback_addresses() {
    {
        let out = Command::new(env!("CARGO_BIN_EXE_aegis"))
            .args(["demo", "--listen", "0.0.0.0:3000", "--no-open"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a loopback address"), "{err}");
    }
}
