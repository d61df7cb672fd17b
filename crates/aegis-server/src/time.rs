//! Time as a parameter: every decision that depends on time (timeouts, schedules, "seen N s
//! ago", offline expiry) asks a [`Clock`], so tests can run a 10-minute rollout in milliseconds
//! with [`ManualClock`] and assert exact state sequences. Nothing else in the server reads the
//! wall clock.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time: milliseconds since the Unix epoch, UTC. Serialized as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    fn to_system_time(self) -> SystemTime {
        match u64::try_from(self.0) {
            Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
            Err(_) => UNIX_EPOCH,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl std::str::FromStr for Timestamp {
    type Err = humantime::TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = humantime::parse_rfc3339_weak(s)?;
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Ok(Timestamp(i64::try_from(ms).unwrap_or(i64::MAX)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The source of time for the server.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
    /// A future that completes after `d` of this clock's time has passed.
    fn sleep(&self, d: Duration) -> Sleep;
}

pub type SharedClock = Arc<dyn Clock>;

/// The real clock: wall time from the OS, sleeping with tokio.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to: [`ManualClock::advance`] wakes every sleeper whose
/// deadline has passed. For tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<ManualInner>>,
}

#[derive(Debug)]
struct ManualInner {
    now: Timestamp,
    sleepers: Vec<(Timestamp, tokio::sync::oneshot::Sender<()>)>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ManualInner {
                now: start,
                sleepers: Vec::new(),
            })),
        }
    }

    /// Moves time forward by `d` and wakes the sleepers that are due.
    pub fn advance(&self, d: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.now = inner.now.saturating_add(d);
        let now = inner.now;
        let (due, pending): (Vec<_>, Vec<_>) =
            inner.sleepers.drain(..).partition(|(at, _)| *at <= now);
        inner.sleepers = pending;
        drop(inner);
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// How many sleepers are waiting (lets a test wait until the code under test is idle).
    pub fn sleepers(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sleepers
            .len()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).now
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let at = inner.now.saturating_add(d);
        if d.is_zero() {
            let _ = tx.send(());
        } else {
            inner.sleepers.push((at, tx));
        }
        drop(inner);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_as_rfc3339() {
        let t = Timestamp(1_700_000_000_123);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&s).unwrap(), t);
    }

    #[tokio::test]
    async fn manual_clock_wakes_only_due_sleepers() {
        let clock = ManualClock::new(Timestamp(0));
        let short = tokio::spawn(clock.sleep(Duration::from_secs(1)));
        let long = tokio::spawn(clock.sleep(Duration::from_secs(10)));
        while clock.sleepers() < 2 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(2));
        short.await.unwrap();
        assert!(!long.is_finished());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_secs(8));
        long.await.unwrap();
        assert_eq!(clock.now(), Timestamp(10_000));
    }
}
