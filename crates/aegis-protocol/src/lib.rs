//! The Aegis OTA wire protocol, version 1 (`PROTOCOL.md`), as types.
//!
//! This crate is the single source of truth that the server, the simulated fleet and the C
//! firmware library (which mirrors it) agree on. It owns:
//!
//! - [`txt`]: the mDNS TXT record a device announces ([`TxtRecord`]);
//! - [`info`]: the `GET /aegis/v1/info` reply ([`Info`]);
//! - [`trigger`]: the `POST /aegis/v1/ota` body ([`Trigger`]) and the signed-message rule;
//! - [`acceptance`]: the device-side decision on a trigger ([`check_trigger`]), mapped to the
//!   exact HTTP status codes of the protocol ([`Rejection`]);
//! - [`version`]: version ordering for the anti-downgrade rule;
//! - [`report`]: progress reports a device posts to the server ([`Report`]);
//! - [`error`]: the error body every endpoint uses ([`ErrorBody`]);
//! - [`keys`]: ECDSA P-256 keys, fingerprints and signatures;
//! - [`ids`] and [`device`]: the small validated values the others are built from.
//!
//! Nothing here does I/O or blocks, and no input can make it panic: every parser returns a
//! `thiserror` error whose `Display` is a sentence a person can act on.
//!
//! One deployment, both sides:
//!
//! ```
//! use aegis_protocol::*;
//!
//! // Server: sign a trigger for one device with the nonce from its /info.
//! let key = SigningKey::generate();
//! let device_id = DeviceId::from_mac([0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56]);
//! let nonce = Nonce::random();
//! let hash = Sha256Hex::digest(b"image bytes");
//! let mut trigger = Trigger {
//!     url: format!("http://10.0.0.5:3001/fw/{hash}.bin"),
//!     hash,
//!     version: "2.0.0".into(),
//!     size: 11,
//!     deployment: "rollout-1".into(),
//!     report: None,
//!     nonce: Some(nonce.clone()),
//!     allow_downgrade: false,
//!     sig: None,
//! };
//! trigger.sign(&device_id, &key).unwrap();
//! let body = trigger.to_body().unwrap();
//!
//! // Device: decide on the body.
//! let trusted = key.public_key();
//! let view = DeviceView {
//!     id: &device_id,
//!     trusted_key: Some(&trusted),
//!     current_nonce: Some(&nonce),
//!     running_version: "1.0.0",
//!     state: DeviceState::Idle,
//!     slot_size: 1 << 20,
//! };
//! assert!(check_body(body.as_bytes(), &view).is_ok());
//!
//! // A replay after the nonce was rotated is refused with 412.
//! let rotated = Nonce::random();
//! let view = DeviceView { current_nonce: Some(&rotated), ..view };
//! let rejection = check_body(body.as_bytes(), &view).unwrap_err();
//! assert_eq!((rejection.status(), rejection.code()), (412, "nonce_unknown"));
//! ```
#![forbid(unsafe_code)]

pub mod acceptance;
pub mod device;
pub mod error;
pub mod ids;
pub mod info;
pub mod keys;
pub mod report;
pub mod trigger;
pub mod txt;
pub mod version;

pub use acceptance::{DeviceView, Rejection, check_body, check_image_chip, check_trigger};
pub use device::{Chip, DeviceState, Slot, ValueError};
pub use error::{Accepted, ErrorBody, ErrorDetail};
pub use ids::{DeviceId, HexError, KeyId, Nonce, Sha256Hex, ShaPrefix};
pub use info::{Info, LastAttempt};
pub use keys::{Fingerprint, KeyError, PublicKey, Signature, SignatureError, SigningKey};
pub use report::{Phase, Report, ReportError};
pub use trigger::{Trigger, TriggerError};
pub use txt::{TxtError, TxtRecord};
pub use version::{Version, compare_versions, is_downgrade};

/// The DNS-SD service type devices announce and the server browses.
pub const SERVICE_TYPE: &str = "_aegis-ota._tcp.local.";

/// The protocol version this crate speaks (TXT key `proto`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The first line of every signed message; carries the protocol version.
pub const MESSAGE_TAG: &str = "aegis-ota/1";

/// Path of the device's info endpoint.
pub const INFO_PATH: &str = "/aegis/v1/info";

/// Path of the device's trigger endpoint.
pub const OTA_PATH: &str = "/aegis/v1/ota";

/// Largest trigger body a device accepts, in bytes.
pub const MAX_TRIGGER_BODY: usize = 4096;

/// Largest `key=value` TXT item, in bytes (ESP-IDF truncates longer ones).
pub const MAX_TXT_ITEM: usize = 255;

/// Largest whole TXT record, in DNS wire bytes (each item is one length byte plus its bytes).
pub const MAX_TXT_TOTAL: usize = 1300;

/// Longest deployment id, in characters.
pub const MAX_DEPLOYMENT_CHARS: usize = 64;

/// Size of the chunks a device reads the image in.
pub const CHUNK_SIZE: usize = 4096;
