//! One simulated ESP32's flash, otadata and bootloader, as ESP-IDF does them; synchronous,
//! persistent, no networking and no timing (callers add delays).
//!
//! - [`otadata`]: the two `esp_ota_select_entry_t` records, their CRC and selection rules.
//! - [`bootloader`]: which slot boots, with rollback (NEW → PENDING_VERIFY → VALID/ABORTED).
//! - [`Device`]: a device's slots, update calls (`esp_ota_begin/write/end`), boot selection,
//!   confirmation, power loss; persisted in a per-device directory.
//! - [`BlobStore`]: complete images stored once per fleet by SHA-256.
//!
//! Device directory layout: `device.json` (configuration), `otadata.bin` (the 8 KiB
//! partition image), `ota_N.blob` (SHA-256 of the complete image the slot holds),
//! `ota_N.partial` (raw bytes of an image being or last being written).

mod blobs;
pub mod bootloader;
mod device;
mod error;
mod image;
pub mod otadata;
mod slot;

use std::io::Write;
use std::path::Path;

pub use blobs::BlobStore;
pub use bootloader::BootEvent;
pub use device::{AppState, BootOutcome, DEFAULT_SLOT_SIZE, Device, DeviceConfig, RunningImage};
pub use error::ModelError;
pub use image::{ImageFacts, ImageProblem};
pub use otadata::{OtaState, Tear};
pub use slot::{Slot, SlotContent};

/// Write a file whole or not at all: a temporary file beside it, then a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temp).map_err(|e| ModelError::io("create", &temp, e))?;
    file.write_all(bytes)
        .map_err(|e| ModelError::io("write", &temp, e))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(|e| ModelError::io("rename into place", path, e))
}
