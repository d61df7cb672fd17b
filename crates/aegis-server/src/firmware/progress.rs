//! Download progress per rollout target. The rollout engine says which device it expects to
//! fetch which image ([`DownloadTracker::expect`], keyed by image SHA-256 and the device's IP);
//! the download endpoint attributes every byte it hands to such a device's connection to that
//! expectation. Per chunk the endpoint only adds to atomic counters; the map is consulted once
//! per request, and subscribers are woken once per request start and end, never per chunk.
//!
//! Bytes are counted when the endpoint hands a chunk to the connection; hyper's write buffer
//! and the kernel's socket buffer may hold part of them (at most a few hundred KiB) when a
//! connection breaks, so an aborted count can run slightly ahead of what the device received.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Request-level facts about one target's downloads; sent to subscribers on every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadStatus {
    /// Requests that started sending a body (GET; HEAD and errors are not counted).
    pub requests: u32,
    /// Requests sending right now.
    pub active: u32,
    /// Requests that sent their whole (range of the) body.
    pub finished: u32,
    /// Requests whose connection ended before their last byte.
    pub aborted: u32,
    /// True once some request sent the image's last byte.
    pub reached_end: bool,
}

/// Live progress of one expected download. Cheap to read at any rate.
#[derive(Debug)]
pub struct TargetProgress {
    sha256: String,
    ip: IpAddr,
    /// Bytes handed to the device's connections, over all requests (a resumed download adds
    /// only the resumed range; a restarted one counts again).
    sent: AtomicU64,
    /// Highest file offset (exclusive end) sent so far: the progress-bar position.
    position: AtomicU64,
    status: watch::Sender<DownloadStatus>,
}

impl TargetProgress {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The furthest byte offset sent so far (use this for "bytes of total").
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> DownloadStatus {
        *self.status.borrow()
    }

    /// A receiver that wakes on each request start and end.
    pub fn subscribe(&self) -> watch::Receiver<DownloadStatus> {
        self.status.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut DownloadStatus)) {
        self.status.send_modify(f);
    }
}

/// Expected downloads by (image SHA-256, device IP).
type Expectations = HashMap<(String, IpAddr), Arc<TargetProgress>>;

/// Registry of expected downloads; clones share it.
#[derive(Debug, Clone, Default)]
pub struct DownloadTracker {
    targets: Arc<Mutex<Expectations>>,
}

impl DownloadTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts counting downloads of `sha256` by `ip`. The expectation lasts as long as the
    /// returned handle (or its clones); a second `expect` for the same pair replaces the first.
    pub fn expect(&self, sha256: &str, ip: IpAddr) -> ProgressHandle {
        let progress = Arc::new(TargetProgress {
            sha256: sha256.to_string(),
            ip,
            sent: AtomicU64::new(0),
            position: AtomicU64::new(0),
            status: watch::channel(DownloadStatus::default()).0,
        });
        self.lock()
            .insert((sha256.to_string(), ip), progress.clone());
        ProgressHandle {
            guard: Arc::new(Registration {
                tracker: self.clone(),
                progress,
            }),
        }
    }

    /// How many expectations are registered (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Called by the endpoint when it starts sending `[start, end)` of an image to `ip`.
    pub(crate) fn start(
        &self,
        sha256: &str,
        ip: IpAddr,
        start: u64,
        end: u64,
        size: u64,
    ) -> Option<RequestProgress> {
        let progress = self.lock().get(&(sha256.to_string(), ip)).cloned()?;
        progress.update(|s| {
            s.requests += 1;
            s.active += 1;
        });
        Some(RequestProgress {
            progress,
            offset: start,
            end,
            size,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Expectations> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rollout engine's handle on one expected download. Dropping every clone removes the
/// expectation.
#[derive(Debug, Clone)]
pub struct ProgressHandle {
    guard: Arc<Registration>,
}

impl std::ops::Deref for ProgressHandle {
    type Target = TargetProgress;
    fn deref(&self) -> &TargetProgress {
        &self.guard.progress
    }
}

#[derive(Debug)]
struct Registration {
    tracker: DownloadTracker,
    progress: Arc<TargetProgress>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.tracker.lock();
        let key = (self.progress.sha256.clone(), self.progress.ip);
        if map
            .get(&key)
            .is_some_and(|p| Arc::ptr_eq(p, &self.progress))
        {
            map.remove(&key);
        }
    }
}

/// Counting for one response body: [`add`](RequestProgress::add) per chunk (atomics only);
/// dropping it reports the request finished or aborted.
#[derive(Debug)]
pub(crate) struct RequestProgress {
    progress: Arc<TargetProgress>,
    /// Next file offset to send.
    offset: u64,
    end: u64,
    size: u64,
}

impl RequestProgress {
    pub(crate) fn add(&mut self, n: u64) {
        self.offset += n;
        self.progress.sent.fetch_add(n, Ordering::Relaxed);
        self.progress
            .position
            .fetch_max(self.offset, Ordering::Relaxed);
    }
}

impl Drop for RequestProgress {
    fn drop(&mut self) {
        let complete = self.offset >= self.end;
        let reached_end = complete && self.end >= self.size;
        self.progress.update(|s| {
            s.active = s.active.saturating_sub(1);
            if complete {
                s.finished += 1;
            } else {
                s.aborted += 1;
            }
            s.reached_end |= reached_end;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_to_the_expected_target_until_its_handle_is_dropped() {
        let tracker = DownloadTracker::new();
        let ip: IpAddr = [127, 0, 1, 5].into();
        let handle = tracker.expect("aa", ip);
        assert!(
            tracker
                .start("aa", [127, 0, 1, 6].into(), 0, 10, 10)
                .is_none()
        );
        let mut req = tracker.start("aa", ip, 4, 10, 10).unwrap();
        req.add(3);
        assert_eq!((handle.bytes_sent(), handle.position()), (3, 7));
        drop(req);
        assert_eq!(handle.status().aborted, 1);
        let mut req = tracker.start("aa", ip, 7, 10, 10).unwrap();
        req.add(3);
        drop(req);
        let s = handle.status();
        assert_eq!(
            (s.requests, s.finished, s.active, s.reached_end),
            (2, 1, 0, true)
        );
        drop(handle);
        assert!(tracker.is_empty());
    }
}
