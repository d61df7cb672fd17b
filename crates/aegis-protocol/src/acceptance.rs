//! The device's decision on a trigger, as one pure function the simulator calls and the C
//! library mirrors.
//!
//! [`check_body`] parses the body and then applies [`check_trigger`]. The checks run in this
//! order, and the first failure is the answer:
//!
//! 1. **400** the body is malformed ([`Trigger::parse`]);
//! 2. **409** the device is `updating` (`busy`) or its image is `pending_verify`;
//! 3. **401** the device trusts a key and `sig` is absent (`signature_missing`) or does not
//!    verify over the message rebuilt with the device's own id (`signature_invalid`);
//! 4. **412** `nonce` is present and is not the device's current nonce (`nonce_unknown`; this
//!    covers a nonce already used, because every trigger rotates it). A device that trusts a key
//!    only gets here with a nonce (signed triggers must carry one); a device without a key
//!    accepts a trigger without a nonce, as the original handshake did;
//! 5. **413** `size` is larger than the inactive slot (`too_large`);
//! 6. **422** `version` is older than the running one and `allow_downgrade` is false
//!    (`downgrade`; see [`crate::version`] for the ordering).
//!
//! Cheap state checks come first; the signature comes before anything that would tell an
//! unauthenticated sender about the device's nonce, slot or version. The chip check
//! ([`check_image_chip`], 422 `wrong_chip`) needs the image header, so it runs once the first
//! bytes are read; a device that has already answered 202 reports it as a `failed` report with
//! that code.
//!
//! Whatever the outcome, the device replaces its nonce afterwards (PROTOCOL.md section 2).

use crate::device::{Chip, DeviceState};
use crate::error::ErrorBody;
use crate::ids::{DeviceId, Nonce};
use crate::keys::PublicKey;
use crate::trigger::{Trigger, TriggerError};
use crate::version::is_downgrade;

/// What the device knows about itself when a trigger arrives.
#[derive(Debug, Clone, Copy)]
pub struct DeviceView<'a> {
    /// The device's own id (used in the signed message, never the sender's idea of it).
    pub id: &'a DeviceId,
    /// The public key the device was built with; `None` accepts unsigned triggers.
    pub trusted_key: Option<&'a PublicKey>,
    /// The nonce `/info` currently hands out; `None` when none is outstanding.
    pub current_nonce: Option<&'a Nonce>,
    /// The running app version.
    pub running_version: &'a str,
    /// The device's OTA state.
    pub state: DeviceState,
    /// Bytes available in the inactive OTA slot.
    pub slot_size: u64,
}

/// Why a device refuses a trigger; each maps to one status and code of PROTOCOL.md's table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400: malformed body.
    #[error("{0}")]
    Malformed(#[from] TriggerError),
    /// 409 `busy`: an update is in progress.
    #[error("An update is already in progress; wait for it to finish and try again.")]
    Busy,
    /// 409 `pending_verify`: the running image has not confirmed itself yet.
    #[error(
        "The running image has not yet confirmed itself valid; wait until it does (or rolls back) and try again."
    )]
    PendingVerify,
    /// 401 `signature_missing`.
    #[error("This device only accepts signed triggers; sign the trigger with the server key.")]
    SignatureMissing,
    /// 401 `signature_invalid`.
    #[error(
        "The signature does not verify with the key this device trusts; check that the server key matches the device's key."
    )]
    SignatureInvalid,
    /// 412 `nonce_unknown`: not the current nonce (unknown or already used).
    #[error(
        "The nonce is unknown or has already been used; fetch a fresh one from GET /aegis/v1/info and sign again."
    )]
    NonceUnknown,
    /// 413 `too_large`.
    #[error("The image is {size} bytes but the inactive slot holds only {slot_size} bytes.")]
    TooLarge {
        /// The trigger's `size`.
        size: u64,
        /// The inactive slot's size.
        slot_size: u64,
    },
    /// 422 `downgrade`.
    #[error(
        "Version {offered:?} is older than the running version {running:?}; set allow_downgrade to install it anyway."
    )]
    Downgrade {
        /// The running version.
        running: String,
        /// The trigger's version.
        offered: String,
    },
    /// 422 `wrong_chip`.
    #[error("The image is built for {found} but this device is an {expected}.")]
    WrongChip {
        /// The device's chip.
        expected: Chip,
        /// The chip named in the image header.
        found: Chip,
    },
}

impl Rejection {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Malformed(e) => e.status(),
            Rejection::SignatureMissing | Rejection::SignatureInvalid => 401,
            Rejection::Busy | Rejection::PendingVerify => 409,
            Rejection::NonceUnknown => 412,
            Rejection::TooLarge { .. } => 413,
            Rejection::Downgrade { .. } | Rejection::WrongChip { .. } => 422,
        }
    }

    /// The snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(e) => e.code(),
            Rejection::Busy => "busy",
            Rejection::PendingVerify => "pending_verify",
            Rejection::SignatureMissing => "signature_missing",
            Rejection::SignatureInvalid => "signature_invalid",
            Rejection::NonceUnknown => "nonce_unknown",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Downgrade { .. } => "downgrade",
            Rejection::WrongChip { .. } => "wrong_chip",
        }
    }

    /// One human sentence.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The error body to send.
    pub fn error_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.message())
    }
}

/// Parses `body` and decides on it: the trigger to act on (reply 202), or the rejection.
pub fn check_body(body: &[u8], device: &DeviceView<'_>) -> Result<Trigger, Rejection> {
    let trigger = Trigger::parse(body)?;
    check_trigger(&trigger, device)?;
    Ok(trigger)
}

/// Decides on a parsed trigger, applying the checks in the order documented in this module.
pub fn check_trigger(trigger: &Trigger, device: &DeviceView<'_>) -> Result<(), Rejection> {
    trigger.validate()?;
    match device.state {
        DeviceState::Updating => return Err(Rejection::Busy),
        DeviceState::PendingVerify => return Err(Rejection::PendingVerify),
        DeviceState::Idle => {}
    }
    if let Some(key) = device.trusted_key {
        if trigger.sig.is_none() {
            return Err(Rejection::SignatureMissing);
        }
        trigger
            .verify(device.id, key)
            .map_err(|_| Rejection::SignatureInvalid)?;
    }
    if let Some(nonce) = &trigger.nonce
        && device.current_nonce != Some(nonce)
    {
        return Err(Rejection::NonceUnknown);
    }
    if trigger.size > device.slot_size {
        return Err(Rejection::TooLarge {
            size: trigger.size,
            slot_size: device.slot_size,
        });
    }
    if !trigger.allow_downgrade && is_downgrade(device.running_version, &trigger.version) {
        return Err(Rejection::Downgrade {
            running: device.running_version.to_owned(),
            offered: trigger.version.clone(),
        });
    }
    Ok(())
}

/// The chip check made once the image header is read: 422 `wrong_chip` on a mismatch.
pub fn check_image_chip(device_chip: &Chip, image_chip: &Chip) -> Result<(), Rejection> {
    if device_chip == image_chip {
        Ok(())
    } else {
        Err(Rejection::WrongChip {
            expected: device_chip.clone(),
            found: image_chip.clone(),
        })
    }
}
