//! How long things take on a simulated device: link bandwidth, flash erase and write, boot,
//! self-test, watchdog reset, report cadence ([`Timing`]), and the token bucket that paces a
//! download to a bandwidth ([`Throttle`]).
//!
//! Every delay goes through `tokio::time`, so tests run under a paused clock
//! (`tokio::time::pause()`) and a ten-second boot costs them nothing. [`Timing::realistic`]
//! is what `aegis sim` uses by default; [`Timing::fast`] (`aegis sim --fast`, and tests) keeps
//! the order of events but shrinks every delay to almost nothing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Size of one flash sector, the unit of erase and of the modelled writes.
pub const SECTOR_SIZE: u64 = 4096;

/// The delays of one simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Download bandwidth in bytes per second; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Time to erase one 4 KiB sector (amortised: ESP-IDF erases ahead in larger blocks).
    pub erase_sector: Duration,
    /// Time to program 4 KiB (sixteen 256-byte pages).
    pub write_4k: Duration,
    /// From reset to the app running (ROM + second-stage bootloader + app start + Wi-Fi join).
    pub boot_time: Duration,
    /// How long the app's self-test takes before it marks itself valid.
    pub self_test: Duration,
    /// How long an app that hangs (never confirms) runs before the task watchdog resets it.
    pub hang_reset: Duration,
    /// Least time between two `downloading` reports (PROTOCOL.md section 5: at most every
    /// 64 KiB or 1 s).
    pub report_interval: Duration,
    /// How long the `stall` fault stops reading with the connection open (a dead link); the
    /// server is expected to cut the connection first.
    pub stall: Duration,
}

impl Timing {
    /// Delays close to an ESP32 running ESP-IDF over Wi-Fi.
    ///
    /// - bandwidth 256 KiB/s: Wi-Fi OTA downloads typically run at 100-500 KiB/s;
    /// - erase 10 ms per 4 KiB: a 64 KiB block erase takes about 150 ms on the usual SPI NOR
    ///   parts (GD25Q32, W25Q32: typ. 150 ms), which ESP-IDF uses when erasing ahead;
    /// - write 8 ms per 4 KiB: 16 page programs of about 0.4-0.5 ms each plus SPI overhead;
    /// - boot 2.5 s: bootloader, app start and Wi-Fi association with DHCP;
    /// - self-test 500 ms;
    /// - hang reset 5 s: ESP-IDF's default task watchdog timeout
    ///   (`CONFIG_ESP_TASK_WDT_TIMEOUT_S`);
    /// - a `downloading` report at most once a second;
    /// - a stalled link stops for 2 minutes (longer than the server's 30 s stall cut).
    pub fn realistic() -> Self {
        Self {
            bandwidth: Some(256 * 1024),
            erase_sector: Duration::from_millis(10),
            write_4k: Duration::from_millis(8),
            boot_time: Duration::from_millis(2500),
            self_test: Duration::from_millis(500),
            hang_reset: Duration::from_secs(5),
            report_interval: Duration::from_secs(1),
            stall: Duration::from_secs(120),
        }
    }

    /// Near-zero delays for tests and quick demos; the order of events stays the same.
    pub fn fast() -> Self {
        Self {
            bandwidth: None,
            erase_sector: Duration::ZERO,
            write_4k: Duration::ZERO,
            boot_time: Duration::from_millis(20),
            self_test: Duration::from_millis(5),
            hang_reset: Duration::from_millis(50),
            report_interval: Duration::from_millis(50),
            stall: Duration::from_secs(3),
        }
    }

    /// Time to erase and program `bytes` of flash, counted in whole 4 KiB sectors.
    pub fn flash_time(&self, bytes: u64) -> Duration {
        let sectors = u32::try_from(bytes.div_ceil(SECTOR_SIZE)).unwrap_or(u32::MAX);
        (self.erase_sector + self.write_4k).saturating_mul(sectors)
    }
}

impl Default for Timing {
    fn default() -> Self {
        Self::realistic()
    }
}

/// A token bucket that paces a byte stream to a rate.
///
/// The bucket starts full (a burst of up to [`Throttle::burst`] bytes goes through at once),
/// refills at `bytes_per_sec`, and [`consume`](Throttle::consume) sleeps for exactly as long
/// as the bucket is in debt. Several tasks may share one throttle (a shared link): each
/// consumer takes its bytes in turn, so together they get the rate, not each of them.
#[derive(Debug)]
pub struct Throttle {
    rate: Option<u64>,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be taken now; negative while consumers wait for a refill.
    tokens: f64,
    last: Instant,
}

impl Throttle {
    /// A throttle for `bytes_per_sec`; `None` (or 0) lets everything through immediately.
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        let rate = bytes_per_sec.filter(|&r| r > 0);
        // A tenth of a second of data, but at least one 4 KiB chunk, so a paced stream
        // still moves in the chunks a device reads.
        let burst = rate.map_or(0.0, |r| (r as f64 / 10.0).max(SECTOR_SIZE as f64));
        Self {
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// The rate in bytes per second, `None` when unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The largest burst that passes without waiting, in bytes.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    /// Takes `n` bytes from the bucket, sleeping until the rate allows them.
    pub async fn consume(&self, n: usize) {
        let Some(rate) = self.rate else {
            return;
        };
        let wait = {
            // A poisoned lock only means another consumer panicked mid-update; the bucket's
            // numbers are still usable.
            let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
            b.debit(Instant::now(), n, rate, self.burst)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Bucket {
    /// Refills the bucket up to `now`, takes `n` bytes, and returns how long the taker must
    /// wait until the bucket is out of debt.
    fn debit(&mut self, now: Instant, n: usize, rate: u64, burst: f64) -> Duration {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate as f64;
        self.tokens = (self.tokens + refill).min(burst) - n as f64;
        self.last = self.last.max(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn bucket_paces_a_single_stream_to_the_rate() {
        // 40 KiB/s, burst 4 KiB: the first chunk is free, then each 4 KiB costs 100 ms.
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 4096.0,
            last: t0,
        };
        assert_eq!(ms(b.debit(t0, 4096, 40_960, 4096.0)), 0);
        assert_eq!(ms(b.debit(t0, 4096, 40_960, 4096.0)), 100);
        // The taker slept those 100 ms: the next chunk again waits 100 ms.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(ms(b.debit(t1, 4096, 40_960, 4096.0)), 100);
        // After a long idle gap the bucket is full again, but never more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(ms(b.debit(t2, 4096, 40_960, 4096.0)), 0);
        assert_eq!(ms(b.debit(t2, 4096, 40_960, 4096.0)), 100);
    }

    #[test]
    fn bucket_shared_by_two_takers_splits_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 0.0,
            last: t0,
        };
        // Two takers at the same instant: the second waits for both chunks.
        assert_eq!(ms(b.debit(t0, 1000, 10_000, 1000.0)), 100);
        assert_eq!(ms(b.debit(t0, 1000, 10_000, 1000.0)), 200);
    }

    #[test]
    fn a_megabyte_at_256_kib_per_s_takes_four_seconds_of_waiting() {
        let rate = 256 * 1024;
        let burst = rate as f64 / 10.0;
        let mut now = Instant::now();
        let mut b = Bucket {
            tokens: burst,
            last: now,
        };
        let mut waited = Duration::ZERO;
        for _ in 0..256 {
            let w = b.debit(now, 4096, rate, burst);
            now += w; // the taker sleeps exactly as told
            waited += w;
        }
        // 1 MiB at 256 KiB/s is 4 s, minus the initial burst of 0.1 s.
        assert_eq!(ms(waited), 3900);
    }

    /// The real `consume` on tokio's paused clock: a 1 MiB stream at 256 KiB/s in 4 KiB reads
    /// takes 4 s of (virtual) time less the initial 0.1 s burst, however fast the machine.
    #[tokio::test(start_paused = true)]
    async fn consume_paces_a_stream_on_the_runtime_clock() {
        let t = Throttle::new(Some(256 * 1024));
        let start = Instant::now();
        for _ in 0..256 {
            t.consume(4096).await;
        }
        assert_eq!(ms(start.elapsed()), 3900);
    }

    #[test]
    fn unlimited_throttle_never_waits() {
        let t = Throttle::new(None);
        assert_eq!(t.rate(), None);
        assert_eq!(Throttle::new(Some(0)).rate(), None);
        assert_eq!(Throttle::new(Some(1000)).burst(), 4096);
        assert_eq!(Throttle::new(Some(1 << 20)).burst(), 104_857);
    }

    #[test]
    fn flash_time_counts_whole_sectors() {
        let t = Timing::realistic();
        assert_eq!(t.flash_time(0), Duration::ZERO);
        assert_eq!(t.flash_time(1), Duration::from_millis(18));
        assert_eq!(t.flash_time(4096), Duration::from_millis(18));
        assert_eq!(t.flash_time(4097), Duration::from_millis(36));
        assert_eq!(Timing::fast().flash_time(1 << 20), Duration::ZERO);
    }

    #[test]
    fn realistic_bandwidth_is_in_the_wifi_ota_range() {
        let bw = Timing::realistic().bandwidth.unwrap_or(0);
        assert!((100 * 1024..=500 * 1024).contains(&bw));
    }
}
