//! Fixed-length lower-case hex values: device ids, nonces, SHA-256 digests and their prefixes.
//!
//! Every hex value in the protocol has a fixed length and is written in lower case. Parsing is
//! strict (upper case is rejected) so that the same value always has exactly one spelling: the
//! device compares nonces as strings and rebuilds the signed message from the fields it
//! received, so a second spelling would be a second message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a string is not the hex value it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string has the wrong number of characters.
    #[error("{what} must be {expected} hex digits, got {found} characters")]
    WrongLength {
        /// What the value is (for example `nonce`).
        what: &'static str,
        /// Required number of hex digits.
        expected: usize,
        /// Number of characters found.
        found: usize,
    },
    /// The string contains something other than `0-9a-f`.
    #[error("{what} must contain only lower-case hex digits (0-9, a-f)")]
    NotLowerHex {
        /// What the value is (for example `nonce`).
        what: &'static str,
    },
}

/// Checks that `s` is exactly `len` lower-case hex digits.
pub(crate) fn check_lower_hex(s: &str, len: usize, what: &'static str) -> Result<(), HexError> {
    if s.len() != len {
        return Err(HexError::WrongLength {
            what,
            expected: len,
            found: s.chars().count(),
        });
    }
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(HexError::NotLowerHex { what });
    }
    Ok(())
}

macro_rules! hex_value {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Number of hex digits.
            pub const HEX_LEN: usize = $len;

            /// Parses exactly [`Self::HEX_LEN`] lower-case hex digits.
            pub fn parse(s: &str) -> Result<Self, HexError> {
                check_lower_hex(s, $len, $what)?;
                Ok(Self(s.to_owned()))
            }

            /// Builds the value from its bytes.
            pub fn from_bytes(bytes: &[u8; $len / 2]) -> Self {
                Self(hex::encode(bytes))
            }

            /// The value's bytes.
            pub fn to_bytes(&self) -> [u8; $len / 2] {
                let mut out = [0u8; $len / 2];
                // Cannot fail: the string was validated as $len hex digits.
                let _ = hex::decode_to_slice(&self.0, &mut out);
                out
            }

            /// The hex digits.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = HexError;
            fn try_from(s: String) -> Result<Self, HexError> {
                check_lower_hex(&s, $len, $what)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

hex_value!(
    /// A stable device id: 12 lower-case hex digits of the Wi-Fi station MAC.
    DeviceId, 12, "device id"
);
hex_value!(
    /// A single-use device nonce: 32 lower-case hex digits (16 random bytes).
    Nonce, 32, "nonce"
);
hex_value!(
    /// A full SHA-256 digest: 64 lower-case hex digits.
    Sha256Hex, 64, "SHA-256"
);
hex_value!(
    /// The first 16 hex digits of the SHA-256 of the running image (TXT key `sha`).
    ShaPrefix, 16, "sha"
);
hex_value!(
    /// The first 16 hex digits of a public key fingerprint (TXT key `key`).
    KeyId, 16, "key"
);

impl DeviceId {
    /// The id of the device with this Wi-Fi station MAC address.
    pub fn from_mac(mac: [u8; 6]) -> Self {
        Self::from_bytes(&mac)
    }
}

impl Nonce {
    /// A fresh nonce from the operating system's random number generator (which, like every
    /// user of `OsRng`, aborts the thread only if the OS cannot provide randomness at all).
    pub fn random() -> Self {
        use rand_core::RngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(&bytes)
    }
}

impl Sha256Hex {
    /// The SHA-256 digest of `data`.
    pub fn digest(data: &[u8]) -> Self {
        Self::from_bytes(&Sha256::digest(data).into())
    }

    /// The first 16 hex digits, as announced in the TXT key `sha`.
    pub fn prefix(&self) -> ShaPrefix {
        ShaPrefix(self.0[..ShaPrefix::HEX_LEN].to_owned())
    }

    /// Whether `prefix` is the start of this digest.
    pub fn starts_with(&self, prefix: &ShaPrefix) -> bool {
        self.0.starts_with(prefix.as_str())
    }
}

impl KeyId {
    /// Builds a key id from the first 16 hex digits of a 64-digit fingerprint.
    pub(crate) fn from_fingerprint_hex(hex64: &str) -> Self {
        Self(hex64.chars().take(Self::HEX_LEN).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_lower_hex() {
        assert!(DeviceId::parse("240ac4123456").is_ok());
        assert_eq!(
            DeviceId::parse("240AC4123456"),
            Err(HexError::NotLowerHex { what: "device id" })
        );
        assert_eq!(
            DeviceId::parse("240ac412345"),
            Err(HexError::WrongLength {
                what: "device id",
                expected: 12,
                found: 11
            })
        );
        // Multi-byte characters never panic and are counted as characters.
        assert!(DeviceId::parse("ééééééé").is_err());
    }

    #[test]
    fn bytes_round_trip() {
        let id = DeviceId::from_mac([0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56]);
        assert_eq!(id.as_str(), "240ac4123456");
        assert_eq!(id.to_bytes(), [0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56]);
        let n = Nonce::random();
        assert_eq!(Nonce::from_bytes(&n.to_bytes()), n);
        assert_ne!(Nonce::random(), n);
    }

    #[test]
    fn digest_and_prefix() {
        let d = Sha256Hex::digest(b"");
        assert_eq!(
            d.as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.prefix().as_str(), "e3b0c44298fc1c14");
        assert!(d.starts_with(&d.prefix()));
    }
}
