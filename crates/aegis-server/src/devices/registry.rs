//! The registry: the in-memory truth about every known device, written through to the store
//! and published on the event bus on every change.
//!
//! Rules for sightings (PROTOCOL.md section 1, issue 4):
//! - a new id creates a record (`first_seen`); a known id updates it (new IP included);
//! - one id announced by two instances at different addresses at once is flagged
//!   (`duplicate` = the other `ip:port`); the flag clears when one of them goes away;
//! - a goodbye (or an instance that stops answering re-queries) takes the device offline at
//!   once when no other instance announces it;
//! - a rejected sighting is stored and published, and never creates or changes a record.
//!
//! Records loaded from the store at start are offline until something shows them alive
//! (an announcement, a presence check, or the rollout engine talking to them).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};

use aegis_protocol::{Info, TxtRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::types::{Device, RejectedSighting};
use crate::discovery::{DiscoveryEvent, Sighting};
use crate::events::{Event, EventBus};
use crate::store::Store;
use crate::time::{SharedClock, Timestamp};
use crate::{Error, Result};

/// How fresh the registry's knowledge of one device is (beside [`Device::last_seen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Freshness {
    pub last_seen: Timestamp,
    /// Last presence check (successful or not); None = never checked.
    pub last_checked: Option<Timestamp>,
    /// Consecutive failed presence checks.
    pub failures: u32,
}

/// A handle on the registry; clones share it.
#[derive(Debug, Clone)]
pub struct Registry {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) store: Arc<dyn Store>,
    pub(super) bus: EventBus,
    pub(super) clock: SharedClock,
    pub(super) state: Mutex<State>,
    /// Serializes store writes, so the last write of a record is its latest state.
    write: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) devices: HashMap<String, Entry>,
    /// mDNS instance → device id, for goodbyes.
    by_instance: HashMap<String, String>,
    /// Last rejection per instance, so a repeating bad announcement is recorded once.
    rejected: HashMap<String, RejectedSighting>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) device: Device,
    /// Instances currently announcing this id, and the address each announces.
    sources: BTreeMap<String, SocketAddrV4>,
    pub(super) last_checked: Option<Timestamp>,
    pub(super) failures: u32,
}

impl Entry {
    fn new(device: Device) -> Self {
        Self {
            device,
            sources: BTreeMap::new(),
            last_checked: None,
            failures: 0,
        }
    }

    pub(super) fn addr(&self) -> Option<SocketAddrV4> {
        let ip: Ipv4Addr = self.device.ip.parse().ok()?;
        Some(SocketAddrV4::new(ip, self.device.port))
    }

    /// Recomputes the duplicate flag: every announced address other than the record's own.
    fn settle_duplicate(&mut self) {
        let own = self.addr();
        let mut others: Vec<String> = self
            .sources
            .values()
            .filter(|a| Some(**a) != own)
            .map(ToString::to_string)
            .collect();
        others.sort();
        others.dedup();
        self.device.duplicate = (!others.is_empty()).then(|| others.join(", "));
    }

    fn alive(&mut self, at: Timestamp) {
        self.device.online = true;
        self.device.last_seen = self.device.last_seen.max(at);
        self.failures = 0;
    }
}

pub(super) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::internal(format!("a storage task failed ({e}); check the server log"))
}

impl Registry {
    /// Opens the registry over the devices the store already holds (all marked offline until
    /// seen again).
    pub async fn open(store: Arc<dyn Store>, bus: EventBus, clock: SharedClock) -> Result<Self> {
        let s = store.clone();
        let devices = tokio::task::spawn_blocking(move || -> Result<Vec<Device>> {
            let mut devices = s.devices()?;
            for d in devices.iter_mut().filter(|d| d.online) {
                d.online = false;
                s.put_device(d)?;
            }
            Ok(devices)
        })
        .await
        .map_err(blocking_failed)??;
        let state = State {
            devices: devices
                .into_iter()
                .map(|d| (d.id.clone(), Entry::new(d)))
                .collect(),
            ..State::default()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                bus,
                clock,
                state: Mutex::new(state),
                write: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Every device, ordered by hostname then id.
    pub fn devices(&self) -> Vec<Device> {
        let mut all: Vec<Device> = lock(&self.inner.state)
            .devices
            .values()
            .map(|e| e.device.clone())
            .collect();
        all.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
        all
    }

    pub fn device(&self, id: &str) -> Option<Device> {
        lock(&self.inner.state)
            .devices
            .get(id)
            .map(|e| e.device.clone())
    }

    pub fn freshness(&self, id: &str) -> Option<Freshness> {
        lock(&self.inner.state).devices.get(id).map(|e| Freshness {
            last_seen: e.device.last_seen,
            last_checked: e.last_checked,
            failures: e.failures,
        })
    }

    /// The most recent rejected sightings, newest first.
    pub async fn rejected(&self, limit: usize) -> Result<Vec<RejectedSighting>> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.rejected(limit))
            .await
            .map_err(blocking_failed)?
    }

    /// Applies one discovery event.
    pub async fn apply(&self, event: DiscoveryEvent) -> Result<()> {
        match event {
            DiscoveryEvent::Sighting(s) => self.sighting(s).await,
            DiscoveryEvent::Rejected(r) => self.reject(r).await,
            DiscoveryEvent::Gone { instance, at } => self.gone(&instance, at).await,
        }
    }

    /// Applies discovery events from `rx` until it closes or `stop` fires.
    pub fn follow(
        &self,
        mut rx: mpsc::Receiver<DiscoveryEvent>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => return,
                    ev = rx.recv() => ev,
                };
                let Some(ev) = ev else { return };
                if let Err(e) = registry.apply(ev).await {
                    tracing::error!("device registry: {e}");
                }
            }
        })
    }

    /// The rollout engine talked to the device: it is alive now.
    pub async fn mark_seen(&self, id: &str) -> Result<Option<Device>> {
        let now = self.inner.clock.now();
        let found = {
            let mut st = lock(&self.inner.state);
            st.devices.get_mut(id).map(|e| e.alive(now)).is_some()
        };
        if !found {
            return Ok(None);
        }
        self.persist(id).await
    }

    /// A fresh `/info` from the device (the rollout engine's, or a presence check's).
    pub async fn apply_info(&self, id: &str, info: &Info) -> Result<Device> {
        if info.id.as_str() != id {
            return Err(Error::conflict(
                "wrong_device",
                format!(
                    "device {} answered in place of {id}; the registry is out of date, wait for the next announcement",
                    info.id
                ),
            ));
        }
        let now = self.inner.clock.now();
        {
            let mut st = lock(&self.inner.state);
            let entry = st.devices.get_mut(id).ok_or_else(|| unknown(id))?;
            entry.last_checked = Some(now);
            entry.alive(now);
            let d = &mut entry.device;
            d.version.clone_from(&info.ver);
            if !info.proj.is_empty() {
                d.project = Some(info.proj.clone());
            }
            d.chip = Some(info.chip.as_str().to_owned());
            if !info.host.is_empty() {
                d.hostname.clone_from(&info.host);
            }
            d.sha = Some(info.sha256.to_string());
            d.slot = Some(info.slot.to_string());
            d.state = Some(info.state.as_str().to_owned());
        }
        self.persist(id).await?.ok_or_else(|| unknown(id))
    }

    async fn sighting(&self, s: Sighting) -> Result<()> {
        let id = s.txt.id.as_str().to_owned();
        let addr = SocketAddrV4::new(s.addr, s.port);
        let previous_owner = {
            let mut st = lock(&self.inner.state);
            st.rejected.remove(&s.instance);
            let previous = st.by_instance.insert(s.instance.clone(), id.clone());
            // The instance used to announce another id: that record loses this source.
            let moved = previous.filter(|p| *p != id);
            if let Some(e) = moved.as_ref().and_then(|old| st.devices.get_mut(old)) {
                e.sources.remove(&s.instance);
                e.settle_duplicate();
                if e.sources.is_empty() {
                    e.device.online = false;
                }
            }
            let entry = st
                .devices
                .entry(id.clone())
                .or_insert_with(|| Entry::new(new_device(&s)));
            let before = entry.sources.insert(s.instance.clone(), addr);
            let own = entry.addr();
            let primary = entry.sources.len() == 1
                || before.is_some() && before == own
                || !entry.sources.values().any(|a| Some(*a) == own);
            if primary {
                entry.device.ip = s.addr.to_string();
                entry.device.port = s.port;
                update_from_txt(&mut entry.device, &s.txt);
            }
            entry.alive(s.at);
            entry.settle_duplicate();
            moved
        };
        if let Some(old) = previous_owner {
            self.persist(&old).await?;
        }
        self.persist(&id).await.map(drop)
    }

    async fn gone(&self, instance: &str, at: Timestamp) -> Result<()> {
        let id = {
            let mut st = lock(&self.inner.state);
            st.rejected.remove(instance);
            let Some(id) = st.by_instance.remove(instance) else {
                return Ok(());
            };
            let Some(entry) = st.devices.get_mut(&id) else {
                return Ok(());
            };
            entry.sources.remove(instance);
            let own = entry.addr();
            if let Some(next) = entry.sources.values().next().copied() {
                // Another instance still announces the id: the record follows it if its own
                // address was the one that left.
                if !entry.sources.values().any(|a| Some(*a) == own) {
                    entry.device.ip = next.ip().to_string();
                    entry.device.port = next.port();
                }
                entry.alive(at);
            } else {
                entry.device.online = false;
            }
            entry.settle_duplicate();
            id
        };
        self.persist(&id).await.map(drop)
    }

    async fn reject(&self, r: RejectedSighting) -> Result<()> {
        {
            let mut st = lock(&self.inner.state);
            let same = st.rejected.get(&r.instance).is_some_and(|last| {
                (&last.addr, &last.reason, &last.txt) == (&r.addr, &r.reason, &r.txt)
            });
            if same {
                return Ok(());
            }
            st.rejected.insert(r.instance.clone(), r.clone());
        }
        let store = self.inner.store.clone();
        let stored = r.clone();
        tokio::task::spawn_blocking(move || store.put_rejected(&stored))
            .await
            .map_err(blocking_failed)??;
        tracing::info!(instance = %r.instance, "rejected an announcement: {}", r.reason);
        self.inner.bus.publish(Event::DeviceRejected(r));
        Ok(())
    }

    /// Writes the device's current record to the store and publishes it.
    pub(super) async fn persist(&self, id: &str) -> Result<Option<Device>> {
        let _turn = self.inner.write.lock().await;
        let Some(device) = self.device(id) else {
            return Ok(None);
        };
        let store = self.inner.store.clone();
        let stored = device.clone();
        tokio::task::spawn_blocking(move || store.put_device(&stored))
            .await
            .map_err(blocking_failed)??;
        self.inner.bus.publish(Event::DeviceUpdated(device.clone()));
        Ok(Some(device))
    }
}

fn unknown(id: &str) -> Error {
    Error::not_found(
        "no_such_device",
        format!("there is no device {id:?}; list the known ones with `aegis devices`"),
    )
}

fn new_device(s: &Sighting) -> Device {
    Device {
        id: s.txt.id.as_str().to_owned(),
        hostname: s.txt.host.clone(),
        ip: s.addr.to_string(),
        port: s.port,
        version: String::new(),
        project: None,
        chip: None,
        sha: None,
        slot: None,
        state: None,
        proto: s.txt.proto,
        key: None,
        online: true,
        first_seen: s.at,
        last_seen: s.at,
        duplicate: None,
    }
}

/// Copies what the TXT record says into the record. A full SHA-256 learned from `/info` is
/// kept while the announced prefix still matches it.
fn update_from_txt(d: &mut Device, txt: &TxtRecord) {
    let version_changed = d.version != txt.ver;
    d.sha = match (&txt.sha, d.sha.take()) {
        (Some(prefix), Some(full)) if full.len() == 64 && full.starts_with(prefix.as_str()) => {
            Some(full)
        }
        (Some(prefix), _) => Some(prefix.to_string()),
        (None, known) if !version_changed => known,
        (None, _) => None,
    };
    d.hostname.clone_from(&txt.host);
    d.version.clone_from(&txt.ver);
    d.project.clone_from(&txt.proj);
    d.chip = txt.chip.as_ref().map(|c| c.as_str().to_owned());
    d.slot = txt.slot.map(|s| s.to_string());
    d.state = txt.state.map(|s| s.as_str().to_owned());
    d.proto = txt.proto;
    d.key = txt.key.as_ref().map(ToString::to_string);
}
