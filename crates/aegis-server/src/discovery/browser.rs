//! The mDNS side of discovery: one `mdns-sd` daemon browsing [`SERVICE_TYPE`], and the task
//! that translates its events into [`DiscoveryEvent`]s and re-queries known instances on a
//! schedule.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use aegis_protocol::SERVICE_TYPE;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::DiscoveryConfig;
use super::sighting::{DiscoveryEvent, classify, instance_name};
use crate::time::SharedClock;
use crate::{Error, Result};

/// Pause before retrying a command the daemon's full queue refused (I/O pacing only).
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(20);
/// How many times one re-query command is retried while the daemon's queue is full.
const QUEUE_FULL_RETRIES: usize = 50;

/// A running discovery: the daemon and its translating task. Dropping it stops both.
pub struct Discovery {
    daemon: ServiceDaemon,
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

fn mdns_error(what: &str, e: mdns_sd::Error) -> Error {
    Error::internal(format!(
        "mDNS discovery could not {what}: {e}; check that the network interface exists and allows multicast"
    ))
}

/// Starts browsing. Events arrive on the returned bounded channel until [`Discovery::stop`]
/// (or the drop of the handle). Must be called inside a tokio runtime.
pub fn start(
    config: DiscoveryConfig,
    clock: SharedClock,
) -> Result<(Discovery, mpsc::Receiver<DiscoveryEvent>)> {
    if let Some(name) = &config.interface {
        check_interface(name)?;
    }
    let daemon =
        ServiceDaemon::new_with_port(config.mdns_port).map_err(|e| mdns_error("start", e))?;
    if let Some(name) = &config.interface {
        daemon
            .disable_interface(IfKind::All)
            .and_then(|()| daemon.enable_interface(IfKind::Name(name.clone())))
            .map_err(|e| mdns_error("select the interface", e))?;
    }
    let events = daemon
        .browse(SERVICE_TYPE)
        .map_err(|e| mdns_error("browse", e))?;
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        Browser {
            daemon: daemon.clone(),
            config,
            clock,
            tx,
            known: BTreeSet::new(),
        }
        .run(events, stop.clone()),
    );
    Ok((
        Discovery {
            daemon,
            task: Some(task),
            stop,
        },
        rx,
    ))
}

/// On Linux, refuses an interface name the system does not have (mdns-sd would silently
/// browse nothing).
fn check_interface(name: &str) -> Result<()> {
    let sys = std::path::Path::new("/sys/class/net");
    if sys.is_dir() && !sys.join(name).exists() {
        return Err(Error::bad_request(
            "no_such_interface",
            format!(
                "there is no network interface named {name:?}; pass an existing one to --mdns-interface (see `ip link`)"
            ),
        ));
    }
    Ok(())
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// Stops the task and the daemon, waiting for both.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await;
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.task.is_some() {
            let _ = self.daemon.shutdown();
        }
    }
}

struct Browser {
    daemon: ServiceDaemon,
    config: DiscoveryConfig,
    clock: SharedClock,
    tx: mpsc::Sender<DiscoveryEvent>,
    /// Full names of the instances currently resolved (re-queried on schedule).
    known: BTreeSet<String>,
}

impl Browser {
    async fn run(mut self, mut events: mdns_sd::Receiver<ServiceEvent>, stop: CancellationToken) {
        let mut requery = self.clock.sleep(self.config.requery_every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut requery => {
                    self.requery().await;
                    requery = self.clock.sleep(self.config.requery_every);
                }
                ev = events.recv_async() => match ev {
                    Ok(ev) => {
                        let Some(out) = self.translate(ev) else { continue };
                        tokio::select! {
                            () = stop.cancelled() => return,
                            sent = self.tx.send(out) => if sent.is_err() { return },
                        }
                    }
                    // mdns-sd ends a subscription whose channel filled up: browse again (the
                    // daemon replays its cache, so nothing is lost).
                    Err(_) => match self.daemon.browse(SERVICE_TYPE) {
                        Ok(rx) => {
                            tracing::warn!("mDNS browse fell behind; restarted it");
                            events = rx;
                        }
                        Err(e) => {
                            tracing::error!("mDNS discovery stopped: {e}");
                            return;
                        }
                    },
                }
            }
        }
    }

    fn translate(&mut self, ev: ServiceEvent) -> Option<DiscoveryEvent> {
        let at = self.clock.now();
        match ev {
            ServiceEvent::ServiceResolved(r) => {
                let addrs: Vec<Ipv4Addr> = r.get_addresses_v4().into_iter().collect();
                let pairs: Vec<(String, String)> = r
                    .get_properties()
                    .iter()
                    .map(|p| {
                        let v = p.val().map(String::from_utf8_lossy).unwrap_or_default();
                        (p.key().to_owned(), v.into_owned())
                    })
                    .collect();
                self.known.insert(r.fullname.clone());
                let instance = instance_name(&r.fullname);
                Some(classify(&instance, &addrs, r.port, &pairs, at))
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                self.known.remove(&fullname);
                Some(DiscoveryEvent::Gone {
                    instance: instance_name(&fullname),
                    at,
                })
            }
            _ => None,
        }
    }

    /// Asks every known instance to answer again; the daemon reports the silent ones removed.
    async fn requery(&self) {
        for fullname in &self.known {
            let mut tries = 0;
            loop {
                match self
                    .daemon
                    .verify(fullname.clone(), self.config.requery_timeout)
                {
                    Err(mdns_sd::Error::Again) if tries < QUEUE_FULL_RETRIES => {
                        tries += 1;
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err(e) => {
                        tracing::debug!("mDNS re-query of {fullname} not sent: {e}");
                        break;
                    }
                    Ok(()) => break,
                }
            }
        }
    }
}
