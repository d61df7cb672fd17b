//! The second-stage bootloader's choice of app, as ESP-IDF makes it with
//! `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE` and no factory partition
//! (`bootloader_utility_get_selected_boot_partition` + `bootloader_utility_load_boot_image`):
//!
//! 1. every entry still PENDING_VERIFY (its app was reset before confirming) becomes ABORTED;
//! 2. if both entries are invalid, start at `ota_0` (and, when both are blank or damaged,
//!    remember to write `seq = slot + 1, VALID` to sector 0 once an app loads); otherwise the
//!    active entry names the start slot, and a NEW entry becomes PENDING_VERIFY;
//! 3. validate the start slot's image; if it fails, try the slots below it, then above it;
//!    the first that passes boots. None passes: the bootloader resets forever.
//!
//! Each otadata write is erase + program, and can be torn by an armed [`Tear`].

use std::fmt;
use std::sync::Arc;

use super::otadata::{OtaEntry, OtaState, OtadataFile, Tear};
use super::{ImageFacts, ModelError, Slot};

/// Something the bootloader (or the app it started) did during one power-on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEvent {
    /// An entry was still PENDING_VERIFY: its app was reset before confirming; now ABORTED.
    Aborted { slot: Slot },
    /// The active entry was NEW; the bootloader marked it PENDING_VERIFY.
    MarkedPendingVerify { slot: Slot },
    /// The image in `slot` failed validation; the bootloader tried another slot.
    Rejected { slot: Slot, reason: String },
    /// otadata was blank: the bootloader booted `slot` and wrote its entry as VALID.
    OtadataInitialised { slot: Slot },
    /// The app crashed during boot, before confirming itself, and the chip reset.
    Crashed { slot: Slot, version: String },
}

impl fmt::Display for BootEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootEvent::Aborted { slot } => write!(
                f,
                "the app in {slot} was reset before confirming itself, so the bootloader marked it ABORTED"
            ),
            BootEvent::MarkedPendingVerify { slot } => {
                write!(
                    f,
                    "the bootloader marked the new app in {slot} PENDING_VERIFY"
                )
            }
            BootEvent::Rejected { slot, reason } => {
                write!(f, "the image in {slot} failed boot validation: {reason}")
            }
            BootEvent::OtadataInitialised { slot } => {
                write!(
                    f,
                    "otadata was blank; the bootloader booted {slot} and recorded it as VALID"
                )
            }
            BootEvent::Crashed { slot, version } => write!(
                f,
                "the app in {slot} (version {version}) crashed at boot before confirming itself"
            ),
        }
    }
}

/// The image the bootloader loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub slot: Slot,
    pub facts: Arc<ImageFacts>,
    pub sha256: [u8; 32],
}

/// Run the bootloader once. `validate` is the image check for a slot.
pub(crate) fn run(
    otadata: &OtadataFile,
    tear: &mut Option<Tear>,
    events: &mut Vec<BootEvent>,
    mut validate: impl FnMut(Slot) -> Result<(Arc<ImageFacts>, [u8; 32]), ModelError>,
) -> Result<Loaded, ModelError> {
    let mut od = otadata.read()?;

    for sector in 0..2 {
        if od.entries[sector].state == OtaState::PendingVerify {
            od.entries[sector].state = OtaState::Aborted;
            otadata.write_entry(sector, &od.entries[sector], tear.take())?;
            events.push(BootEvent::Aborted {
                slot: od.entries[sector].slot(),
            });
        }
    }

    let blank = |e: &OtaEntry| e.seq == u32::MAX || !e.crc_ok();
    let mut initialise = false;
    // `None` is ESP-IDF's FACTORY_INDEX: with no factory partition, try ota_0 then ota_1.
    let start = if od.entries[0].is_invalid() && od.entries[1].is_invalid() {
        initialise = blank(&od.entries[0]) && blank(&od.entries[1]);
        Some(Slot::Ota0)
    } else if let Some(active) = od.active() {
        let entry = &mut od.entries[active];
        if entry.state == OtaState::New {
            entry.state = OtaState::PendingVerify;
            otadata.write_entry(active, entry, tear.take())?;
            events.push(BootEvent::MarkedPendingVerify { slot: entry.slot() });
        }
        Some(entry.slot())
    } else {
        None
    };

    // Work down from the start slot, then up: with two slots that is start, then the other.
    let order = match start {
        Some(Slot::Ota1) => [Slot::Ota1, Slot::Ota0],
        _ => [Slot::Ota0, Slot::Ota1],
    };
    for slot in order {
        match validate(slot) {
            Ok((facts, sha256)) => {
                if initialise {
                    let entry = OtaEntry::new(slot.index() + 1, OtaState::Valid);
                    otadata.write_entry(0, &entry, tear.take())?;
                    events.push(BootEvent::OtadataInitialised { slot });
                }
                return Ok(Loaded {
                    slot,
                    facts,
                    sha256,
                });
            }
            Err(e @ (ModelError::Io { .. } | ModelError::Corrupt { .. })) => return Err(e),
            Err(e) => events.push(BootEvent::Rejected {
                slot,
                reason: e.to_string(),
            }),
        }
    }
    Err(ModelError::NoBootableApp)
}
