//! mDNS announcements for a whole simulated fleet through one responder.
//!
//! A real ESP32 runs its own mDNS responder; a thousand of them in one process would mean a
//! thousand sockets on port 5353 all answering every query. Instead one [`Announcer`] (one
//! `mdns-sd` daemon, one socket, one thread) publishes every device of the process: per device
//! a `_aegis-ota._tcp` instance named after its hostname, with SRV port = its control port,
//! an A record `<hostname>.local.` = its own address (127.0.1.x, not the host's) and the TXT
//! keys of PROTOCOL.md section 1. [`Announcer::announce`] registers a device or replaces its
//! TXT (and re-announces it); [`Announcer::goodbye`] withdraws it with TTL 0 records, as a
//! device does before a deliberate reboot.
//!
//! Calls never block: they validate the announcement, then queue it for the announcer's own
//! thread, which feeds the daemon (retrying while the daemon's command queue is full, so a
//! thousand devices can start at once). Names are not probed for conflicts: the fleet runner
//! gives every device a unique hostname, and probing would delay each announcement by ~750 ms.
//!
//! By default the responder works on IPv4 loopback only ([`Interfaces::Loopback`]): simulated
//! devices live on 127.x.y.z and must never be advertised onto a real LAN.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

pub use aegis_protocol::{MAX_TXT_ITEM, MAX_TXT_TOTAL, SERVICE_TYPE};

/// Which network interfaces the responder answers on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Interfaces {
    /// IPv4 loopback only (the default; what simulated devices on 127.x.y.z need).
    #[default]
    Loopback,
    /// Every interface `mdns-sd` finds, loopback included.
    All,
    /// These interfaces by name (e.g. `lo`, `eth0`).
    Named(Vec<String>),
}

/// How to start an [`Announcer`].
#[derive(Debug, Clone)]
pub struct AnnounceOptions {
    /// Interfaces to answer on.
    pub interfaces: Interfaces,
    /// UDP port of the mDNS traffic; 5353 everywhere except in special tests.
    pub mdns_port: u16,
}

impl Default for AnnounceOptions {
    fn default() -> Self {
        Self {
            interfaces: Interfaces::Loopback,
            mdns_port: 5353,
        }
    }
}

/// One device's announcement: instance name and host name are `hostname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Hostname, a DNS label (`esp-sim-001`); the instance name and `<hostname>.local.`.
    pub hostname: String,
    /// The device's own address, published as the A record.
    pub ip: Ipv4Addr,
    /// The control port, published in the SRV record.
    pub port: u16,
    /// TXT items in order (PROTOCOL.md section 1 keys).
    pub txt: Vec<(String, String)>,
}

/// Why an announcement cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("hostname `{0}` is not a DNS label: use 1 to 63 letters, digits and inner hyphens")]
    InvalidHostname(String),
    #[error("TXT key `{0}` is invalid: keys are 1 or more printable ASCII characters without `=`")]
    InvalidTxtKey(String),
    #[error("TXT item `{key}` is {len} bytes long, more than the {MAX_TXT_ITEM} bytes allowed")]
    TxtItemTooLong { key: String, len: usize },
    #[error("the TXT record is {0} bytes long, more than the {MAX_TXT_TOTAL} bytes allowed")]
    TxtTooLong(usize),
    #[error("the mDNS responder could not be started or refused the announcement: {0}")]
    Mdns(String),
    #[error("the mDNS responder has been shut down, so nothing more can be announced")]
    Stopped,
}

enum Op {
    Register(Box<ServiceInfo>),
    Unregister(String),
    Shutdown(mpsc::Sender<()>),
}

/// The fleet's one mDNS responder. Cheap to clone; every clone feeds the same daemon.
#[derive(Clone)]
pub struct Announcer {
    tx: mpsc::Sender<Op>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").finish_non_exhaustive()
    }
}

impl Announcer {
    /// Starts the responder (its daemon thread and the feeding thread).
    pub fn new(opts: AnnounceOptions) -> Result<Self, AnnounceError> {
        let daemon = ServiceDaemon::new_with_port(opts.mdns_port)
            .map_err(|e| AnnounceError::Mdns(e.to_string()))?;
        let select = |res: mdns_sd::Result<()>| res.map_err(|e| AnnounceError::Mdns(e.to_string()));
        match &opts.interfaces {
            Interfaces::All => {}
            Interfaces::Loopback => {
                select(daemon.disable_interface(IfKind::All))?;
                select(daemon.enable_interface(IfKind::LoopbackV4))?;
            }
            Interfaces::Named(names) => {
                select(daemon.disable_interface(IfKind::All))?;
                let kinds: Vec<IfKind> = names.iter().map(|n| IfKind::Name(n.clone())).collect();
                select(daemon.enable_interface(kinds))?;
            }
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("aegis-announcer".into())
            .spawn(move || feed(daemon, rx))
            .map_err(|e| AnnounceError::Mdns(format!("cannot start its thread: {e}")))?;
        Ok(Self {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Publishes `a`, or replaces the TXT (and address, port) of a device already published
    /// under the same hostname; either way the records are announced at once.
    pub fn announce(&self, a: &Announcement) -> Result<(), AnnounceError> {
        let info = service_info(a)?;
        self.tx
            .send(Op::Register(Box::new(info)))
            .map_err(|_| AnnounceError::Stopped)
    }

    /// Withdraws the device `hostname` (mDNS goodbye: its records with TTL 0). Nothing happens
    /// for a hostname that is not published.
    pub fn goodbye(&self, hostname: &str) {
        // After shutdown there is nothing left to withdraw.
        let _ = self.tx.send(Op::Unregister(fullname(hostname)));
    }

    /// Withdraws every device (goodbyes) and stops the responder, waiting up to a few seconds
    /// for the goodbyes to go out. Other clones stop working too.
    pub fn shutdown(self) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Op::Shutdown(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(5));
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// `<hostname>._aegis-ota._tcp.local.`
fn fullname(hostname: &str) -> String {
    format!("{hostname}.{SERVICE_TYPE}")
}

fn service_info(a: &Announcement) -> Result<ServiceInfo, AnnounceError> {
    let h = &a.hostname;
    let label_ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    if !label_ok {
        return Err(AnnounceError::InvalidHostname(h.clone()));
    }
    let mut total = 0;
    for (k, v) in &a.txt {
        if k.is_empty() || k.contains('=') || !k.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(AnnounceError::InvalidTxtKey(k.clone()));
        }
        let len = k.len() + 1 + v.len();
        if len > MAX_TXT_ITEM {
            return Err(AnnounceError::TxtItemTooLong {
                key: k.clone(),
                len,
            });
        }
        total += 1 + len;
    }
    if total > MAX_TXT_TOTAL {
        return Err(AnnounceError::TxtTooLong(total));
    }
    let mut info = ServiceInfo::new(
        SERVICE_TYPE,
        h,
        &format!("{h}.local."),
        std::net::IpAddr::V4(a.ip),
        a.port,
        a.txt.as_slice(),
    )
    .map_err(|e| AnnounceError::Mdns(e.to_string()))?;
    info.set_requires_probe(false);
    Ok(info)
}

/// The feeding thread: hands queued operations to the daemon, retrying while its bounded
/// command queue is full.
fn feed(daemon: ServiceDaemon, rx: mpsc::Receiver<Op>) {
    let mut published: HashSet<String> = HashSet::new();
    while let Ok(op) = rx.recv() {
        match op {
            Op::Register(info) => {
                published.insert(info.get_fullname().to_string());
                retry(|| daemon.register((*info).clone()));
            }
            Op::Unregister(name) => {
                if published.remove(&name) {
                    retry(|| daemon.unregister(&name).map(drop));
                }
            }
            Op::Shutdown(done) => {
                // The daemon sends a goodbye for every service it still has when it exits.
                let mut status = None;
                for _ in 0..5000 {
                    match daemon.shutdown() {
                        Err(mdns_sd::Error::Again) => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(rx) => {
                            status = Some(rx);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Some(rx) = status {
                    let _ = rx.recv_timeout(Duration::from_secs(5));
                }
                let _ = done.send(());
                return;
            }
        }
    }
    // Every Announcer clone was dropped without shutdown: still say goodbye.
    let _ = daemon.shutdown();
}

/// Runs `f` until the daemon accepts the command (it answers `Again` while its queue is full).
fn retry(mut f: impl FnMut() -> mdns_sd::Result<()>) {
    for _ in 0..5000 {
        match f() {
            Err(mdns_sd::Error::Again) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => {
                tracing::warn!("mDNS responder: {e}");
                return;
            }
            Ok(()) => return,
        }
    }
    tracing::warn!("mDNS responder: its command queue stayed full for 5 s; an update was lost");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(host: &str, txt: Vec<(String, String)>) -> Announcement {
        Announcement {
            hostname: host.into(),
            ip: Ipv4Addr::new(127, 0, 1, 1),
            port: 8080,
            txt,
        }
    }

    #[test]
    fn validates_hostnames_and_txt() {
        let ok = vec![("id".to_string(), "a1b2c3d4e5f6".to_string())];
        assert!(service_info(&ann("esp-sim-001", ok.clone())).is_ok());
        for bad in ["", "-a", "a-", "a.b", "a b", &"x".repeat(64)] {
            assert!(matches!(
                service_info(&ann(bad, ok.clone())),
                Err(AnnounceError::InvalidHostname(_))
            ));
        }
        let long = vec![("k".to_string(), "v".repeat(254))];
        assert!(matches!(
            service_info(&ann("a", long)),
            Err(AnnounceError::TxtItemTooLong { len: 256, .. })
        ));
        let many: Vec<_> = (0..6).map(|i| (format!("k{i}"), "v".repeat(240))).collect();
        assert!(matches!(
            service_info(&ann("a", many)),
            Err(AnnounceError::TxtTooLong(1464))
        ));
        let key = vec![("a=b".to_string(), String::new())];
        assert!(matches!(
            service_info(&ann("a", key)),
            Err(AnnounceError::InvalidTxtKey(_))
        ));
    }
}
