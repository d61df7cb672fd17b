//! The in-process event bus: every change a user might watch (a device appears, changes or goes
//! offline; firmware is added; a rollout or target moves) is published here once, and the SSE
//! endpoint, the CLI's `--watch` and tests subscribe. Bounded: a subscriber that falls behind
//! loses the oldest events and is told so (it then re-reads the state it shows).

use serde::Serialize;
use tokio::sync::broadcast;

use crate::audit::AuditRecord;
use crate::devices::{Device, RejectedSighting};
use crate::firmware::FirmwareEntry;
use crate::rollout::{RolloutSummary, Target};

/// One change, as sent to SSE clients: `event: <type>` and `data: <json of the payload>`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    DeviceUpdated(Device),
    DeviceRejected(RejectedSighting),
    FirmwareAdded(FirmwareEntry),
    FirmwareDeleted { sha256: String },
    RolloutUpdated(RolloutSummary),
    TargetUpdated { rollout: String, target: Target },
    AuditAppended(AuditRecord),
}

impl Event {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::DeviceUpdated(_) => "device_updated",
            Event::DeviceRejected(_) => "device_rejected",
            Event::FirmwareAdded(_) => "firmware_added",
            Event::FirmwareDeleted { .. } => "firmware_deleted",
            Event::RolloutUpdated(_) => "rollout_updated",
            Event::TargetUpdated { .. } => "target_updated",
            Event::AuditAppended(_) => "audit_appended",
        }
    }
}

/// Capacity of the bus; a slower subscriber sees `Lagged` and re-syncs.
const CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }

    /// Publishes an event; having no subscribers is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
