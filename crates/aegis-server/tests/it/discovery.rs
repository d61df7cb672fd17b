//! Discovery over real mDNS, in a private network namespace: python-zeroconf announces devices
//! (valid ones and malformed ones) on loopback, the server's discovery + registry must produce
//! the right records and rejections, and a goodbye must take a device offline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aegis_server::devices::{HttpProber, PresenceConfig, Registry};
use aegis_server::discovery::{self, DiscoveryConfig};
use aegis_server::events::{Event, EventBus};
use aegis_server::time::SystemClock;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::support::MemStore;

/// Registers the services given as JSON on argv[1], prints `ready`, then obeys stdin lines:
/// `bye NAME` unregisters one (sending its goodbye) and prints `bye NAME`.
const ANNOUNCER: &str = r#"
import json, socket, sys
from zeroconf import Zeroconf, ServiceInfo
T = "_aegis-ota._tcp.local."
zc = Zeroconf(interfaces=["127.0.0.1"])
infos = {}
for s in json.loads(sys.argv[1]):
    info = ServiceInfo(T, s["name"] + "." + T, port=s["port"],
                       addresses=[socket.inet_aton(s["addr"])],
                       properties=s["txt"], server=s["name"] + ".local.")
    zc.register_service(info)
    infos[s["name"]] = info
print("ready", flush=True)
for line in sys.stdin:
    cmd, name = line.split()
    if cmd == "bye":
        zc.unregister_service(infos.pop(name))
        print("bye " + name, flush=True)
for info in infos.values():
    zc.unregister_service(info)
zc.close()
"#;

struct Announcer {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Announcer {
    fn start(services: &serde_json::Value) -> Self {
        let mut child = Command::new(aegis_testkit::paths::python())
            .args(["-c", ANNOUNCER, &services.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with zeroconf (scripts/test installs it into .venv)");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Ends the announcer without goodbyes, as a device losing power does.
    fn vanish(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn goodbye(&mut self, name: &str) {
        writeln!(self.stdin, "bye {name}").unwrap();
        assert_eq!(self.lines.next().unwrap().unwrap(), format!("bye {name}"));
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(name: &str, addr: &str, txt: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": name, "addr": addr, "port": 8080, "txt": txt})
}

fn valid_txt(id: &str, host: &str, addr: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "ver": "1.2.0", "host": host, "ip": addr, "proto": "1",
                       "proj": "blink", "chip": "esp32c3", "slot": "ota_0", "state": "idle"})
}

/// Waits (at most 20 s) for the bus to publish an event for which `done` returns true.
async fn wait_for(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    mut done: impl FnMut(&Event) -> bool,
) {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(ev) if done(&ev) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("bus closed"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {what}");
}

aegis_testkit::netns_test! {
    fn mdns_announcements_become_devices_rejections_and_goodbyes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = Arc::new(MemStore::new());
            let bus = EventBus::new();
            let mut rx = bus.subscribe();
            let clock = Arc::new(SystemClock);
            let registry = Registry::open(store.clone(), bus, clock.clone()).await.unwrap();
            let config = DiscoveryConfig {
                interface: Some("lo".into()),
                ..DiscoveryConfig::default()
            };
            let (discovery, events) = discovery::start(config, clock).unwrap();
            let stop = CancellationToken::new();
            let follower = registry.follow(events, stop.clone());

            let mut no_ver = valid_txt("240ac4000003", "dev-c", "127.0.1.7");
            no_ver.as_object_mut().unwrap().remove("ver");
            let mut announcer = Announcer::start(&serde_json::json!([
                service("dev-a", "127.0.1.5", valid_txt("240ac4000001", "dev-a", "127.0.1.5")),
                service("dev-b", "127.0.1.6", valid_txt("240ac4000002", "dev-b", "127.0.1.6")),
                service("bad-id", "127.0.1.8", valid_txt("24:0A:C4:00:00:04", "bad-id", "127.0.1.8")),
                service("dev-c", "127.0.1.7", no_ver),
            ]));

            let (mut devices, mut rejected) = (0, 0);
            wait_for(&mut rx, "two devices and two rejections", |ev| {
                match ev {
                    Event::DeviceUpdated(_) => devices += 1,
                    Event::DeviceRejected(_) => rejected += 1,
                    _ => {}
                }
                registry.devices().len() == 2 && rejected >= 2
            })
            .await;
            assert!(devices >= 2);

            let all = registry.devices();
            let ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(ids, ["240ac4000001", "240ac4000002"]);
            let a = &all[0];
            assert_eq!((a.hostname.as_str(), a.ip.as_str(), a.port), ("dev-a", "127.0.1.5", 8080));
            assert_eq!((a.version.as_str(), a.chip.as_deref(), a.state.as_deref()), ("1.2.0", Some("esp32c3"), Some("idle")));
            assert!(a.online && all[1].online);
            assert_eq!(all[1].ip, "127.0.1.6");

            let mut reasons: Vec<(String, String)> = registry
                .rejected(10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.instance, r.reason))
                .collect();
            reasons.sort();
            assert_eq!(reasons.len(), 2, "{reasons:?}");
            assert_eq!(reasons[0].0, "bad-id");
            assert!(reasons[0].1.contains("not a device id"), "{reasons:?}");
            assert_eq!(reasons[1].0, "dev-c");
            assert!(reasons[1].1.contains("\"ver\""), "{reasons:?}");

            // A goodbye takes dev-a offline within seconds, not after mDNS's cache lifetime.
            announcer.goodbye("dev-a");
            wait_for(&mut rx, "dev-a offline", |ev| {
                matches!(ev, Event::DeviceUpdated(d) if d.id == "240ac4000001" && !d.online)
            })
            .await;
            assert!(registry.device("240ac4000002").unwrap().online);

            stop.cancel();
            follower.await.unwrap();
            discovery.stop().await;
            drop(announcer);
        });
    }
}

aegis_testkit::netns_test! {
    fn a_device_that_vanishes_silently_goes_offline_at_the_next_requery() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let bus = EventBus::new();
            let mut rx = bus.subscribe();
            let clock = Arc::new(SystemClock);
            let registry = Registry::open(Arc::new(MemStore::new()), bus, clock.clone())
                .await
                .unwrap();
            let config = DiscoveryConfig {
                requery_every: Duration::from_secs(1),
                requery_timeout: Duration::from_secs(1),
                ..DiscoveryConfig::default()
            };
            let (discovery, events) = discovery::start(config, clock).unwrap();
            let stop = CancellationToken::new();
            let follower = registry.follow(events, stop.clone());
            let mut announcer = Announcer::start(&serde_json::json!([service(
                "dev-a",
                "127.0.1.5",
                valid_txt("240ac4000001", "dev-a", "127.0.1.5")
            )]));
            wait_for(&mut rx, "dev-a online", |ev| {
                matches!(ev, Event::DeviceUpdated(d) if d.online)
            })
            .await;
            announcer.vanish();
            wait_for(&mut rx, "dev-a offline", |ev| {
                matches!(ev, Event::DeviceUpdated(d) if !d.online)
            })
            .await;
            stop.cancel();
            follower.await.unwrap();
            discovery.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn an_unknown_mdns_interface_is_refused_with_a_clear_message() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let config = DiscoveryConfig {
                interface: Some("nosuch0".into()),
                ..DiscoveryConfig::default()
            };
            let err = discovery::start(config, Arc::new(SystemClock)).unwrap_err();
            assert_eq!(err.code, "no_such_interface");
            assert!(err.message.contains("--mdns-interface"), "{}", err.message);
        });
    }
}

aegis_testkit::netns_test! {
    fn a_simulated_fleet_is_discovered_checked_and_seen_leaving() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let bus = EventBus::new();
            let mut rx = bus.subscribe();
            let clock = Arc::new(SystemClock);
            let registry = Registry::open(Arc::new(MemStore::new()), bus, clock.clone())
                .await
                .unwrap();
            let (discovery, events) = discovery::start(DiscoveryConfig::default(), clock).unwrap();
            let stop = CancellationToken::new();
            let follower = registry.follow(events, stop.clone());

            let mut cfg = aegis_sim::fleet::FleetConfig::new(5);
            cfg.timing = aegis_sim::timing::Timing::fast();
            let fleet = aegis_sim::fleet::Fleet::start(cfg).await.unwrap();
            wait_for(&mut rx, "five simulated devices", |_| {
                registry.devices().iter().filter(|d| d.online).count() == 5
            })
            .await;
            for (d, sim) in registry.devices().iter().zip(fleet.devices()) {
                assert_eq!(d.id, sim.plan.id);
                assert_eq!((d.ip.clone(), d.port), (sim.plan.ip.to_string(), sim.plan.port));
                assert_eq!(d.duplicate, None);
            }

            // A presence pass over the real control endpoints learns each full image hash.
            let prober = HttpProber::new(Duration::from_secs(2)).unwrap();
            let all_due = PresenceConfig {
                check_after: Duration::ZERO,
                ..PresenceConfig::default()
            };
            let report = registry.check_presence(&prober, &all_due).await;
            assert_eq!((report.checked, report.ok), (5, 5));
            for d in registry.devices() {
                let sha = d.sha.unwrap();
                assert_eq!(sha.len(), 64, "{sha}");
            }

            // Shutting the fleet down sends goodbyes: every device goes offline.
            fleet.shutdown().await;
            wait_for(&mut rx, "all offline", |_| registry.devices().iter().all(|d| !d.online))
                .await;

            stop.cancel();
            follower.await.unwrap();
            discovery.stop().await;
        });
    }
}
