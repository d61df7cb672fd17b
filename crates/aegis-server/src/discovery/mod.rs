//! Discovery: browses `_aegis-ota._tcp` with one mDNS daemon and turns announcements into
//! sightings (or rejected sightings, with the reason) for the device registry.
//!
//! [`start`] runs one `mdns-sd` daemon (optionally pinned to one interface) and a task that
//! turns its events into [`DiscoveryEvent`]s on a bounded channel: a resolved instance becomes
//! a [`Sighting`] or a rejection ([`sighting::classify`]), a goodbye or an expired instance
//! becomes [`DiscoveryEvent::Gone`]. On a schedule the task re-queries every known instance
//! (`verify`: an instance that no longer answers is flushed and reported gone within seconds,
//! instead of lingering for mDNS's 75-minute cache lifetime).

mod browser;
pub mod sighting;

use std::time::Duration;

pub use browser::{Discovery, start};
pub use sighting::{DiscoveryEvent, Sighting};

/// How to run discovery.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Browse only on this interface (`--mdns-interface`, e.g. `eth0` or `lo`); None = all.
    pub interface: Option<String>,
    /// How often every known instance is re-queried.
    pub requery_every: Duration,
    /// How long a re-queried instance has to answer before it is reported gone.
    pub requery_timeout: Duration,
    /// Capacity of the event channel (the consumer applies back-pressure beyond it).
    pub capacity: usize,
    /// UDP port of the mDNS traffic: 5353 except in special tests.
    pub mdns_port: u16,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            interface: None,
            requery_every: Duration::from_secs(60),
            requery_timeout: mdns_sd::VERIFY_TIMEOUT_DEFAULT,
            capacity: 1024,
            mdns_port: 5353,
        }
    }
}
