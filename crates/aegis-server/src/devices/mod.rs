//! The device registry: who exists, what each runs, whether it is online and how fresh that
//! knowledge is. Fed by discovery (sightings) and by the server's own checks; persisted in the
//! store; every change is published on the event bus.

mod types;

pub use types::{Device, RejectedSighting};
