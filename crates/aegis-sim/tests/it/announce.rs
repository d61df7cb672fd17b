//! The fleet's mDNS responder as python `zeroconf` (what ESPHome and Home Assistant use) sees
//! it, in a private network namespace: every device with its own address, port and TXT,
//! updates, goodbyes.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aegis_sim::announce::{AnnounceOptions, Announcement, Announcer};

/// A python zeroconf browser for `_aegis-ota._tcp.local.` on loopback, printing one JSON
/// line per event: `resolved` (added or updated, with addresses, port, TXT) or `removed`.
const BROWSER: &str = r#"
import json, sys, threading, time
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf
T = "_aegis-ota._tcp.local."
zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
lock = threading.Lock()
pending = []
def out(d):
    with lock:
        sys.stdout.write(json.dumps(d) + "\n")
        sys.stdout.flush()
def on_change(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        out({"event": "removed", "name": name})
    else:
        with lock:
            pending.append(name)
def resolve():
    while True:
        with lock:
            names = list(dict.fromkeys(pending))
            pending.clear()
        for name in names:
            info = zc.get_service_info(T, name, timeout=3000)
            if info is None:
                out({"event": "unresolved", "name": name})
                continue
            txt = {k.decode(): (v.decode() if v is not None else None)
                   for k, v in info.properties.items()}
            out({"event": "resolved", "name": name, "addresses": info.parsed_addresses(),
                 "port": info.port, "server": info.server, "txt": txt})
        time.sleep(0.005)
threading.Thread(target=resolve, daemon=True).start()
browser = ServiceBrowser(zc, T, handlers=[on_change])
out({"event": "ready"})
sys.stdin.read()
zc.close()
"#;

/// One event the python browser reported.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub txt: BTreeMap<String, Option<String>>,
}

/// A running python zeroconf browser.
pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Event>,
}

impl Browser {
    /// Starts the browser and waits until it is browsing.
    pub fn start() -> Self {
        let mut child = Command::new(aegis_testkit::paths::python())
            .args(["-c", BROWSER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python zeroconf browser");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("browser stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Event>(&line) {
                    Ok(ev) => {
                        if tx.send(ev).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("browser said {line:?} ({e})"),
                }
            }
        });
        let b = Self {
            child,
            stdin,
            events,
        };
        let first = b.next(Duration::from_secs(20)).expect("the browser starts");
        assert_eq!(first.event, "ready");
        b
    }

    /// The next event, if one comes within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Waits (up to `timeout`) for an event that `pred` accepts, skipping others.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(ev) if pred(&ev) => return Some(ev),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// Collects `resolved` events until every name in `want` has one (or `timeout`); returns
    /// the latest event per name.
    pub fn resolve_all(&self, want: usize, timeout: Duration) -> HashMap<String, Event> {
        let mut seen = HashMap::new();
        let deadline = Instant::now() + timeout;
        while seen.len() < want {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.next(left) {
                Some(ev) if ev.event == "resolved" => {
                    seen.insert(ev.name.clone(), ev);
                }
                Some(_) => {}
                None => break,
            }
        }
        seen
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The instance name zeroconf reports for `hostname`.
pub fn instance(hostname: &str) -> String {
    format!("{hostname}._aegis-ota._tcp.local.")
}

fn device(i: u32) -> Announcement {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 1)) + i);
    let hostname = format!("esp-sim-{:03}", i + 1);
    let id = format!("02aa{:08x}", i);
    let txt = [
        ("id", id.as_str()),
        ("ver", "1.0.0"),
        ("host", hostname.as_str()),
        ("ip", &ip.to_string()),
        ("proto", "1"),
        ("proj", "demo"),
        ("chip", "esp32"),
        ("sha", "0123456789abcdef"),
        ("slot", "ota_0"),
        ("state", "idle"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Announcement {
        hostname,
        ip,
        port: 8000 + u16::try_from(i).expect("small fleet"),
        txt,
    }
}

fn txt_map(a: &Announcement) -> BTreeMap<String, Option<String>> {
    a.txt
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

aegis_testkit::netns_test! {
    fn zeroconf_sees_500_devices_each_with_its_own_address_and_txt() {
        const N: u32 = 500;
        let browser = Browser::start();
        let announcer = Announcer::new(AnnounceOptions::default()).unwrap();
        let devices: Vec<Announcement> = (0..N).map(device).collect();
        let start = Instant::now();
        for d in &devices {
            announcer.announce(d).unwrap();
        }
        let seen = browser.resolve_all(N as usize, Duration::from_secs(120));
        let elapsed = start.elapsed();
        println!("python zeroconf resolved {} of {N} devices in {elapsed:.2?}", seen.len());
        assert_eq!(seen.len(), N as usize, "every device is seen");
        for d in &devices {
            let ev = &seen[&instance(&d.hostname)];
            assert_eq!(ev.addresses, vec![d.ip.to_string()], "{}: its own A record", d.hostname);
            assert_eq!(ev.port, d.port, "{}: SRV port", d.hostname);
            assert_eq!(ev.server, format!("{}.local.", d.hostname));
            assert_eq!(ev.txt, txt_map(d), "{}: TXT", d.hostname);
        }

        // A browser that starts later finds them all by querying (answers split over
        // several packets).
        let late = Browser::start();
        let start = Instant::now();
        let seen = late.resolve_all(N as usize, Duration::from_secs(120));
        println!("a late browser resolved {} of {N} devices in {:.2?}", seen.len(), start.elapsed());
        assert_eq!(seen.len(), N as usize, "every device answers a query");
        for d in &devices {
            let ev = &seen[&instance(&d.hostname)];
            assert_eq!(ev.addresses, vec![d.ip.to_string()], "{}: its own A record", d.hostname);
            assert_eq!(ev.txt, txt_map(d), "{}: TXT", d.hostname);
        }
        announcer.shutdown();
    }
}

aegis_testkit::netns_test! {
    fn zeroconf_sees_a_new_txt_and_a_goodbye() {
        let browser = Browser::start();
        let announcer = Announcer::new(AnnounceOptions::default()).unwrap();
        let mut a = device(0);
        let b = device(1);
        announcer.announce(&a).unwrap();
        announcer.announce(&b).unwrap();
        assert_eq!(browser.resolve_all(2, Duration::from_secs(30)).len(), 2);

        // A new version and state: re-announced, and zeroconf updates its record.
        for (k, v) in &mut a.txt {
            match k.as_str() {
                "ver" => *v = "2.0.0".into(),
                "sha" => *v = "fedcba9876543210".into(),
                "slot" => *v = "ota_1".into(),
                _ => {}
            }
        }
        announcer.announce(&a).unwrap();
        let updated = browser
            .wait_for(Duration::from_secs(30), |ev| {
                ev.event == "resolved"
                    && ev.name == instance(&a.hostname)
                    && ev.txt.get("ver") == Some(&Some("2.0.0".into()))
            })
            .expect("zeroconf sees the new TXT");
        assert_eq!(updated.txt, txt_map(&a));
        assert_eq!(updated.addresses, vec![a.ip.to_string()]);

        // A goodbye: zeroconf drops the device at once (TTL 0), not after the record expires.
        let t = Instant::now();
        announcer.goodbye(&b.hostname);
        browser
            .wait_for(Duration::from_secs(10), |ev| {
                ev.event == "removed" && ev.name == instance(&b.hostname)
            })
            .expect("zeroconf sees the goodbye");
        println!("goodbye seen after {:.2?}", t.elapsed());

        // Back after a reboot: announced again.
        announcer.announce(&b).unwrap();
        browser
            .wait_for(Duration::from_secs(30), |ev| {
                ev.event == "resolved" && ev.name == instance(&b.hostname)
            })
            .expect("zeroconf sees the device again");

        // Shutting the responder down says goodbye for everyone.
        announcer.shutdown();
        let mut removed = std::collections::HashSet::new();
        while removed.len() < 2 {
            let ev = browser
                .wait_for(Duration::from_secs(10), |ev| ev.event == "removed")
                .expect("shutdown sends goodbyes");
            removed.insert(ev.name);
        }
    }
}
