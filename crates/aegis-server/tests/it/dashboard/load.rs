//! The dashboard under load, measured: the real server (mDNS discovery on) and a live simulated
//! fleet (1,000 devices by default, `AEGIS_DASHLOAD_DEVICES` overrides), each device downloading
//! at a limited rate so that transfers last seconds and progress events flow, and the rollout
//! page open in headless Chromium for the whole rollout of one image to every device.
//!
//! Ignored by default (minutes of CPU on a small box); run it explicitly:
//! `cargo test -p aegis-server --test it dashboard_under_a_live_rollout -- --ignored --nocapture`.
//! It prints what it measured (longest main-thread task, longest gap between animation frames,
//! JS heap, DOM nodes, events on the stream, the page's API reads) and asserts only what must
//! hold: the page ends showing exactly what the API says, it never stops drawing for 2 s, and
//! its heap after the rollout is at most a few times its heap after load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_sim::fleet::{Fleet, FleetConfig};
use aegis_sim::timing::Timing;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::browser::Browser;
use crate::serve::{runtime, start};

/// Download rate of every simulated device, bytes/s.
const BANDWIDTH: u64 = 256 * 1024;
/// The image every device receives: about two seconds of download each.
const IMAGE_SIZE: u64 = 512 * 1024;
/// Devices updated at once.
const PARALLEL: u32 = 100;
/// The page must draw at least this often (ms between animation frames), all along.
const MAX_FRAME_GAP_MS: f64 = 2000.0;
/// The heap after the rollout (after a GC) may be at most this many times the heap after load.
const MAX_HEAP_GROWTH: f64 = 4.0;

/// Installed in the page once it is loaded: long tasks (PerformanceObserver `longtask`), the
/// longest gap between animation frames, and every API read the page makes (re-reads on
/// `resync` or the periodic refresh show up here). `__m.reset()` starts a new phase.
const MONITOR: &str = r#"
const m = window.__m = {long: [], maxGap: 0, last: performance.now(), frames: 0, reads: {},
  reset() { this.long = []; this.maxGap = 0; this.frames = 0; this.reads = {}; this.last = performance.now(); }};
new PerformanceObserver(l => { for (const e of l.getEntries()) m.long.push(e.duration); })
  .observe({type: 'longtask'});
const tick = t => { const g = t - m.last; if (g > m.maxGap) m.maxGap = g; m.last = t; m.frames++;
  requestAnimationFrame(tick); };
requestAnimationFrame(tick);
const f = window.fetch;
window.fetch = function (u, ...rest) {
  const k = String(u).replace(/^https?:\/\/[^/]+/, '').split('?')[0].replace(/[0-9a-f]{8,}/g, ':id');
  m.reads[k] = (m.reads[k] || 0) + 1;
  return f.call(this, u, ...rest);
};
"#;

/// One sample of the page: heap, DOM nodes, and the long-task / frame-gap figures so far.
const SAMPLE: &str = r#"
const m = window.__m;
const gap = Math.max(m.maxGap, performance.now() - m.last);
return {heap: performance.memory.usedJSHeapSize, nodes: document.getElementsByTagName('*').length,
  longMax: Math.max(0, ...m.long), longCount: m.long.length,
  longTotal: m.long.reduce((a, b) => a + b, 0), maxGap: gap, frames: m.frames,
  reads: m.reads, visible: document.visibilityState,
  state: (document.querySelector('#rollout-state') || {}).innerText || null,
  done: document.querySelectorAll('#targets tbody tr[data-state=succeeded]').length};
"#;

fn devices() -> u32 {
    std::env::var("AEGIS_DASHLOAD_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// JS heap in use after a forced garbage collection, bytes.
async fn heap_after_gc(b: &Browser) -> f64 {
    b.cdp("HeapProfiler.collectGarbage", json!({})).await;
    b.exec("return performance.memory.usedJSHeapSize", json!([]))
        .await
        .as_f64()
        .unwrap()
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Counts the events on the server's stream by name until `stop` is set.
async fn count_events(
    http: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let resp = http.get(url).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let mut pending = String::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .map(|c| c.map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned())))
        else {
            continue;
        };
        pending.push_str(&chunk);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(name) = line.trim_end().strip_prefix("event: ") {
                *counts.entry(name.to_string()).or_default() += 1;
            }
        }
    }
    counts
}

aegis_testkit::netns_test! {
    #[ignore = "a measurement: minutes of CPU; run with --ignored --nocapture"]
    fn dashboard_under_a_live_rollout() {
        runtime().block_on(async {
            let n = devices();
            let t_start = Instant::now();
            let server = start(|c| c.discovery = true).await;
            let mut cfg = FleetConfig::new(n);
            cfg.timing = Timing { bandwidth: Some(BANDWIDTH), ..Timing::fast() };
            let fleet = Fleet::start(cfg).await.unwrap();
            let b = Browser::start(1360, 860).await;
            b.goto(&server.url("/")).await;
            b.wait_for("the dashboard script", 30, "return !!document.querySelector('#fleet')").await;
            b.exec(MONITOR, json!([])).await;

            // Discovery: the fleet table fills while 1,000 devices announce themselves.
            b.wait_for(
                "every simulated device online in the fleet table",
                300,
                &format!("return document.querySelectorAll('#fleet tbody tr td[data-on=online]').length === {n}"),
            )
            .await;
            let discovery = t_start.elapsed();
            let disc = b.exec(SAMPLE, json!([])).await;
            let heap_load = heap_after_gc(&b).await;
            eprintln!(
                "[dashload] {n} devices online in the fleet table {discovery:.1?} after start; during discovery: \
                 longest task {:.0} ms ({} long tasks, {:.0} ms in all), longest frame gap {:.0} ms, \
                 DOM nodes {}, heap {} (after GC {}), page API reads {}",
                disc["longMax"], disc["longCount"], disc["longTotal"], disc["maxGap"], disc["nodes"],
                mib(disc["heap"].as_f64().unwrap()), mib(heap_load), disc["reads"]
            );
            assert_eq!(disc["visible"], "visible", "rAF runs only in a visible page");

            // The rollout, watched from its page from the start.
            let image = ImageBuilder::new(Chip::Esp32)
                .project("demo")
                .version("1.1.0")
                .size(IMAGE_SIZE)
                .behavior(SimBehavior::Boots)
                .build()
                .unwrap();
            let (status, entry) = server.upload(image, "?filename=demo-1.1.0.bin").await;
            assert_eq!(status, 201, "{entry}");
            let stop = Arc::new(AtomicBool::new(false));
            let counter = tokio::spawn(count_events(
                server.http.clone(),
                server.url("/api/v1/events"),
                stop.clone(),
            ));
            let body = json!({"firmware": entry["sha256"], "targets": {"selector": "all"},
                "strategy": {"max_parallel": PARALLEL, "canary": 0, "max_failure_pct": 100,
                             "retries": 0, "timeout_s": 300}});
            let resp = server.http.post(server.url("/api/v1/rollouts")).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), 201);
            let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
            b.exec("window.__m.reset(); location.hash = arguments[0]", json!([format!("#/rollout/{id}")])).await;
            let t_rollout = Instant::now();

            // Sample once a second until the page shows the rollout completed.
            let mut samples: Vec<(f64, Value)> = Vec::new();
            let deadline = t_rollout + Duration::from_secs(900);
            loop {
                let s = b.exec(SAMPLE, json!([])).await;
                let t = t_rollout.elapsed().as_secs_f64();
                let finished = s["state"] == "completed";
                samples.push((t, s));
                if finished {
                    break;
                }
                assert!(Instant::now() < deadline, "the rollout did not complete on the page: {:?}", samples.last());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let on_page = t_rollout.elapsed();
            stop.store(true, Ordering::Relaxed);
            let events = counter.await.unwrap();

            // The page matches the API: every target succeeded, the counts and each row.
            let api = server.get_json(&format!("/api/v1/rollouts/{id}")).await.1;
            assert_eq!(api["state"], "completed", "{}", api["counts"]);
            assert_eq!(api["counts"], json!({"succeeded": n}));
            let want: BTreeMap<String, String> = api["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["device"].as_str().unwrap().to_string(), t["state"].as_str().unwrap().to_string()))
                .collect();
            let rows = b
                .exec(
                    "return [...document.querySelectorAll('#targets tbody tr')].map(r => \
                     [r.dataset.device, r.dataset.state, r.querySelector('progress').value])",
                    json!([]),
                )
                .await;
            let mut shown = BTreeMap::new();
            for r in rows.as_array().unwrap() {
                assert_eq!(r[2].as_f64(), Some(1.0), "a finished bar is full: {r}");
                shown.insert(r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string());
            }
            assert_eq!(shown.len(), n as usize);
            assert_eq!(shown, want);
            assert_eq!(b.text("#overall-text").await, format!("{n} of {n} finished"));
            assert_eq!(
                b.text("#counts").await.split_whitespace().collect::<Vec<_>>(),
                ["succeeded".to_string(), n.to_string()]
            );

            let heap_end = heap_after_gc(&b).await;
            let last = &samples.last().unwrap().1;
            let heap_peak = samples.iter().map(|(_, s)| s["heap"].as_f64().unwrap()).fold(0.0, f64::max);
            let nodes_peak = samples.iter().map(|(_, s)| s["nodes"].as_u64().unwrap()).max().unwrap();
            let timeline: Vec<String> = samples
                .iter()
                .map(|(t, s)| {
                    format!(
                        "{t:.0}s:{}ok/{:.1}MiB/{}n",
                        s["done"],
                        s["heap"].as_f64().unwrap() / 1048576.0,
                        s["nodes"]
                    )
                })
                .collect();
            eprintln!(
                "[dashload] rollout of {} to {n} devices (max_parallel {PARALLEL}, {} KiB/s each): \
                 completed on the page {on_page:.1?} after it started; {} samples",
                mib(IMAGE_SIZE as f64), BANDWIDTH / 1024, samples.len()
            );
            eprintln!(
                "[dashload] during the rollout: longest task {:.0} ms ({} long tasks, {:.0} ms in all), \
                 longest frame gap {:.0} ms, frames {}, DOM nodes peak {nodes_peak} (end {}), \
                 heap peak {} (sampled, before GC), heap after GC: load {} -> end {} ({:.2}x)",
                last["longMax"], last["longCount"], last["longTotal"], last["maxGap"], last["frames"],
                last["nodes"], mib(heap_peak), mib(heap_load), mib(heap_end), heap_end / heap_load
            );
            eprintln!("[dashload] events on the stream during the rollout: {events:?}");
            eprintln!("[dashload] page API reads during the rollout: {}", last["reads"]);
            eprintln!("[dashload] timeline (s: succeeded on page / heap / DOM nodes): {}", timeline.join(" "));

            let max_gap = samples.iter().map(|(_, s)| s["maxGap"].as_f64().unwrap()).fold(0.0, f64::max);
            assert!(max_gap < MAX_FRAME_GAP_MS, "the page stopped drawing for {max_gap:.0} ms");
            assert!(
                heap_end <= MAX_HEAP_GROWTH * heap_load,
                "heap grew from {} to {}",
                mib(heap_load),
                mib(heap_end)
            );

            drop(b);
            fleet.shutdown().await;
            server.stop().await;
        });
    }
}

/// Minutes of back-to-back rollouts for the memory soak (`AEGIS_DASHSOAK_MINUTES`, default 20).
fn soak_minutes() -> u64 {
    std::env::var("AEGIS_DASHSOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

aegis_testkit::netns_test! {
    /// A measurement, not a check of speed: rollout after rollout to a live fleet for
    /// `AEGIS_DASHSOAK_MINUTES` with the rollout page open, following each new rollout as an
    /// operator would. After every rollout the heap is measured after a forced GC and the DOM
    /// counted; the test asserts that neither grows without bound and prints the series.
    #[ignore = "a measurement: tens of minutes; run with --ignored --nocapture"]
    fn dashboard_memory_over_many_rollouts() {
        runtime().block_on(async {
            let n: u32 = std::env::var("AEGIS_DASHSOAK_DEVICES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let server = start(|c| c.discovery = true).await;
            let mut cfg = FleetConfig::new(n);
            cfg.timing = Timing { bandwidth: Some(BANDWIDTH), ..Timing::fast() };
            let fleet = Fleet::start(cfg).await.unwrap();
            let b = Browser::start(1360, 860).await;
            b.goto(&server.url("/")).await;
            b.wait_for(
                "every simulated device online in the fleet table",
                300,
                &format!("return document.querySelectorAll('#fleet tbody tr td[data-on=online]').length === {n}"),
            )
            .await;
            b.exec(MONITOR, json!([])).await;
            let stop = Arc::new(AtomicBool::new(false));
            let counter = tokio::spawn(count_events(
                server.http.clone(),
                server.url("/api/v1/events"),
                stop.clone(),
            ));

            let t0 = Instant::now();
            let until = t0 + Duration::from_secs(60 * soak_minutes());
            let mut series: Vec<(f64, f64, u64)> = Vec::new(); // (minutes, heap after GC, DOM nodes)
            let mut round = 0u32;
            while Instant::now() < until {
                round += 1;
                let version = format!("1.2.{round}");
                let image = ImageBuilder::new(Chip::Esp32)
                    .project("demo")
                    .version(&version)
                    .size(128 * 1024)
                    .behavior(SimBehavior::Boots)
                    .build()
                    .unwrap();
                let (status, entry) = server.upload(image, "").await;
                assert_eq!(status, 201, "{entry}");
                let body = json!({"firmware": entry["sha256"], "targets": {"selector": "all"},
                    "strategy": {"max_parallel": PARALLEL, "canary": 0, "max_failure_pct": 100,
                                 "retries": 0, "timeout_s": 300}});
                let resp = server.http.post(server.url("/api/v1/rollouts")).json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 201);
                let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
                b.exec("location.hash = arguments[0]", json!([format!("#/rollout/{id}")])).await;
                b.wait_for(
                    "the rollout completed on the page",
                    600,
                    "return document.querySelector('#rollout-state')?.dataset.state === 'completed'",
                )
                .await;
                let heap = heap_after_gc(&b).await;
                let s = b.exec(SAMPLE, json!([])).await;
                let nodes = s["nodes"].as_u64().unwrap();
                series.push((t0.elapsed().as_secs_f64() / 60.0, heap, nodes));
            }
            stop.store(true, Ordering::Relaxed);
            let events = counter.await.unwrap();
            let total: u64 = events.values().sum();
            let points: Vec<String> = series
                .iter()
                .map(|(m, h, d)| format!("{m:.1}min:{}/{d}n", mib(*h)))
                .collect();
            eprintln!(
                "[dashsoak] {round} rollouts to {n} devices in {:.1} min, {total} events ({events:?}); \
                 heap after GC / DOM nodes after each rollout: {}",
                t0.elapsed().as_secs_f64() / 60.0,
                points.join(" ")
            );
            let first = series.first().unwrap();
            let last = series.last().unwrap();
            assert!(
                last.1 <= MAX_HEAP_GROWTH * first.1,
                "heap after GC grew from {} to {}",
                mib(first.1),
                mib(last.1)
            );
            assert!(
                last.2 <= first.2 + 200,
                "DOM grew from {} to {} nodes",
                first.2,
                last.2
            );
            drop(b);
            fleet.shutdown().await;
            server.stop().await;
        });
    }
}
