//! The device registry: who exists, what each runs, whether it is online and how fresh that
//! knowledge is. Fed by discovery (sightings) and by the server's own checks; persisted in the
//! store; every change is published on the event bus.
//!
//! - [`registry`]: the records and the rules that change them ([`Registry`]);
//! - [`presence`]: the periodic `/info` check that keeps online/offline honest;
//! - [`prober`]: how a device is asked (`GET /aegis/v1/info`), behind a trait for tests.

pub mod presence;
pub mod prober;
pub mod registry;
mod types;

pub use presence::{PassReport, PresenceConfig};
pub use prober::{HttpProber, ProbeError, ProbeFuture, Prober};
pub use registry::{Freshness, Registry};
pub use types::{Device, RejectedSighting};
