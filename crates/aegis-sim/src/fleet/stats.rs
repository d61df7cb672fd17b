//! What the simulator process costs: resident memory and CPU time, read from `/proc/self`
//! (Linux; elsewhere the numbers are unknown).

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux port).
const USER_HZ: f64 = 100.0;

/// A reading of the process's resources.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Resident set size in bytes (`VmRSS`), if known.
    pub rss: Option<u64>,
    /// User + system CPU time so far, if known.
    pub cpu: Option<Duration>,
}

impl Sample {
    /// Reads the current values.
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            rss: rss(),
            cpu: cpu_time(),
        }
    }

    /// CPU use between `earlier` and this sample, in percent of one core.
    pub fn cpu_percent_since(&self, earlier: &Sample) -> Option<f64> {
        let wall = self.at.checked_duration_since(earlier.at)?.as_secs_f64();
        let used = self.cpu?.checked_sub(earlier.cpu?)?.as_secs_f64();
        (wall > 0.0).then(|| 100.0 * used / wall)
    }

    /// One line: `RSS 83.2 MiB, CPU 0.4% (of one core) over the last 10.0 s`.
    pub fn describe_since(&self, earlier: &Sample) -> String {
        let rss = self.rss.map_or("unknown".to_string(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        });
        let cpu = self
            .cpu_percent_since(earlier)
            .map_or("unknown".to_string(), |p| format!("{p:.1}%"));
        let over = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        format!("RSS {rss}, CPU {cpu} of one core over the last {over:.1} s")
    }
}

fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are
    // plain. utime and stime are fields 14 and 15, i.e. the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let a = Sample::now();
        if cfg!(target_os = "linux") {
            assert!(a.rss.unwrap_or(0) > 1024 * 1024);
            assert!(a.cpu.is_some());
        }
        let b = Sample::now();
        assert!(b.describe_since(&a).starts_with("RSS "));
    }
}
