//! The whole path, for real: a simulated fleet announces itself over mDNS, the server discovers
//! it, a firmware image is uploaded through the API, a rollout is created through the API, the
//! devices pull the image from the firmware endpoint, flash, reboot and come back, and the
//! server confirms each one. Fast timing, real sockets, real mDNS, in a private namespace.

use std::future::Future;
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_sim::fleet::{Fleet, FleetConfig, GroupConfig};
use aegis_sim::timing::Timing;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::serve::{Running, runtime, start};

/// Builds an image the simulated ESP32s accept (they run project `demo` on an esp32).
fn release(version: &str, behavior: SimBehavior) -> Vec<u8> {
    ImageBuilder::new(Chip::Esp32)
        .version(version)
        .project("demo")
        .size(128 * 1024)
        .behavior(behavior)
        .build()
        .unwrap()
}

/// Re-checks `check` whenever the server publishes events (and at least every 500 ms while it
/// is quiet), until it holds or `limit` passes.
pub(crate) async fn wait_until<F, Fut>(server: &Running, what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let resp = server
        .http
        .get(server.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    let mut events = resp.bytes_stream();
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let quiet = (Instant::now() + Duration::from_millis(500)).min(deadline);
        // Drain whatever arrives until the stream goes quiet briefly, then check again.
        let _ = tokio::time::timeout_at(quiet, events.next()).await;
    }
}

pub(crate) async fn online_devices(server: &Running) -> usize {
    let (_, devices) = server.get_json("/api/v1/devices").await;
    devices
        .as_array()
        .map_or(0, |d| d.iter().filter(|d| d["online"] == true).count())
}

async fn start_fleet(server: &Running, groups: Vec<GroupConfig>, faults: &str) -> Fleet {
    // Devices trust this server's key, as devices built with `aegis keys export` would.
    let key = aegis_server::keys::load_or_create_signing_key(server.dir.path())
        .unwrap()
        .value
        .public_key();
    let mut cfg = FleetConfig::new(0);
    cfg.groups = groups;
    cfg.timing = Timing::fast();
    cfg.trusted_key = Some(key);
    cfg.faults = faults.parse().unwrap();
    Fleet::start(cfg).await.unwrap()
}

async fn upload(server: &Running, bytes: Vec<u8>) -> String {
    let (status, entry) = server.upload(bytes, "?filename=demo.bin").await;
    assert!(status == 201 || status == 200, "upload: {status} {entry}");
    entry["sha256"].as_str().unwrap().to_string()
}

pub(crate) async fn create(server: &Running, body: Value) -> Value {
    let resp = server
        .http
        .post(server.url("/api/v1/rollouts"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

pub(crate) async fn rollout(server: &Running, id: &str) -> Value {
    server.get_json(&format!("/api/v1/rollouts/{id}")).await.1
}

pub(crate) async fn settled(server: &Running, id: &str) -> bool {
    let r = rollout(server, id).await;
    r["state"] != "running"
        && r["targets"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["state"] != "in_progress"))
}

fn target_states(r: &Value) -> Vec<(String, String)> {
    r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["device"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn audit(server: &Running, query: &str) -> Vec<Value> {
    let (status, body) = server.get_json(&format!("/api/v1/audit?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

aegis_testkit::netns_test! {
    /// 200 devices discovered; a rollout with max parallel 50 and a canary of 5 ends with 200
    /// succeeded, 200 audited attempts, and every device confirmed on the new image.
    fn two_hundred_devices_are_discovered_and_updated() {
        runtime().block_on(async {
            let server = start(|c| c.discovery = true).await;
            let fleet = start_fleet(&server, vec![GroupConfig::new(200)], "").await;
            wait_until(&server, "200 devices online", Duration::from_secs(120), || async {
                online_devices(&server).await == 200
            })
            .await;

            let sha = upload(&server, release("2.0.0", SimBehavior::Boots)).await;
            let created = create(&server, json!({
                "firmware": sha,
                "targets": {"selector": "outdated"},
                "strategy": {"max_parallel": 50, "canary": 5, "timeout_s": 120},
            }))
            .await;
            let id = created["id"].as_str().unwrap().to_string();
            assert_eq!(created["targets"].as_array().unwrap().len(), 200);

            wait_until(&server, "the rollout to settle", Duration::from_secs(300), || {
                settled(&server, &id)
            })
            .await;
            let r = rollout(&server, &id).await;
            assert_eq!(r["state"], "completed", "{}", r["reason"]);
            assert_eq!(r["counts"], json!({"succeeded": 200}));

            let attempts = audit(&server, &format!("rollout={id}&kind=attempt")).await;
            assert_eq!(attempts.len(), 200);
            assert!(attempts.iter().all(|a| a["outcome"] == "succeeded"));

            // Each device really runs the new image, by its own account.
            for d in fleet.devices() {
                let s = d.node.status();
                assert_eq!(s.sha256.as_str(), sha, "{}", d.plan.hostname);
                assert_eq!(s.version, "2.0.0");
            }
            let (_, verify) = server.get_json("/api/v1/audit/verify").await;
            assert_eq!(verify["intact"], true, "{verify}");
            fleet.shutdown().await;
            server.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    /// Every fault ends in the state it implies; a crashing release trips the failure
    /// threshold; retry-failed re-runs only the failed devices.
    fn faults_end_in_the_states_they_imply() {
        runtime().block_on(async {
            // Stalled downloads are cut after 1 s (the device stalls for 3 s in fast timing).
            let server = start(|c| {
                c.discovery = true;
                c.stall_timeout = Duration::from_secs(1);
            })
            .await;
            let fleet = start_fleet(
                &server,
                vec![GroupConfig::new(10)],
                "corrupt@50%:dev=2;power-loss=write:dev=3;never-return:dev=4;busy:dev=5;\
                 power-loss=reboot:dev=6;stall@30%:dev=7;drop@60%:dev=8",
            )
            .await;
            let id_of = |n: usize| fleet.devices()[n - 1].plan.id.clone();
            wait_until(&server, "10 devices online", Duration::from_secs(60), || async {
                online_devices(&server).await == 10
            })
            .await;

            let good = upload(&server, release("2.0.0", SimBehavior::Boots)).await;
            let created = create(&server, json!({
                "firmware": good,
                "targets": {"selector": "all"},
                "strategy": {"max_parallel": 10, "canary": 0, "max_failure_pct": 100,
                             "retries": 0, "timeout_s": 20},
            }))
            .await;
            let id = created["id"].as_str().unwrap().to_string();
            wait_until(&server, "the rollout to settle", Duration::from_secs(120), || {
                settled(&server, &id)
            })
            .await;
            let r = rollout(&server, &id).await;
            let states: std::collections::HashMap<_, _> = target_states(&r).into_iter().collect();
            let expect = |n: usize, state: &str| {
                assert_eq!(states[&id_of(n)], state, "device {n}: {r}");
            };
            expect(1, "succeeded");
            expect(2, "failed"); // corrupted in transit: SHA-256 mismatch
            expect(3, "failed"); // power lost while committing: the old image boots
            expect(4, "timed_out"); // never came back
            expect(5, "failed"); // busy: 409
            expect(6, "rolled_back"); // power lost before confirming: the bootloader rolls back
            // A stalled link (cut by the server, resumed by the device) and a dropped connection
            // (resumed with Range) both end well, within one attempt.
            for n in 7..=10 {
                expect(n, "succeeded");
            }
            for n in [7, 8] {
                let t = r["targets"].as_array().unwrap().iter()
                    .find(|t| t["device"] == id_of(n).as_str()).unwrap();
                assert_eq!(t["attempts"], 1, "device {n} needed no retry: {t}");
            }
            let error_of = |n: usize| {
                r["targets"].as_array().unwrap().iter()
                    .find(|t| t["device"] == id_of(n).as_str()).unwrap()["error"]
                    .as_str().unwrap_or_default().to_string()
            };
            assert!(error_of(2).contains("hash_mismatch"), "{}", error_of(2));
            assert!(error_of(5).contains("409"), "{}", error_of(5));

            // A crashing release to the nine reachable devices: one at a time, no canary, 25%
            // allowed: two rollbacks (22%) are tolerated, the third (33%) pauses it.
            let crash = upload(&server, release("2.1.0", SimBehavior::CrashesAtBoot)).await;
            let reachable: Vec<String> = (1..=10).filter(|&n| n != 4).map(id_of).collect();
            let created = create(&server, json!({
                "firmware": crash,
                "targets": {"ids": reachable},
                "strategy": {"max_parallel": 1, "canary": 0, "max_failure_pct": 25,
                             "retries": 0, "timeout_s": 30},
            }))
            .await;
            let crash_id = created["id"].as_str().unwrap().to_string();
            wait_until(&server, "the crashing rollout to pause", Duration::from_secs(120), || {
                settled(&server, &crash_id)
            })
            .await;
            let r = rollout(&server, &crash_id).await;
            assert_eq!(r["state"], "paused", "{r}");
            assert!(r["reason"].as_str().unwrap().contains("failed"), "{}", r["reason"]);
            let rolled_back: Vec<String> = target_states(&r)
                .into_iter()
                .filter(|(_, s)| s == "rolled_back")
                .map(|(d, _)| d)
                .collect();
            let failed_total = target_states(&r).iter()
                .filter(|(_, s)| ["failed", "rolled_back", "timed_out"].contains(&s.as_str()))
                .count();
            assert_eq!(failed_total, 3, "{r}");
            assert!(rolled_back.len() >= 2, "{r}");
            let pending_before = target_states(&r).iter().filter(|(_, s)| s == "pending").count();
            assert!(pending_before > 0, "the rest was left untouched: {r}");

            // The devices still announce their previous version.
            for d in &rolled_back {
                let (_, dev) = server.get_json(&format!("/api/v1/devices/{d}")).await;
                assert_ne!(dev["version"], "2.1.0", "{dev}");
            }

            // retry-failed: only the failed ones start again (the rest stays pending while the
            // threshold, re-armed, trips again on the same crashes).
            let before = audit(&server, &format!("rollout={crash_id}&kind=attempt")).await.len();
            let resp = server.http
                .post(server.url(&format!("/api/v1/rollouts/{crash_id}/retry-failed")))
                .send().await.unwrap();
            assert_eq!(resp.status(), 200);
            wait_until(&server, "the retried rollout to settle", Duration::from_secs(120), || {
                settled(&server, &crash_id)
            })
            .await;
            let after = audit(&server, &format!("rollout={crash_id}&kind=attempt")).await;
            let retried: std::collections::HashSet<String> = after[before..]
                .iter()
                .map(|a| a["device"].as_str().unwrap().to_string())
                .collect();
            let first_failed: std::collections::HashSet<String> = after[..before]
                .iter()
                .map(|a| a["device"].as_str().unwrap().to_string())
                .collect();
            // Targets run in order one at a time, so the three retried devices go first, crash
            // again and trip the threshold again before any untouched device starts.
            assert_eq!(retried, first_failed, "retry-failed re-ran exactly the failed devices");
            fleet.shutdown().await;
            server.stop().await;
        });
    }
}
