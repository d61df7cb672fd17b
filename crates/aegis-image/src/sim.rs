//! What a simulated device does when it boots an image. The builder writes the choice into
//! the image's read-only data as a short marker string right after the app descriptor, so
//! the simulator learns it from the bytes it downloaded, exactly as a real device learns
//! everything from its firmware. Real images never carry the marker.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Behaviour of a simulated device after it boots an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimBehavior {
    /// Boots, marks itself valid, reports success.
    Boots,
    /// Crashes before marking itself valid; the bootloader rolls back.
    CrashesAtBoot,
    /// Runs but never confirms; the rollout times out or the watchdog rolls back.
    NeverConfirms,
}

impl SimBehavior {
    pub const ALL: &'static [SimBehavior] = &[
        SimBehavior::Boots,
        SimBehavior::CrashesAtBoot,
        SimBehavior::NeverConfirms,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimBehavior::Boots => "boots",
            SimBehavior::CrashesAtBoot => "crashes-at-boot",
            SimBehavior::NeverConfirms => "never-confirms",
        }
    }
}

impl fmt::Display for SimBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SimBehavior {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimBehavior::ALL
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                format!("unknown behavior `{s}`: use boots, crashes-at-boot or never-confirms")
            })
    }
}

const PREFIX: &[u8] = b"AEGIS-SIM-BEHAVIOR=";
/// How far into the first segment's data the marker is looked for.
const SEARCH_WINDOW: usize = 1024;

/// The marker bytes for `b` (NUL-terminated, padded to a multiple of 4).
pub(crate) fn marker(b: SimBehavior) -> Vec<u8> {
    let mut m = PREFIX.to_vec();
    m.extend_from_slice(b.name().as_bytes());
    m.push(0);
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
    m
}

/// Find a marker in `data` (the start of the first segment's data).
pub(crate) fn find(data: &[u8]) -> Option<SimBehavior> {
    let window = &data[..data.len().min(SEARCH_WINDOW)];
    let at = window.windows(PREFIX.len()).position(|w| w == PREFIX)?;
    let rest = window.get(at + PREFIX.len()..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    let name = std::str::from_utf8(rest.get(..end)?).ok()?;
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips() {
        for &b in SimBehavior::ALL {
            let mut data = vec![0u8; 300];
            data.extend(marker(b));
            assert_eq!(find(&data), Some(b));
            assert_eq!(b.name().parse::<SimBehavior>(), Ok(b));
        }
        assert_eq!(find(b"AEGIS-SIM-BEHAVIOR=explodes\0"), None);
        assert_eq!(find(b"AEGIS-SIM-BEHAVIOR=boots"), None);
    }
}
