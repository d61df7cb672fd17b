//! The audit log handle and its single writer task.
//!
//! Anyone holding an [`AuditLog`] records events with [`AuditLog::record`]; the record is
//! timestamped there and queued on a bounded channel. One writer task takes whatever is queued
//! (up to [`MAX_BATCH`]), gives each record the next `seq` and its chained hash, appends the
//! batch in one store transaction on the blocking pool, and only then publishes
//! [`Event::AuditAppended`] for each. A full queue makes `record().await` wait (back-pressure);
//! nothing is dropped. A record is acknowledged once committed: [`AuditLog::flush`] returns when
//! everything recorded before it is. After a restart the chain continues from the store's last
//! record.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::AuditRecord;
use super::chain::{GENESIS, record_hash};
use crate::Result;
use crate::error::{Error, ErrorKind};
use crate::events::{Event, EventBus};
use crate::store::Store;
use crate::time::{SharedClock, Timestamp};

/// Records queued before `record().await` waits for the writer.
pub const QUEUE: usize = 4096;

/// Most records committed in one transaction.
pub const MAX_BATCH: usize = 1000;

/// Waits after a failed commit before trying again (first, then doubling up to the last).
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What a caller records; the log adds `seq`, `at` (the clock's now) and `hash`.
/// Unset `detail` (`null`) is stored as `{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRecord {
    pub kind: String,
    pub rollout: Option<String>,
    pub device: Option<String>,
    pub firmware: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub outcome: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub detail: serde_json::Value,
}

impl NewRecord {
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            ..Self::default()
        }
    }
}

/// A record waiting for its `seq` and `hash`.
#[derive(Debug, Clone)]
struct Draft {
    at: Timestamp,
    record: NewRecord,
}

impl Draft {
    fn seal(&self, seq: u64, prev_hash: &str) -> AuditRecord {
        let r = &self.record;
        let mut sealed = AuditRecord {
            seq,
            at: self.at,
            kind: r.kind.clone(),
            rollout: r.rollout.clone(),
            device: r.device.clone(),
            firmware: r.firmware.clone(),
            from_version: r.from_version.clone(),
            to_version: r.to_version.clone(),
            outcome: r.outcome.clone(),
            bytes: r.bytes,
            error: r.error.clone(),
            started_at: r.started_at,
            ended_at: r.ended_at,
            detail: match &r.detail {
                serde_json::Value::Null => serde_json::Value::Object(Default::default()),
                other => other.clone(),
            },
            hash: String::new(),
        };
        sealed.hash = record_hash(prev_hash, &sealed);
        sealed
    }
}

/// Nearly every message is a record, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Msg {
    Record(Draft),
    Flush(oneshot::Sender<Result<()>>),
    Shutdown(oneshot::Sender<Result<()>>),
}

/// The handle to the audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    clock: SharedClock,
}

/// The running writer task; await it (after [`AuditLog::shutdown`]) to know it has ended.
#[derive(Debug)]
pub struct WriterTask {
    handle: JoinHandle<()>,
}

impl Future for WriterTask {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.handle).poll(cx).map(|joined| {
            if let Err(e) = joined {
                tracing::error!(error = %e, "the audit writer task failed");
            }
        })
    }
}

fn stopped() -> Error {
    Error::new(
        ErrorKind::Internal,
        "audit_stopped",
        "the audit log has been shut down; restart the server to record again",
    )
}

impl AuditLog {
    /// Starts the writer task (on the current tokio runtime). The chain continues from the
    /// store's last record.
    pub fn start(
        store: Arc<dyn Store>,
        clock: SharedClock,
        bus: EventBus,
    ) -> (AuditLog, WriterTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            store,
            bus,
            clock: clock.clone(),
            rx,
            head: None,
            pending: Vec::new(),
            flushes: Vec::new(),
            shutdowns: Vec::new(),
        };
        let handle = tokio::spawn(writer.run());
        (AuditLog { tx, clock }, WriterTask { handle })
    }

    /// Queues a record, stamped with the clock's current time. Returns at once unless the
    /// queue is full, in which case it waits for room. A record sent after
    /// [`shutdown`](Self::shutdown) cannot be written and is reported as an error in the log.
    pub async fn record(&self, record: NewRecord) {
        let draft = Draft {
            at: self.clock.now(),
            record,
        };
        if let Err(mpsc::error::SendError(Msg::Record(lost))) =
            self.tx.send(Msg::Record(draft)).await
        {
            tracing::error!(
                kind = %lost.record.kind,
                rollout = ?lost.record.rollout,
                device = ?lost.record.device,
                "audit record not written: the audit log was already shut down"
            );
        }
    }

    /// Returns once every record recorded before this call is committed (acknowledged), or
    /// the error that kept them from being committed (the writer keeps retrying them).
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Commits everything recorded so far and stops the writer. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

struct Writer {
    store: Arc<dyn Store>,
    bus: EventBus,
    clock: SharedClock,
    rx: mpsc::Receiver<Msg>,
    /// `(seq, hash)` of the last committed record; None = read it from the store.
    head: Option<(u64, String)>,
    /// Records taken from the queue, not yet committed, in order.
    pending: Vec<Draft>,
    /// Flushes whose records are all in `pending` (or committed).
    flushes: Vec<oneshot::Sender<Result<()>>>,
    shutdowns: Vec<oneshot::Sender<Result<()>>>,
}

impl Writer {
    async fn run(mut self) {
        let mut retry = RETRY_FIRST;
        loop {
            if self.pending.is_empty() && self.flushes.is_empty() {
                match self.rx.recv().await {
                    Some(msg) => self.take(msg),
                    // Every handle is gone and nothing is pending.
                    None => return,
                }
            }
            while self.pending.len() < MAX_BATCH && self.shutdowns.is_empty() {
                match self.rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            if !self.shutdowns.is_empty() {
                // Whatever was accepted before the shutdown gets written too.
                self.rx.close();
                while let Some(msg) = self.rx.recv().await {
                    self.take(msg);
                }
            }
            let result = self.commit().await;
            for flush in self.flushes.drain(..) {
                let _ = flush.send(result.clone());
            }
            if !self.shutdowns.is_empty() {
                if let Err(e) = &result {
                    tracing::error!(
                        records = self.pending.len(),
                        error = %e,
                        "audit records could not be written before shutdown"
                    );
                }
                for done in self.shutdowns.drain(..) {
                    let _ = done.send(result.clone());
                }
                return;
            }
            match result {
                Ok(()) => retry = RETRY_FIRST,
                Err(e) => {
                    tracing::error!(records = self.pending.len(), error = %e,
                        "audit records could not be written; retrying");
                    self.clock.sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Record(draft) => self.pending.push(draft),
            Msg::Flush(tx) => self.flushes.push(tx),
            Msg::Shutdown(tx) => self.shutdowns.push(tx),
        }
    }

    /// Commits every pending record in one transaction; on failure they stay pending.
    async fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(std::mem::take(&mut self.pending));
        let store = self.store.clone();
        let head = self.head.clone();
        let job = batch.clone();
        let joined =
            tokio::task::spawn_blocking(move || seal_and_append(store.as_ref(), head, &job)).await;
        let result = joined.unwrap_or_else(|e| {
            Err(Error::internal(format!(
                "the audit writer failed: {e}; this is a bug, please report it"
            )))
        });
        match result {
            Ok(records) => {
                if let Some(last) = records.last() {
                    self.head = Some((last.seq, last.hash.clone()));
                }
                for record in records {
                    self.bus.publish(Event::AuditAppended(record));
                }
                Ok(())
            }
            Err(e) => {
                // Re-read the head next time: the store is the truth.
                self.head = None;
                self.pending = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                Err(e)
            }
        }
    }
}

/// Numbers and chains the drafts after `head` (read from the store when None) and appends
/// them in one transaction.
fn seal_and_append(
    store: &dyn Store,
    head: Option<(u64, String)>,
    drafts: &[Draft],
) -> Result<Vec<AuditRecord>> {
    let (mut seq, mut prev) = match head {
        Some(head) => head,
        None => match store.last_audit()? {
            Some(last) => (last.seq, last.hash),
            None => (0, GENESIS.to_string()),
        },
    };
    let mut records = Vec::with_capacity(drafts.len());
    for draft in drafts {
        seq += 1;
        let record = draft.seal(seq, &prev);
        prev.clone_from(&record.hash);
        records.push(record);
    }
    store.append_audit(&records)?;
    Ok(records)
}
