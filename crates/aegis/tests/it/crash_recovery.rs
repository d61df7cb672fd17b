//! The server is killed hard (SIGKILL) in the middle of a rollout and started again on the same
//! data: no audit record it had acknowledged is lost, the hash chain verifies, and the rollout
//! resumes, re-confirming the devices that were in flight against what they actually run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder};
use aegis_sim::fleet::{Fleet, FleetConfig};
use aegis_sim::timing::Timing;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

const API: &str = "http://127.0.0.1:3000/api/v1";

fn start_server(data_dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:3000",
            "--device-listen",
            "127.0.0.1:3001",
            "--no-open",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn get(http: &reqwest::Client, path: &str) -> Value {
    http.get(format!("{API}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the server answers `/health` (connection refused until it listens).
async fn wait_healthy(http: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(20);
    loop {
        if let Ok(r) = http.get(format!("{API}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        // Nothing to subscribe to before the server listens: back off instead.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Re-checks `check` on every server event (and every 500 ms while quiet) until it holds.
async fn wait_until<F, Fut>(http: &reqwest::Client, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut events = http
        .get(format!("{API}/events"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let _ = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
    }
}

fn count(r: &Value, state: &str) -> u64 {
    r["counts"][state].as_u64().unwrap_or(0)
}

aegis_testkit::netns_test! {
    fn a_hard_kill_mid_rollout_loses_no_acknowledged_record_and_the_rollout_resumes() {
        let dir = tempfile::tempdir().unwrap();
        // The key devices trust (the server loads it).
        let key = aegis_server::keys::load_or_create_signing_key(dir.path()).unwrap().value.public_key();
        let mut server = start_server(dir.path());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            wait_healthy(&http).await;

            // 12 devices pulling at 128 KiB/s: a 384 KiB image takes ~3 s each.
            let mut cfg = FleetConfig::new(12);
            cfg.timing = Timing { bandwidth: Some(128 * 1024), ..Timing::fast() };
            cfg.trusted_key = Some(key);
            let fleet = Fleet::start(cfg).await.unwrap();
            wait_until(&http, "12 devices online", || async {
                get(&http, "/devices").await.as_array().unwrap().iter().filter(|d| d["online"] == true).count() == 12
            })
            .await;

            let image = ImageBuilder::new(Chip::Esp32).project("demo").version("2.0.0")
                .size(384 * 1024).build().unwrap();
            let entry: Value = http.post(format!("{API}/firmware"))
                .header("content-type", "application/octet-stream")
                .body(image).send().await.unwrap().json().await.unwrap();
            let sha = entry["sha256"].as_str().unwrap().to_string();
            let created: Value = http.post(format!("{API}/rollouts"))
                .json(&json!({"firmware": sha, "targets": {"selector": "all"},
                              "strategy": {"max_parallel": 4, "canary": 0, "timeout_s": 120}}))
                .send().await.unwrap().json().await.unwrap();
            let id = created["id"].as_str().unwrap().to_string();

            // Mid-flight: some done, some in progress.
            wait_until(&http, "a rollout half done", || async {
                let r = get(&http, &format!("/rollouts/{id}")).await;
                count(&r, "succeeded") >= 2 && count(&r, "in_progress") >= 1
            })
            .await;
            // Everything the server has acknowledged so far (the API reads committed records).
            let acknowledged = get(&http, "/audit").await.as_array().unwrap().clone();
            assert!(acknowledged.len() > 10);

            // Hard kill, then the same command again.
            server.kill().unwrap();
            server.wait().unwrap();
            server = start_server(dir.path());
            wait_healthy(&http).await;

            let after = get(&http, "/audit").await.as_array().unwrap().clone();
            for old in &acknowledged {
                let seq = old["seq"].as_u64().unwrap();
                let now = after.iter().find(|r| r["seq"].as_u64() == Some(seq));
                assert_eq!(now, Some(old), "acknowledged record {seq} survived unchanged");
            }
            let verify = get(&http, "/audit/verify").await;
            assert_eq!(verify["intact"], true, "{verify}");
            assert!(
                after.iter().any(|r| r["kind"] == "rollout_recovered" && r["rollout"] == id.as_str()),
                "the restarted server recorded that it resumed the rollout"
            );

            wait_until(&http, "the resumed rollout to complete", || async {
                get(&http, &format!("/rollouts/{id}")).await["state"] == "completed"
            })
            .await;
            let r = get(&http, &format!("/rollouts/{id}")).await;
            assert_eq!(r["counts"], json!({"succeeded": 12}), "{r}");
            for d in fleet.devices() {
                assert_eq!(d.node.status().sha256.as_str(), sha);
            }
            let verify = get(&http, "/audit/verify").await;
            assert_eq!(verify["intact"], true, "{verify}");
            fleet.shutdown().await;
        });
        let _ = server.kill();
        let _ = server.wait();
    }
}
