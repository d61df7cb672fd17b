//! The device registry: sighting rules (new, IP change, duplicate, goodbye, rejection) and the
//! presence checker, driven by a manual clock and a scripted prober: exact transitions, no real
//! time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_protocol::{Chip, DeviceId, DeviceState, Info, Nonce, Sha256Hex, Slot, TxtRecord};
use aegis_server::devices::{Device, PresenceConfig, ProbeError, ProbeFuture, Prober, Registry};
use aegis_server::discovery::sighting::classify;
use aegis_server::discovery::{DiscoveryEvent, Sighting};
use aegis_server::events::{Event, EventBus};
use aegis_server::store::Store;
use aegis_server::time::{Clock, ManualClock, Timestamp};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::support::MemStore;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const ID: &str = "240ac4000001";

struct Fixture {
    registry: Registry,
    store: Arc<MemStore>,
    clock: ManualClock,
    events: broadcast::Receiver<Event>,
}

async fn fixture() -> Fixture {
    fixture_with(MemStore::new()).await
}

async fn fixture_with(store: MemStore) -> Fixture {
    let store = Arc::new(store);
    let clock = ManualClock::new(T0);
    let bus = EventBus::new();
    let events = bus.subscribe();
    let registry = Registry::open(store.clone(), bus, Arc::new(clock.clone()))
        .await
        .unwrap();
    Fixture {
        registry,
        store,
        clock,
        events,
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, last)
}

fn seen(instance: &str, id: &str, addr: Ipv4Addr, at: Timestamp) -> DiscoveryEvent {
    let mut txt = TxtRecord::new(DeviceId::parse(id).unwrap(), "1.0.0", instance, addr);
    txt.proj = Some("blink".into());
    txt.chip = Some(Chip::parse("esp32").unwrap());
    txt.sha = Some(Sha256Hex::digest(b"v1").prefix());
    txt.slot = Some(Slot::OTA_0);
    txt.state = Some(DeviceState::Idle);
    DiscoveryEvent::Sighting(Sighting {
        instance: instance.into(),
        addr,
        port: 80,
        txt,
        at,
    })
}

fn gone(instance: &str, at: Timestamp) -> DiscoveryEvent {
    DiscoveryEvent::Gone {
        instance: instance.into(),
        at,
    }
}

fn info(id: &str, image: &[u8]) -> Info {
    Info {
        id: DeviceId::parse(id).unwrap(),
        ver: "2.0.0".into(),
        proj: "blink".into(),
        chip: Chip::parse("esp32").unwrap(),
        host: "dev-1".into(),
        ip: ip(1),
        sha256: Sha256Hex::digest(image),
        slot: Slot::OTA_1,
        state: DeviceState::Idle,
        secure_version: 0,
        slot_size: 1 << 20,
        nonce: Nonce::random(),
        last: None,
    }
}

/// Device updates published so far.
fn updates(rx: &mut broadcast::Receiver<Event>) -> Vec<Device> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let Event::DeviceUpdated(d) = ev {
            out.push(d);
        }
    }
    out
}

fn after(s: u64) -> Timestamp {
    T0.saturating_add(Duration::from_secs(s))
}

#[tokio::test]
async fn a_new_id_creates_a_record_written_through_and_published() {
    let mut f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    let d = f.registry.device(ID).unwrap();
    assert_eq!(
        (d.ip.as_str(), d.port, d.hostname.as_str()),
        ("127.0.1.1", 80, "dev-1")
    );
    assert_eq!(
        (d.version.as_str(), d.project.as_deref()),
        ("1.0.0", Some("blink"))
    );
    assert_eq!(
        (d.chip.as_deref(), d.slot.as_deref()),
        (Some("esp32"), Some("ota_0"))
    );
    assert_eq!(d.sha.as_deref().map(str::len), Some(16));
    assert!(d.online);
    assert_eq!(
        (d.first_seen, d.last_seen, d.duplicate.clone()),
        (T0, T0, None)
    );
    assert_eq!(f.store.device(ID).unwrap(), Some(d.clone()));
    assert_eq!(updates(&mut f.events), vec![d]);
}

#[tokio::test]
async fn a_known_id_at_a_new_ip_updates_the_record() {
    let f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    f.registry
        .apply(seen("dev-1", ID, ip(9), after(10)))
        .await
        .unwrap();
    let d = f.registry.device(ID).unwrap();
    assert_eq!(d.ip, "127.0.1.9");
    assert_eq!((d.first_seen, d.last_seen), (T0, after(10)));
    assert_eq!(d.duplicate, None);
    assert_eq!(f.registry.devices().len(), 1);
    assert_eq!(f.store.device(ID).unwrap().unwrap().ip, "127.0.1.9");
}

#[tokio::test]
async fn one_id_from_two_addresses_is_flagged_until_one_goes_away() {
    let f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    f.registry
        .apply(seen("clone", ID, ip(2), after(1)))
        .await
        .unwrap();
    let d = f.registry.device(ID).unwrap();
    assert_eq!(
        d.ip, "127.0.1.1",
        "the first announcer stays the record's address"
    );
    assert_eq!(d.duplicate.as_deref(), Some("127.0.1.2:80"));
    assert_eq!(f.store.device(ID).unwrap().unwrap().duplicate, d.duplicate);

    // The clone leaves: flag cleared, record unchanged otherwise.
    f.registry.apply(gone("clone", after(2))).await.unwrap();
    let d = f.registry.device(ID).unwrap();
    assert_eq!(
        (d.duplicate, d.online, d.ip.as_str()),
        (None, true, "127.0.1.1")
    );

    // Again, but this time the original leaves: the record moves to the remaining address.
    f.registry
        .apply(seen("clone", ID, ip(2), after(3)))
        .await
        .unwrap();
    assert!(f.registry.device(ID).unwrap().duplicate.is_some());
    f.registry.apply(gone("dev-1", after(4))).await.unwrap();
    let d = f.registry.device(ID).unwrap();
    assert_eq!(
        (d.duplicate, d.online, d.ip.as_str()),
        (None, true, "127.0.1.2")
    );
}

#[tokio::test]
async fn a_goodbye_takes_the_device_offline_at_once() {
    let mut f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    f.registry.apply(gone("dev-1", after(5))).await.unwrap();
    let d = f.registry.device(ID).unwrap();
    assert!(!d.online);
    assert_eq!(d.last_seen, T0, "a goodbye is not a sign of life");
    assert!(!f.store.device(ID).unwrap().unwrap().online);
    let online: Vec<bool> = updates(&mut f.events).iter().map(|d| d.online).collect();
    assert_eq!(online, vec![true, false]);

    // A goodbye for an instance nobody knows changes nothing.
    f.registry.apply(gone("stranger", after(6))).await.unwrap();
    assert!(updates(&mut f.events).is_empty());

    // Back after its reboot.
    f.registry
        .apply(seen("dev-1", ID, ip(1), after(20)))
        .await
        .unwrap();
    let d = f.registry.device(ID).unwrap();
    assert!(d.online);
    assert_eq!((d.first_seen, d.last_seen), (T0, after(20)));
}

#[tokio::test]
async fn a_host_name_reused_by_another_id_leaves_the_old_record_offline() {
    let f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    let other = "240ac4000002";
    f.registry
        .apply(seen("dev-1", other, ip(1), after(1)))
        .await
        .unwrap();
    assert!(!f.registry.device(ID).unwrap().online);
    assert!(f.registry.device(other).unwrap().online);
    // The goodbye now belongs to the new owner of the name.
    f.registry.apply(gone("dev-1", after(2))).await.unwrap();
    assert!(!f.registry.device(other).unwrap().online);
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Instance, TXT items, what the reason must say.
type Case = (&'static str, Vec<(String, String)>, &'static str);

#[tokio::test]
async fn malformed_announcements_are_recorded_and_never_become_devices() {
    let mut f = fixture().await;
    let base = [
        ("id", ID),
        ("ver", "1.0.0"),
        ("host", "bad"),
        ("ip", "127.0.1.7"),
        ("proto", "1"),
    ];
    let big = "v".repeat(250);
    let mut too_large = pairs(&base);
    for i in 0..6 {
        too_large.push((format!("pad{i}"), big.clone()));
    }
    let long_item = "p".repeat(300);
    let cases: Vec<Case> = vec![
        ("no-id", pairs(&base[1..]), "no \"id\" key"),
        (
            "bad-id",
            pairs(&[
                ("id", "24:0a:c4:00:00:01"),
                base[1],
                base[2],
                base[3],
                base[4],
            ]),
            "not a device id",
        ),
        (
            "no-ver",
            pairs(&[base[0], base[2], base[3], base[4]]),
            "no \"ver\" key",
        ),
        (
            "bad-ip",
            pairs(&[base[0], base[1], base[2], ("ip", "127.0.1"), base[4]]),
            "not a dotted IPv4",
        ),
        (
            "bad-proto",
            pairs(&[base[0], base[1], base[2], base[3], ("proto", "one")]),
            "protocol version",
        ),
        (
            "bad-chip",
            pairs(&[
                base[0],
                base[1],
                base[2],
                base[3],
                base[4],
                ("state", "sleepy"),
            ]),
            "invalid",
        ),
        (
            "long-item",
            pairs(&[
                base[0],
                base[1],
                base[2],
                base[3],
                base[4],
                ("proj", &long_item),
            ]),
            "at most 255 bytes",
        ),
        ("too-large", too_large, "at most 1300 bytes"),
    ];
    for (i, (instance, items, want)) in cases.iter().enumerate() {
        let ev = classify(instance, &[ip(7)], 80, items, after(i as u64));
        let DiscoveryEvent::Rejected(r) = &ev else {
            panic!("{instance}: expected a rejection, got {ev:?}")
        };
        assert!(r.reason.contains(want), "{instance}: {:?}", r.reason);
        f.registry.apply(ev).await.unwrap();
    }
    assert!(f.registry.devices().is_empty());
    assert!(f.store.devices().unwrap().is_empty());
    let rejected = f.registry.rejected(100).await.unwrap();
    assert_eq!(rejected.len(), cases.len());
    assert_eq!(rejected[0].instance, "too-large", "newest first");
    assert_eq!(rejected[0].addr.as_deref(), Some("127.0.1.7:80"));
    let mut published = 0;
    while let Ok(ev) = f.events.try_recv() {
        assert!(matches!(ev, Event::DeviceRejected(_)), "{ev:?}");
        published += 1;
    }
    assert_eq!(published, cases.len());

    // The same bad announcement again is not recorded twice.
    let again = classify("no-id", &[ip(7)], 80, &cases[0].1, after(100));
    f.registry.apply(again).await.unwrap();
    assert_eq!(f.registry.rejected(100).await.unwrap().len(), cases.len());
}

#[tokio::test]
async fn stored_devices_load_offline_until_seen() {
    let store = MemStore::new();
    let f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    store.put_device(&f.registry.device(ID).unwrap()).unwrap();
    let g = fixture_with(store).await;
    let d = g.registry.device(ID).unwrap();
    assert!(!d.online);
    assert_eq!(d.first_seen, T0);
    assert!(!g.store.device(ID).unwrap().unwrap().online);
}

#[tokio::test]
async fn info_gives_the_full_sha_and_the_txt_prefix_keeps_it() {
    let f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(3));
    let d = f.registry.apply_info(ID, &info(ID, b"v1")).await.unwrap();
    let full = Sha256Hex::digest(b"v1").to_string();
    assert_eq!(d.sha.as_deref(), Some(full.as_str()));
    assert_eq!(
        (d.version.as_str(), d.slot.as_deref()),
        ("2.0.0", Some("ota_1"))
    );
    assert_eq!(d.last_seen, after(3));
    assert_eq!(
        f.registry.freshness(ID).unwrap().last_checked,
        Some(after(3))
    );

    // A re-announcement with the matching prefix keeps the full hash; a new image replaces it.
    f.registry
        .apply(seen("dev-1", ID, ip(1), after(4)))
        .await
        .unwrap();
    assert_eq!(
        f.registry.device(ID).unwrap().sha.as_deref(),
        Some(full.as_str())
    );
    let DiscoveryEvent::Sighting(mut s) = seen("dev-1", ID, ip(1), after(5)) else {
        unreachable!()
    };
    s.txt.sha = Some(Sha256Hex::digest(b"v2").prefix());
    f.registry.apply(DiscoveryEvent::Sighting(s)).await.unwrap();
    assert_eq!(
        f.registry.device(ID).unwrap().sha.as_deref().map(str::len),
        Some(16)
    );

    // Another device's info is refused and changes nothing.
    let err = f
        .registry
        .apply_info(ID, &info("240ac4000002", b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "wrong_device");
    let err = f
        .registry
        .apply_info("240ac4000009", &info("240ac4000009", b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404);
}

#[tokio::test]
async fn mark_seen_refreshes_last_seen_and_brings_a_device_back() {
    let f = fixture().await;
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    f.registry.apply(gone("dev-1", after(1))).await.unwrap();
    f.clock.advance(Duration::from_secs(7));
    let d = f.registry.mark_seen(ID).await.unwrap().unwrap();
    assert!(d.online);
    assert_eq!(d.last_seen, after(7));
    assert_eq!(f.registry.mark_seen("240ac4000009").await.unwrap(), None);
}

// --- presence ---------------------------------------------------------------------------

/// Answers from a script: per address, `Ok(info)` or an error; records every call and the
/// largest number of calls in flight at once.
#[derive(Debug, Default)]
struct FakeProber {
    answers: Mutex<HashMap<SocketAddrV4, Result<Info, String>>>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl FakeProber {
    fn answer(&self, addr: Ipv4Addr, answer: Result<Info, &str>) {
        self.answers
            .lock()
            .unwrap()
            .insert(SocketAddrV4::new(addr, 80), answer.map_err(str::to_owned));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Prober for FakeProber {
    fn info(&self, ip: Ipv4Addr, port: u16) -> ProbeFuture<'_> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let answer = self
                .answers
                .lock()
                .unwrap()
                .get(&SocketAddrV4::new(ip, port))
                .cloned();
            answer
                .unwrap_or_else(|| Err("connection refused".into()))
                .map_err(ProbeError)
        })
    }
}

fn presence() -> PresenceConfig {
    PresenceConfig::default() // check after 30 s; offline after 2 failures and 60 s
}

#[tokio::test]
async fn a_quiet_device_is_checked_once_stale_and_stays_online_when_it_answers() {
    let f = fixture().await;
    let prober = FakeProber::default();
    prober.answer(ip(1), Ok(info(ID, b"v1")));
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();

    f.clock.advance(Duration::from_secs(29));
    let r = f.registry.check_presence(&prober, &presence()).await;
    assert_eq!(
        (r.checked, prober.calls()),
        (0, 0),
        "fresh devices are not checked"
    );

    f.clock.advance(Duration::from_secs(1));
    let r = f.registry.check_presence(&prober, &presence()).await;
    assert_eq!((r.checked, r.ok), (1, 1));
    let d = f.registry.device(ID).unwrap();
    assert!(d.online);
    assert_eq!(d.last_seen, after(30));
    assert_eq!(d.sha.as_deref().map(str::len), Some(64));
    assert_eq!(f.store.device(ID).unwrap().unwrap().last_seen, after(30));

    // Not due again until 30 s after that check.
    f.clock.advance(Duration::from_secs(29));
    assert_eq!(
        f.registry
            .check_presence(&prober, &presence())
            .await
            .checked,
        0
    );
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.registry.check_presence(&prober, &presence()).await.ok, 1);
    assert_eq!(prober.calls(), 2);
}

#[tokio::test]
async fn failed_checks_take_a_device_offline_exactly_when_due_and_a_recheck_brings_it_back() {
    let mut f = fixture().await;
    let prober = FakeProber::default();
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    updates(&mut f.events);
    let writes = f.store.device_writes();

    f.clock.advance(Duration::from_secs(30));
    let r = f.registry.check_presence(&prober, &presence()).await;
    assert_eq!((r.checked, r.ok, r.went_offline), (1, 0, 0));
    assert_eq!(f.store.device_writes(), writes);
    assert!(
        f.registry.device(ID).unwrap().online,
        "one failure is not enough"
    );
    assert_eq!(f.registry.freshness(ID).unwrap().failures, 1);
    assert!(updates(&mut f.events).is_empty(), "nothing visible changed");

    f.clock.advance(Duration::from_secs(29)); // t = 59 s
    assert_eq!(
        f.registry
            .check_presence(&prober, &presence())
            .await
            .checked,
        0
    );
    assert!(f.registry.device(ID).unwrap().online);

    f.clock.advance(Duration::from_secs(1)); // t = 60 s
    let r = f.registry.check_presence(&prober, &presence()).await;
    assert_eq!(r.went_offline, 1);
    let d = f.registry.device(ID).unwrap();
    assert!(!d.online);
    assert_eq!(d.last_seen, T0);
    assert!(!f.store.device(ID).unwrap().unwrap().online);
    assert_eq!(
        updates(&mut f.events)
            .iter()
            .map(|d| d.online)
            .collect::<Vec<_>>(),
        vec![false]
    );

    // Offline devices are re-checked every 60 s; this time it answers.
    f.clock.advance(Duration::from_secs(59));
    assert_eq!(
        f.registry
            .check_presence(&prober, &presence())
            .await
            .checked,
        0
    );
    prober.answer(ip(1), Ok(info(ID, b"v1")));
    f.clock.advance(Duration::from_secs(1)); // t = 120 s
    let r = f.registry.check_presence(&prober, &presence()).await;
    assert_eq!((r.ok, r.came_back), (1, 1));
    let d = f.registry.device(ID).unwrap();
    assert!(d.online);
    assert_eq!(d.last_seen, after(120));
    assert_eq!(f.registry.freshness(ID).unwrap().failures, 0);
}

#[tokio::test]
async fn a_different_device_answering_counts_as_a_failure() {
    let f = fixture().await;
    let prober = FakeProber::default();
    prober.answer(ip(1), Ok(info("240ac4000002", b"x")));
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    for s in [30, 30] {
        f.clock.advance(Duration::from_secs(s));
        let r = f.registry.check_presence(&prober, &presence()).await;
        assert_eq!((r.checked, r.ok), (1, 0));
    }
    assert!(!f.registry.device(ID).unwrap().online);
    assert_eq!(
        f.registry.device(ID).unwrap().version,
        "1.0.0",
        "nothing taken from it"
    );
}

#[tokio::test]
async fn the_checker_task_runs_on_the_clock_and_marks_offline_at_sixty_seconds() {
    let mut f = fixture().await;
    let prober = Arc::new(FakeProber::default());
    f.registry
        .apply(seen("dev-1", ID, ip(1), T0))
        .await
        .unwrap();
    updates(&mut f.events);
    let stop = CancellationToken::new();
    let task = f
        .registry
        .spawn_presence(prober.clone(), presence(), stop.clone());
    let mut went_offline_at = None;
    for _ in 0..(90 / 5) {
        // The task is idle when it sleeps on the clock again.
        while f.clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        if went_offline_at.is_none() && !f.registry.device(ID).unwrap().online {
            went_offline_at = Some(f.clock.now());
        }
        f.clock.advance(Duration::from_secs(5));
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(went_offline_at, Some(after(60)));
    assert_eq!(
        prober.calls(),
        2,
        "checked at 30 s and 60 s; the offline re-check is due at 120 s"
    );
}

#[tokio::test]
async fn a_thousand_devices_are_checked_at_most_thirty_two_at_a_time() {
    let f = fixture().await;
    let prober = FakeProber::default();
    for n in 0..1000u32 {
        let id = format!("240ac4{n:06x}");
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 16, 0)) + n);
        prober.answer(addr, Ok(info(&id, b"v1")));
        f.registry
            .apply(seen(&format!("dev-{n}"), &id, addr, T0))
            .await
            .unwrap();
    }
    f.clock.advance(Duration::from_secs(30));
    let r = f.registry.check_presence(&prober, &presence()).await;
    assert_eq!((r.checked, r.ok), (1000, 1000));
    assert_eq!(prober.max_in_flight.load(Ordering::SeqCst), 32);
    assert!(
        f.registry
            .devices()
            .iter()
            .all(|d| d.online && d.last_seen == after(30))
    );
}
