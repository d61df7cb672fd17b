//! The presence checker: makes online/offline trustworthy without waiting for mDNS caches.
//!
//! On every tick of the injected clock it picks the devices nobody has heard from for
//! [`PresenceConfig::check_after`] (online ones) or not checked for
//! [`PresenceConfig::recheck_offline`] (offline ones) and asks each for `/info` through a
//! [`Prober`], at most [`PresenceConfig::concurrency`] at a time, so a thousand devices never
//! cause a thousand simultaneous requests. An answer refreshes the record (`last_seen`, the
//! full `sha`, `state`, ...) and brings an offline device back; a device is marked offline when
//! [`PresenceConfig::failures_to_offline`] consecutive checks failed *and* it has not been seen
//! for [`PresenceConfig::offline_after`].
//!
//! With the defaults (check after 30 s, offline after 2 failures and 60 s) a device that
//! vanishes silently at `t` is checked at `t+30 s` and `t+60 s` and is offline at `t+60 s`
//! (plus at most one tick).

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::prober::{ProbeError, Prober};
use super::registry::{Registry, lock};

/// When and how hard to check.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// How often the checker looks for devices that are due.
    pub tick: Duration,
    /// An online device not seen (nor checked) for this long is checked.
    pub check_after: Duration,
    /// Consecutive failed checks before a device may be marked offline...
    pub failures_to_offline: u32,
    /// ...and how long it must have gone unseen.
    pub offline_after: Duration,
    /// An offline device is checked again this often (it may be back without re-announcing).
    pub recheck_offline: Duration,
    /// Checks in flight at once.
    pub concurrency: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(5),
            check_after: Duration::from_secs(30),
            failures_to_offline: 2,
            offline_after: Duration::from_secs(60),
            recheck_offline: Duration::from_secs(60),
            concurrency: 32,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Devices checked.
    pub checked: usize,
    /// Of those, answered correctly.
    pub ok: usize,
    /// Devices this pass marked offline.
    pub went_offline: usize,
    /// Offline devices this pass brought back.
    pub came_back: usize,
}

/// The outcome of one check, applied to the registry.
enum Outcome {
    Ok { was_offline: bool },
    Failed { went_offline: bool },
    Skipped,
}

impl Registry {
    /// Runs the checker until `stop` fires: a pass, then a tick of the registry's clock.
    pub fn spawn_presence(
        &self,
        prober: Arc<dyn Prober>,
        config: PresenceConfig,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            loop {
                let report = registry.check_presence(prober.as_ref(), &config).await;
                if report.went_offline + report.came_back > 0 {
                    tracing::info!(
                        "presence: {} checked, {} went offline, {} came back",
                        report.checked,
                        report.went_offline,
                        report.came_back
                    );
                }
                let tick = registry.inner.clock.sleep(config.tick);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tick => {}
                }
            }
        })
    }

    /// One pass at the clock's current time: checks every device that is due.
    pub async fn check_presence(&self, prober: &dyn Prober, config: &PresenceConfig) -> PassReport {
        let now = self.inner.clock.now();
        let due: Vec<(String, SocketAddrV4)> = {
            let st = lock(&self.inner.state);
            let mut due: Vec<_> = st
                .devices
                .values()
                .filter(|e| {
                    if e.device.online {
                        let heard = e
                            .last_checked
                            .map_or(e.device.last_seen, |c| c.max(e.device.last_seen));
                        now.since(heard) >= config.check_after
                    } else {
                        e.last_checked
                            .is_none_or(|c| now.since(c) >= config.recheck_offline)
                    }
                })
                .filter_map(|e| Some((e.device.id.clone(), e.addr()?)))
                .collect();
            due.sort();
            due
        };
        let mut report = PassReport {
            checked: due.len(),
            ..PassReport::default()
        };
        let mut outcomes = stream::iter(due)
            .map(|(id, addr)| async move {
                let answer = prober.info(*addr.ip(), addr.port()).await;
                self.settle_check(&id, addr, answer, config).await
            })
            .buffer_unordered(config.concurrency.max(1));
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Outcome::Ok { was_offline } => {
                    report.ok += 1;
                    report.came_back += usize::from(was_offline);
                }
                Outcome::Failed { went_offline } => {
                    report.went_offline += usize::from(went_offline);
                }
                Outcome::Skipped => {}
            }
        }
        report
    }

    async fn settle_check(
        &self,
        id: &str,
        addr: SocketAddrV4,
        answer: Result<aegis_protocol::Info, ProbeError>,
        config: &PresenceConfig,
    ) -> Outcome {
        let now = self.inner.clock.now();
        let was_offline = match self.device(id) {
            // The record moved (new address) while the check ran: this answer is about
            // another address; the next pass checks the new one.
            Some(d) if d.ip == addr.ip().to_string() && d.port == addr.port() => !d.online,
            _ => return Outcome::Skipped,
        };
        let failure = match answer {
            Ok(info) => match self.apply_info(id, &info).await {
                Ok(_) => return Outcome::Ok { was_offline },
                Err(e) => e.message,
            },
            Err(e) => e.0,
        };
        tracing::debug!(device = id, "presence check failed: {failure}");
        let went_offline = {
            let mut st = lock(&self.inner.state);
            let Some(e) = st.devices.get_mut(id) else {
                return Outcome::Skipped;
            };
            e.last_checked = Some(now);
            e.failures = e.failures.saturating_add(1);
            let expire = e.device.online
                && e.failures >= config.failures_to_offline
                && now.since(e.device.last_seen) >= config.offline_after;
            if expire {
                e.device.online = false;
            }
            expire
        };
        if went_offline && let Err(e) = self.persist(id).await {
            tracing::error!(device = id, "could not record the device offline: {e}");
        }
        Outcome::Failed { went_offline }
    }
}
