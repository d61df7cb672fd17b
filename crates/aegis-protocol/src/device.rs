//! The small vocabulary that describes a device: its chip, its running slot and its OTA state.
//!
//! These values appear in the TXT record and in `/info`. Chip names follow ESP-IDF's target
//! names. A chip name this crate does not know yet (Espressif releases new chips without a
//! protocol change) is kept as [`Chip::Other`] rather than rejected, so a device built for a new
//! chip is still discovered; the `slot` and `state` vocabularies belong to the protocol and an
//! unknown value is an error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a `chip`, `slot` or `state` value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The chip name is empty, longer than 32 bytes, or not made of `a-z`, `0-9`, `_`, `-`.
    #[error("chip name {0:?} is not a valid chip name (lower-case letters and digits, at most 32)")]
    Chip(String),
    /// The slot is not `factory` or `ota_0` .. `ota_15`.
    #[error("slot {0:?} is not a partition label this protocol knows (factory, ota_0 .. ota_15)")]
    Slot(String),
    /// The state is not `idle`, `updating` or `pending_verify`.
    #[error("state {0:?} is not one of idle, updating, pending_verify")]
    State(String),
}

/// Shortens a value for an error message so an error never carries a huge input.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// An ESP32-family chip, by its ESP-IDF target name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Chip {
    /// `esp32`
    Esp32,
    /// `esp32s2`
    Esp32s2,
    /// `esp32s3`
    Esp32s3,
    /// `esp32c2`
    Esp32c2,
    /// `esp32c3`
    Esp32c3,
    /// `esp32c5`
    Esp32c5,
    /// `esp32c6`
    Esp32c6,
    /// `esp32c61`
    Esp32c61,
    /// `esp32h2`
    Esp32h2,
    /// `esp32p4`
    Esp32p4,
    /// A well-formed chip name not in PROTOCOL.md's list (kept verbatim).
    Other(String),
}

impl Chip {
    /// Every chip PROTOCOL.md names, in its order.
    pub const KNOWN: [Chip; 10] = [
        Chip::Esp32,
        Chip::Esp32s2,
        Chip::Esp32s3,
        Chip::Esp32c2,
        Chip::Esp32c3,
        Chip::Esp32c5,
        Chip::Esp32c6,
        Chip::Esp32c61,
        Chip::Esp32h2,
        Chip::Esp32p4,
    ];

    /// Parses a chip name: one of [`Chip::KNOWN`], or any other name made of 1 to 32
    /// lower-case letters, digits, `_` or `-` (kept as [`Chip::Other`]).
    pub fn parse(s: &str) -> Result<Chip, ValueError> {
        if let Some(known) = Self::KNOWN.iter().find(|c| c.as_str() == s) {
            return Ok(known.clone());
        }
        let well_formed = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if well_formed {
            Ok(Chip::Other(s.to_owned()))
        } else {
            Err(ValueError::Chip(excerpt(s)))
        }
    }

    /// The ESP-IDF target name.
    pub fn as_str(&self) -> &str {
        match self {
            Chip::Esp32 => "esp32",
            Chip::Esp32s2 => "esp32s2",
            Chip::Esp32s3 => "esp32s3",
            Chip::Esp32c2 => "esp32c2",
            Chip::Esp32c3 => "esp32c3",
            Chip::Esp32c5 => "esp32c5",
            Chip::Esp32c6 => "esp32c6",
            Chip::Esp32c61 => "esp32c61",
            Chip::Esp32h2 => "esp32h2",
            Chip::Esp32p4 => "esp32p4",
            Chip::Other(name) => name,
        }
    }

    /// Whether this chip is one PROTOCOL.md names.
    pub fn is_known(&self) -> bool {
        !matches!(self, Chip::Other(_))
    }
}

/// A running partition: `factory` or an OTA slot `ota_N`.
///
/// PROTOCOL.md names `ota_0`, `ota_1` and `factory`; ESP-IDF allows up to sixteen OTA slots, so
/// `ota_0` .. `ota_15` are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Slot {
    /// The `factory` partition.
    Factory,
    /// The OTA slot `ota_N`, N in 0..=15.
    Ota(u8),
}

impl Slot {
    /// `ota_0`
    pub const OTA_0: Slot = Slot::Ota(0);
    /// `ota_1`
    pub const OTA_1: Slot = Slot::Ota(1);
    /// Highest OTA slot index ESP-IDF supports.
    pub const MAX_OTA_INDEX: u8 = 15;

    /// Parses `factory` or `ota_0` .. `ota_15` (no leading zeros).
    pub fn parse(s: &str) -> Result<Slot, ValueError> {
        if s == "factory" {
            return Ok(Slot::Factory);
        }
        let index = s
            .strip_prefix("ota_")
            .filter(|n| !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()))
            .filter(|n| n.len() == 1 || !n.starts_with('0'))
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|n| *n <= Self::MAX_OTA_INDEX);
        index
            .map(Slot::Ota)
            .ok_or_else(|| ValueError::Slot(excerpt(s)))
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Factory => f.write_str("factory"),
            Slot::Ota(n) => write!(f, "ota_{n}"),
        }
    }
}

/// The device's OTA state as announced in TXT `state` and `/info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Running a confirmed image, ready for an update.
    Idle,
    /// An update is in progress.
    Updating,
    /// The running image has not yet confirmed itself valid after an update.
    PendingVerify,
}

impl DeviceState {
    /// Parses `idle`, `updating` or `pending_verify`.
    pub fn parse(s: &str) -> Result<DeviceState, ValueError> {
        match s {
            "idle" => Ok(DeviceState::Idle),
            "updating" => Ok(DeviceState::Updating),
            "pending_verify" => Ok(DeviceState::PendingVerify),
            other => Err(ValueError::State(excerpt(other))),
        }
    }

    /// The protocol spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Idle => "idle",
            DeviceState::Updating => "updating",
            DeviceState::PendingVerify => "pending_verify",
        }
    }
}

macro_rules! string_forms {
    ($ty:ty) => {
        impl FromStr for $ty {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                Self::parse(&s)
            }
        }
    };
}
string_forms!(Chip);
string_forms!(Slot);
string_forms!(DeviceState);

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Chip> for String {
    fn from(c: Chip) -> String {
        match c {
            Chip::Other(name) => name,
            known => known.as_str().to_owned(),
        }
    }
}

impl From<Slot> for String {
    fn from(s: Slot) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips() {
        for c in Chip::KNOWN {
            assert_eq!(Chip::parse(c.as_str()), Ok(c.clone()));
            assert!(c.is_known());
        }
        assert_eq!(Chip::parse("esp32h4"), Ok(Chip::Other("esp32h4".into())));
        assert!(!Chip::parse("esp32h4").unwrap().is_known());
        assert!(Chip::parse("").is_err());
        assert!(Chip::parse("ESP32").is_err());
        assert!(Chip::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn slots() {
        assert_eq!(Slot::parse("factory"), Ok(Slot::Factory));
        assert_eq!(Slot::parse("ota_0"), Ok(Slot::OTA_0));
        assert_eq!(Slot::parse("ota_15"), Ok(Slot::Ota(15)));
        for bad in [
            "ota_16", "ota_01", "ota_", "ota_-1", "ota0", "", "test", "ota_255",
        ] {
            assert!(Slot::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Slot::Ota(1).to_string(), "ota_1");
    }

    #[test]
    fn states() {
        for s in [
            DeviceState::Idle,
            DeviceState::Updating,
            DeviceState::PendingVerify,
        ] {
            assert_eq!(DeviceState::parse(s.as_str()), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(DeviceState::parse("busy").is_err());
    }
}
