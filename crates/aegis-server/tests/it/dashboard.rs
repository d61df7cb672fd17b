//! The dashboard in a real browser (headless Chromium over WebDriver), against the real server
//! with mDNS discovery and a simulated fleet, all inside a private network namespace. The tests
//! assert on what the page shows, and save the screenshots in docs/screenshots/.

mod browser;
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_sim::fleet::{Fleet, FleetConfig};
use aegis_sim::timing::Timing;
use browser::Browser;
use serde_json::{Value, json};

use crate::serve::{Running, runtime, start};

/// Download rate of every simulated device, bytes/s: slow enough that a bar is seen moving.
const BANDWIDTH: u64 = 1_000_000;
/// Size of the test images: well past what loopback socket buffers absorb at once (the
/// server counts bytes as it sends them), so progress is gradual.
const IMAGE_SIZE: u64 = 3 * 1024 * 1024;

fn screenshot(name: &str) -> PathBuf {
    aegis_testkit::paths::workspace_root()
        .join("docs/screenshots")
        .join(name)
}

fn demo_image(version: &str, behavior: SimBehavior) -> Vec<u8> {
    ImageBuilder::new(Chip::Esp32)
        .project("demo")
        .version(version)
        .size(IMAGE_SIZE)
        .behavior(behavior)
        .build()
        .unwrap()
}

/// A server with discovery on, `devices` simulated devices (demo 1.0.0, esp32, fast timing
/// with a bandwidth limit), and a browser on the dashboard once the fleet table lists them all.
async fn lab(devices: u32) -> (Running, Fleet, Browser) {
    let server = start(|c| c.discovery = true).await;
    let mut cfg = FleetConfig::new(devices);
    cfg.timing = Timing {
        bandwidth: Some(BANDWIDTH),
        ..Timing::fast()
    };
    cfg.groups[0].slot_size = 4 * 1024 * 1024;
    let fleet = Fleet::start(cfg).await.unwrap();
    let browser = Browser::start(1360, 860).await;
    browser.goto(&server.url("/")).await;
    browser
        .wait_for(
            "every simulated device online in the fleet table",
            60,
            &format!(
                "return document.querySelectorAll('#fleet tbody tr td[data-on=online]').length === {devices}"
            ),
        )
        .await;
    (server, fleet, browser)
}

/// Runs the Deploy page's dry run and starts the rollout; returns its id.
async fn deploy_from_page(b: &Browser, expect_deploy: usize, parallel: &str) -> String {
    b.fill("#strategy-max_parallel", parallel).await;
    b.fill("#strategy-canary", "1").await;
    b.click("#preview").await;
    let summary = b
        .wait_for(
            "the dry run",
            20,
            "const e = document.querySelector('#plan-summary'); return e && e.innerText",
        )
        .await;
    let summary = summary.as_str().unwrap().to_string();
    assert!(
        summary.starts_with(&format!("{expect_deploy} devices get demo")),
        "{summary}"
    );
    assert!(summary.contains("Estimated time: about"), "{summary}");
    let decisions = b
        .exec(
            "return [...document.querySelectorAll('#plan-targets tbody tr')].map(r => r.dataset.decision)",
            json!([]),
        )
        .await;
    assert_eq!(decisions, json!(vec!["deploy"; expect_deploy]));
    b.click("#start").await;
    let hash = b
        .wait_for(
            "the rollout page",
            20,
            "return location.hash.startsWith('#/rollout/') && location.hash",
        )
        .await;
    hash.as_str()
        .unwrap()
        .trim_start_matches("#/rollout/")
        .to_string()
}

/// Each target row: device -> (state, bar value 0..1, phase).
async fn target_rows(b: &Browser) -> BTreeMap<String, (String, f64, String)> {
    let v = b
        .exec(
            "return [...document.querySelectorAll('#targets tbody tr')].map(r => \
             [r.dataset.device, r.dataset.state, r.querySelector('progress').value, \
              r.children[3].innerText])",
            json!([]),
        )
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                (
                    r[1].as_str().unwrap().to_string(),
                    r[2].as_f64().unwrap(),
                    r[3].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

aegis_testkit::netns_test! {
    fn the_dashboard_shows_the_fleet_uploads_deploys_and_audits() {
        runtime().block_on(async {
            let (server, fleet, b) = lab(4).await;
            let ids: BTreeSet<String> = fleet.devices().iter().map(|d| d.plan.id.clone()).collect();
            let shown = b
                .exec("return [...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.id)", json!([]))
                .await;
            let shown: BTreeSet<String> = serde_json::from_value(shown).unwrap();
            assert_eq!(shown, ids);
            let first = b.text("#fleet tbody tr").await;
            assert!(first.contains("esp-sim-001") && first.contains("1.0.0") && first.contains("seen"), "{first}");
            assert_eq!(b.text("#fleet-count").await, "4 of 4 shown");

            // Upload through the file picker: the entry appears with its parsed version.
            let tmp = tempfile::tempdir().unwrap();
            let good = tmp.path().join("demo-1.1.0.bin");
            std::fs::write(&good, demo_image("1.1.0", SimBehavior::Boots)).unwrap();
            b.click("a[data-nav=firmware]").await;
            b.wait_for("the firmware page", 10, "return !!document.querySelector('#drop-zone')").await;
            assert!(b.text("main").await.contains("No firmware yet"));
            b.type_into("#file-input", good.to_str().unwrap()).await;
            b.wait_for(
                "the upload to finish",
                30,
                "return document.querySelector('#upload-status').innerText.startsWith('Added')",
            )
            .await;
            assert_eq!(
                b.text("#upload-status").await,
                "Added demo 1.1.0 for esp32 (demo-1.1.0.bin)."
            );
            let progress = b.exec("return document.querySelector('#upload-progress').value", json!([])).await;
            assert_eq!(progress, json!(100));
            let row = b.text("#firmware tbody tr").await;
            assert!(row.contains("demo") && row.contains("1.1.0") && row.contains("3.00 MiB"), "{row}");

            // A bootloader is refused, and the page gives the validator's reason in words.
            let bootloader = aegis_testkit::paths::real_firmware_dir()
                .join("NEG-esp-serial-flasher-esp32-bootloader-5.2.2.bin")
                .canonicalize()
                .unwrap();
            let (status, body) = server.upload(std::fs::read(&bootloader).unwrap(), "").await;
            assert_eq!(status, 422);
            let reason = body["error"]["message"].as_str().unwrap().to_string();
            b.type_into("#file-input", bootloader.to_str().unwrap()).await;
            let refused = b
                .wait_for(
                    "the refusal",
                    30,
                    "const s = document.querySelector('#upload-status'); return s.className === 'bad' && s.innerText",
                )
                .await;
            assert_eq!(
                refused,
                json!(format!("Refused NEG-esp-serial-flasher-esp32-bootloader-5.2.2.bin: {reason}"))
            );

            // Drag and drop goes the same way (a file that is no image at all).
            b.exec(
                "const dt = new DataTransfer(); \
                 dt.items.add(new File(['hello, not firmware'], 'notes.txt')); \
                 const z = document.querySelector('#drop-zone'); \
                 z.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true})); \
                 z.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
                json!([]),
            )
            .await;
            let dropped = b
                .wait_for(
                    "the dropped file's refusal",
                    30,
                    "const s = document.querySelector('#upload-status'); \
                     return s.innerText.startsWith('Refused notes.txt') && s.innerText",
                )
                .await;
            assert!(dropped.as_str().unwrap().len() > "Refused notes.txt: ".len() + 10, "{dropped}");
            assert_eq!(b.exec("return document.querySelectorAll('#firmware tbody tr').length", json!([])).await, json!(1));

            // The fleet marks every device outdated against demo 1.1.0; filters work.
            b.click("a[data-nav=fleet]").await;
            b.wait_for(
                "outdated marks",
                10,
                "return document.querySelectorAll('#fleet .badge.warn').length === 4",
            )
            .await;
            assert_eq!(b.text("#fleet .badge.warn").await, "outdated → 1.1.0");
            b.fill("#fleet-search", "esp-sim-002").await;
            b.wait_for("the search to filter", 5, "return document.querySelector('#fleet-count').innerText === '1 of 4 shown'").await;
            b.fill("#fleet-search", "").await;
            b.wait_for("the search to clear", 5, "return document.querySelector('#fleet-count').innerText === '4 of 4 shown'").await;
            b.screenshot(&screenshot("fleet.png")).await;

            // Select all, deploy from the page: dry run first, then start.
            b.click("#select-all").await;
            assert_eq!(b.text("#deploy-selected").await, "Deploy to 4 selected…");
            b.click("#deploy-selected").await;
            b.wait_for("the deploy page", 10, "return !!document.querySelector('#targets-selected:checked')").await;
            assert!(b.exec("return document.querySelector('#start').disabled", json!([])).await == json!(true));
            let id = deploy_from_page(&b, 4, "2").await;

            // Watch it: every bar is seen part-way, then full; the rollout completes.
            let mut between: BTreeSet<String> = BTreeSet::new();
            let mut phases: BTreeSet<String> = BTreeSet::new();
            let mut shot = false;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
            loop {
                let rows = target_rows(&b).await;
                for (device, (state, bar, phase)) in &rows {
                    if state == "in_progress" {
                        phases.insert(phase.clone());
                    }
                    if *bar > 0.0 && *bar < 1.0 {
                        between.insert(device.clone());
                        if !shot && rows.values().filter(|r| r.0 == "succeeded").count() >= 1 {
                            b.screenshot(&screenshot("rollout.png")).await;
                            shot = true;
                        }
                    }
                }
                if b.text("#rollout-state").await == "completed" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the rollout did not complete: {rows:?}");
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            }
            let rows = target_rows(&b).await;
            assert_eq!(rows.keys().cloned().collect::<BTreeSet<_>>(), ids);
            for (device, (state, bar, _)) in &rows {
                assert_eq!((state.as_str(), *bar), ("succeeded", 1.0), "{device}");
            }
            assert_eq!(between, ids, "every device's bar was seen part-way");
            assert!(phases.contains("downloading"), "{phases:?}");
            assert!(shot, "a screenshot of the rollout in progress was taken");
            assert_eq!(b.text("#overall-text").await, "4 of 4 finished");
            assert_eq!(b.text("#counts").await.split_whitespace().collect::<Vec<_>>(), ["succeeded", "4"]);
            assert_eq!(b.text("#remaining").await, "none");
            assert!(b.exec("return document.querySelector('#pause').disabled", json!([])).await == json!(true));

            // A reload shows the same truth (read back from the API).
            b.goto(&server.url(&format!("/#/rollout/{id}"))).await;
            b.wait_for(
                "the reloaded rollout",
                20,
                "return document.querySelectorAll('#targets tbody tr[data-state=succeeded]').length === 4",
            )
            .await;
            assert_eq!(b.text("#rollout-state").await, "completed");

            // The fleet now runs 1.1.0, nothing outdated.
            b.click("a[data-nav=fleet]").await;
            b.wait_for(
                "the fleet on 1.1.0",
                30,
                "return [...document.querySelectorAll('#fleet tbody tr')].every(r => \
                 r.children[6].innerText === '1.1.0') && !document.querySelector('#fleet .badge.warn')",
            )
            .await;

            // A device's page lists its deployment from the audit log.
            b.click("#fleet tbody tr a").await;
            let history = b
                .wait_for(
                    "the device's history",
                    20,
                    "const rows = [...document.querySelectorAll('#history tbody tr')]; \
                     const a = rows.find(r => r.innerText.includes('attempt') && r.innerText.includes('succeeded')); \
                     return a && a.innerText",
                )
                .await;
            assert!(history.as_str().unwrap().contains("1.0.0 → 1.1.0"), "{history}");

            // The audit page lists the four attempts and says the chain is intact.
            b.click("a[data-nav=audit]").await;
            b.wait_for(
                "four successful attempts",
                20,
                "return document.querySelectorAll('#audit tbody tr[data-kind=attempt][data-outcome=succeeded]').length === 4",
            )
            .await;
            b.wait_for("the tamper check", 20, "return !!document.querySelector('#verify-result')").await;
            let verify = b.text("#verify-result").await;
            assert!(verify.starts_with("Tamper check: intact."), "{verify}");
            let csv = b.exec("return document.querySelector('#export-csv').getAttribute('href')", json!([])).await;
            assert_eq!(csv, json!("/api/v1/audit?format=csv"));
            b.screenshot(&screenshot("audit.png")).await;
            // Filtering by outcome asks the API again.
            b.exec(
                "const s = document.querySelector('#audit-kind'); s.value = 'attempt'; \
                 s.dispatchEvent(new Event('change'))",
                json!([]),
            )
            .await;
            b.wait_for(
                "only attempts",
                10,
                "const r = [...document.querySelectorAll('#audit tbody tr')]; \
                 return r.length === 4 && r.every(x => x.dataset.kind === 'attempt')",
            )
            .await;
            assert_eq!(
                b.exec("return document.querySelector('#export-json').getAttribute('href')", json!([])).await,
                json!("/api/v1/audit?kind=attempt&format=json")
            );

            // Phone width, and the dark scheme.
            b.click("a[data-nav=fleet]").await;
            b.resize(390, 844).await;
            b.color_scheme("dark").await;
            b.wait_for("the fleet table", 10, "return document.querySelectorAll('#fleet tbody tr').length === 4").await;
            let hidden = b
                .exec("return getComputedStyle(document.querySelector('#fleet td.wide')).display", json!([]))
                .await;
            assert_eq!(hidden, json!("none"), "secondary columns fold away on a phone");
            b.screenshot(&screenshot("fleet-phone-dark.png")).await;

            drop(b);
            fleet.shutdown().await;
            server.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn a_crashing_image_shows_rolled_back_devices_and_the_paused_rollout() {
        runtime().block_on(async {
            let (server, fleet, b) = lab(3).await;
            let (status, entry) = server.upload(demo_image("2.0.0", SimBehavior::CrashesAtBoot), "?filename=crash.bin").await;
            assert_eq!(status, 201);
            let sha = entry["sha256"].as_str().unwrap();

            b.goto(&server.url(&format!("/#/deploy?fw={sha}"))).await;
            b.wait_for("the deploy page", 10, "return !!document.querySelector('#targets-outdated:checked')").await;
            let id = deploy_from_page(&b, 3, "1").await;

            b.wait_for(
                "the rollout to pause",
                60,
                "return document.querySelector('#rollout-state').innerText === 'paused'",
            )
            .await;
            let rows = target_rows(&b).await;
            let rolled_back: Vec<_> = rows.iter().filter(|(_, r)| r.0 == "rolled_back").collect();
            assert_eq!(rolled_back.len(), 1, "the canary rolled back: {rows:?}");
            assert!(rows.values().filter(|r| r.0 == "pending").count() == 2, "{rows:?}");
            let reason = b.text("#rollout-reason").await;
            assert!(reason.starts_with("Paused: "), "{reason}");
            let row_reason = b
                .exec("return document.querySelector('#targets tr[data-state=rolled_back] td.reason').innerText", json!([]))
                .await;
            assert!(!row_reason.as_str().unwrap().is_empty(), "the rolled-back row says why");
            assert!(b.text("#counts").await.contains("rolled back"));
            assert!(b.exec("return document.querySelector('#resume').disabled", json!([])).await == json!(false));
            assert!(b.exec("return document.querySelector('#retry-failed').disabled", json!([])).await == json!(false));
            assert_eq!(b.text("#remaining").await, "stopped while paused");

            // Abort from the page: the waiting devices are cancelled.
            b.click("#abort").await;
            b.wait_for(
                "the abort",
                20,
                "return document.querySelector('#rollout-state').innerText === 'aborted' && \
                 document.querySelectorAll('#targets tr[data-state=cancelled]').length === 2",
            )
            .await;
            let api: Value = server.get_json(&format!("/api/v1/rollouts/{id}")).await.1;
            assert_eq!(api["state"], "aborted");

            drop(b);
            fleet.shutdown().await;
            server.stop().await;
        });
    }
}

/// `n` device records as discovery would have written them (the registry starts them offline
/// until they announce again, so a rollout skips each with its reason).
fn seed_devices(data_dir: &std::path::Path, n: u32) {
    use aegis_server::store::Store;
    let store = aegis_server::store::sqlite::SqliteStore::open(
        data_dir.join(aegis_server::server::DATABASE_FILE),
    )
    .unwrap();
    let now = aegis_server::time::Timestamp(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    );
    for i in 0..n {
        store
            .put_device(&aegis_server::devices::Device {
                id: format!("{:012x}", 0x240a_c410_0000_u64 + u64::from(i)),
                hostname: format!("bulk-{i:04}"),
                ip: format!("127.0.{}.{}", 10 + i / 200, 1 + i % 200),
                port: 9,
                version: "1.0.0".into(),
                project: Some("demo".into()),
                chip: Some("esp32".into()),
                sha: None,
                slot: Some("ota_0".into()),
                state: Some("idle".into()),
                proto: aegis_protocol::PROTOCOL_VERSION,
                key: None,
                online: true,
                first_seen: now,
                last_seen: now,
                duplicate: None,
            })
            .unwrap();
    }
}

aegis_testkit::netns_test! {
    fn a_thousand_devices_and_a_thousand_target_rollout_stay_smooth() {
        runtime().block_on(async {
            const N: u32 = 1000;
            let server = start(|c| seed_devices(&c.data_dir, N)).await;
            let b = Browser::start(1360, 860).await;
            let t0 = std::time::Instant::now();
            b.goto(&server.url("/")).await;
            b.wait_for(
                "a thousand rows",
                60,
                &format!("return document.querySelectorAll('#fleet tbody tr').length === {N}"),
            )
            .await;
            let render = t0.elapsed();
            b.exec(
                "window.__long = []; new PerformanceObserver(l => { for (const e of l.getEntries()) \
                 window.__long.push(e.duration); }).observe({type: 'longtask'});",
                json!([]),
            )
            .await;
            b.fill("#fleet-search", "bulk-099").await;
            b.wait_for("the search", 10, &format!("return document.querySelector('#fleet-count').innerText === '10 of {N} shown'")).await;
            b.fill("#fleet-search", "").await;

            // A rollout to all of them: a thousand target rows, each skipped with its reason.
            let (status, entry) = server.upload(demo_image("1.1.0", SimBehavior::Boots), "").await;
            assert_eq!(status, 201);
            let body = json!({"firmware": entry["sha256"], "targets": {"selector": "all"},
                "strategy": {"max_parallel": 200, "canary": 0, "max_failure_pct": 100,
                             "retries": 0, "timeout_s": 30}});
            let resp = server.http.post(server.url("/api/v1/rollouts")).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 201);
            let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
            b.exec("location.hash = arguments[0]", json!([format!("#/rollout/{id}")])).await;
            let t1 = std::time::Instant::now();
            b.wait_for(
                "every target on the page",
                60,
                &format!(
                    "return document.querySelector('#rollout-state').innerText === 'completed' && \
                     document.querySelectorAll('#targets tbody tr[data-state=skipped]').length === {N}"
                ),
            )
            .await;
            let finish = t1.elapsed();
            let api = server.get_json(&format!("/api/v1/rollouts/{id}")).await.1;
            assert_eq!(api["counts"], json!({"skipped": N}));
            assert_eq!(b.text("#overall-text").await, format!("{N} of {N} finished"));
            assert_eq!(b.text("#counts").await.split_whitespace().collect::<Vec<_>>(), ["skipped", "1000"]);
            let reason = api["targets"][0]["error"].as_str().unwrap().to_string();
            assert_eq!(b.text("#targets tbody tr td.reason").await, reason);

            let stats = b
                .exec(
                    "const l = window.__long; return {count: l.length, max: Math.max(0, ...l), \
                     total: l.reduce((a, b) => a + b, 0), \
                     heap: performance.memory ? performance.memory.usedJSHeapSize : null}",
                    json!([]),
                )
                .await;
            eprintln!(
                "dashboard at scale: {N} rows rendered {render:?} after load; rollout of {N} shown \
                 finished {finish:?} after it started; long tasks {stats}"
            );
            // The page never froze: no single task blocked it for a second.
            assert!(stats["max"].as_f64().unwrap() < 1000.0, "{stats}");
            drop(b);
            server.stop().await;
        });
    }
}
