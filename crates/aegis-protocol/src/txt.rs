//! The mDNS TXT record a device announces under [`SERVICE_TYPE`](crate::SERVICE_TYPE).
//!
//! Reading ([`TxtRecord::from_pairs`]) follows PROTOCOL.md section 1 and RFC 6763 section 6:
//! keys are matched case-insensitively and only the first occurrence of a key counts; unknown
//! keys are ignored; a missing optional key, or one with an empty value, is `None`; each
//! `key=value` item is at most 255 bytes and the whole record at most 1,300 bytes, counted as
//! DNS wire bytes (one length byte plus the item's bytes, for every item including unknown
//! ones). `proto` is any decimal number; [`TxtRecord::speaks_protocol`] tells whether it is
//! ours. An unknown `chip` name is kept ([`Chip::Other`]).
//!
//! Writing ([`TxtRecord::to_pairs`]) emits the keys in PROTOCOL.md's order and refuses a
//! record that breaks the same limits, so a device never announces what a reader would reject.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::device::{Chip, DeviceState, Slot, ValueError, excerpt};
use crate::ids::{DeviceId, HexError, KeyId, ShaPrefix};
use crate::{MAX_TXT_ITEM, MAX_TXT_TOTAL, PROTOCOL_VERSION};

/// Why a TXT record is not a valid announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    /// A required key (`id`, `ver`, `host`, `ip`, `proto`) is absent.
    #[error("the TXT record has no \"{key}\" key, which is required")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// `id` is not 12 lower-case hex digits.
    #[error("the TXT \"id\" is not a device id: {0}")]
    InvalidId(HexError),
    /// `host` is empty.
    #[error("the TXT \"host\" is empty")]
    EmptyHost,
    /// `ip` is not a dotted IPv4 address.
    #[error("the TXT \"ip\" value {0:?} is not a dotted IPv4 address")]
    InvalidIp(String),
    /// `proto` is not a decimal number.
    #[error("the TXT \"proto\" value {0:?} is not a protocol version number")]
    InvalidProto(String),
    /// `chip`, `slot` or `state` has a value outside its vocabulary.
    #[error("the TXT record is invalid: {0}")]
    InvalidValue(ValueError),
    /// `sha` or `key` is not 16 lower-case hex digits.
    #[error("the TXT \"{key}\" value is invalid: {source}")]
    InvalidHex {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        source: HexError,
    },
    /// One `key=value` item is longer than 255 bytes.
    #[error("the TXT item \"{key}\" is {len} bytes; an item may be at most 255 bytes")]
    ItemTooLong {
        /// The item's key.
        key: String,
        /// `key=value` length in bytes.
        len: usize,
    },
    /// The whole record is larger than 1,300 bytes.
    #[error("the TXT record is {len} bytes; it may be at most 1300 bytes")]
    TooLarge {
        /// Wire size in bytes.
        len: usize,
    },
}

/// A device announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxtRecord {
    /// Stable device id.
    pub id: DeviceId,
    /// Running app version (may be empty).
    pub ver: String,
    /// Hostname (not empty).
    pub host: String,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Protocol version the device speaks.
    pub proto: u32,
    /// Project name.
    pub proj: Option<String>,
    /// Chip.
    pub chip: Option<Chip>,
    /// First 16 hex digits of the running image's SHA-256.
    pub sha: Option<ShaPrefix>,
    /// Running partition.
    pub slot: Option<Slot>,
    /// OTA state.
    pub state: Option<DeviceState>,
    /// Key id of the trusted server key; `None` = accepts unsigned triggers.
    pub key: Option<KeyId>,
}

fn required<'a>(value: Option<&'a str>, key: &'static str) -> Result<&'a str, TxtError> {
    value.ok_or(TxtError::MissingKey { key })
}

fn optional(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

fn hex<T>(
    value: Option<&str>,
    key: &'static str,
    parse: fn(&str) -> Result<T, HexError>,
) -> Result<Option<T>, TxtError> {
    optional(value)
        .map(|v| parse(v).map_err(|source| TxtError::InvalidHex { key, source }))
        .transpose()
}

/// DNS wire size of one `key=value` item.
fn item_len(key: &str, value: &str) -> usize {
    key.len() + 1 + value.len()
}

/// Checks the item and total limits over `items`.
fn check_sizes<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), TxtError> {
    let mut total = 0usize;
    for (key, value) in items {
        let len = item_len(key, value);
        if len > MAX_TXT_ITEM {
            return Err(TxtError::ItemTooLong {
                key: excerpt(key),
                len,
            });
        }
        total += 1 + len;
    }
    if total > MAX_TXT_TOTAL {
        return Err(TxtError::TooLarge { len: total });
    }
    Ok(())
}

const KEYS: [&str; 11] = [
    "id", "ver", "host", "ip", "proto", "proj", "chip", "sha", "slot", "state", "key",
];

impl TxtRecord {
    /// A minimal record with the required keys and `proto` = 1.
    pub fn new(
        id: DeviceId,
        ver: impl Into<String>,
        host: impl Into<String>,
        ip: Ipv4Addr,
    ) -> Self {
        TxtRecord {
            id,
            ver: ver.into(),
            host: host.into(),
            ip,
            proto: PROTOCOL_VERSION,
            proj: None,
            chip: None,
            sha: None,
            slot: None,
            state: None,
            key: None,
        }
    }

    /// Whether the device speaks the protocol version this crate implements.
    pub fn speaks_protocol(&self) -> bool {
        self.proto == PROTOCOL_VERSION
    }

    /// Reads a record from its `key=value` pairs (see the module docs for the rules).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<TxtRecord, TxtError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        check_sizes(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))?;
        let mut found: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
        for (k, v) in &pairs {
            let k = k.as_ref();
            if let Some(i) = KEYS.iter().position(|known| known.eq_ignore_ascii_case(k)) {
                found[i].get_or_insert(v.as_ref());
            }
        }
        let [id, ver, host, ip, proto, proj, chip, sha, slot, state, key] = found;
        let id = DeviceId::parse(required(id, "id")?).map_err(TxtError::InvalidId)?;
        let ver = required(ver, "ver")?.to_owned();
        let host = required(host, "host")?;
        if host.is_empty() {
            return Err(TxtError::EmptyHost);
        }
        let ip_text = required(ip, "ip")?;
        let ip = ip_text
            .parse::<Ipv4Addr>()
            .map_err(|_| TxtError::InvalidIp(excerpt(ip_text)))?;
        let proto_text = required(proto, "proto")?;
        let proto = (!proto_text.is_empty() && proto_text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| proto_text.parse::<u32>().ok())
            .flatten()
            .ok_or_else(|| TxtError::InvalidProto(excerpt(proto_text)))?;
        Ok(TxtRecord {
            id,
            ver,
            host: host.to_owned(),
            ip,
            proto,
            proj: optional(proj).map(str::to_owned),
            chip: optional(chip)
                .map(Chip::parse)
                .transpose()
                .map_err(TxtError::InvalidValue)?,
            sha: hex(sha, "sha", ShaPrefix::parse)?,
            slot: optional(slot)
                .map(Slot::parse)
                .transpose()
                .map_err(TxtError::InvalidValue)?,
            state: optional(state)
                .map(DeviceState::parse)
                .transpose()
                .map_err(TxtError::InvalidValue)?,
            key: hex(key, "key", KeyId::parse)?,
        })
    }

    /// The record as `key=value` pairs in PROTOCOL.md's order, absent optional keys omitted.
    /// Fails when `host` is empty or the record breaks the size limits.
    pub fn to_pairs(&self) -> Result<Vec<(String, String)>, TxtError> {
        if self.host.is_empty() {
            return Err(TxtError::EmptyHost);
        }
        let mut pairs = vec![
            ("id".to_owned(), self.id.to_string()),
            ("ver".to_owned(), self.ver.clone()),
            ("host".to_owned(), self.host.clone()),
            ("ip".to_owned(), self.ip.to_string()),
            ("proto".to_owned(), self.proto.to_string()),
        ];
        let optional = [
            ("proj", self.proj.clone().filter(|p| !p.is_empty())),
            ("chip", self.chip.as_ref().map(|c| c.as_str().to_owned())),
            ("sha", self.sha.as_ref().map(ToString::to_string)),
            ("slot", self.slot.map(|s| s.to_string())),
            ("state", self.state.map(|s| s.as_str().to_owned())),
            ("key", self.key.as_ref().map(ToString::to_string)),
        ];
        pairs.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
        );
        check_sizes(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(pairs)
    }

    /// The record's DNS wire size in bytes (for a record that [`to_pairs`](Self::to_pairs)
    /// accepts).
    pub fn wire_size(&self) -> Result<usize, TxtError> {
        Ok(self
            .to_pairs()?
            .iter()
            .map(|(k, v)| 1 + item_len(k, v))
            .sum())
    }
}
