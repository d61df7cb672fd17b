//! The two OTA app partitions, `ota_0` and `ota_1`, and what each holds on disk.
//!
//! A slot is one of: erased; a complete image, recorded as `ota_N.blob` (the SHA-256 of a
//! blob in the shared [`super::BlobStore`]); or a partial image, the raw bytes written so far
//! in `ota_N.partial` (the rest of the slot reads as erased). `ota_N.partial`, when present,
//! wins: it is created before the blob record is removed when an update starts and removed
//! after the blob record is written when it ends, so a power loss at any point leaves
//! exactly what the flash would hold.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ModelError, write_atomically};

/// An OTA app partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    Ota0,
    Ota1,
}

impl Slot {
    /// Both slots, in partition-table order.
    pub const ALL: [Slot; 2] = [Slot::Ota0, Slot::Ota1];

    /// The partition label: `ota_0` or `ota_1`.
    pub fn label(self) -> &'static str {
        match self {
            Slot::Ota0 => "ota_0",
            Slot::Ota1 => "ota_1",
        }
    }

    /// The OTA index (partition subtype minus `ota_0`'s).
    pub fn index(self) -> u32 {
        match self {
            Slot::Ota0 => 0,
            Slot::Ota1 => 1,
        }
    }

    /// The slot with this index modulo 2.
    pub fn from_index(index: u32) -> Slot {
        if index.is_multiple_of(2) {
            Slot::Ota0
        } else {
            Slot::Ota1
        }
    }

    /// The other slot (`esp_ota_get_next_update_partition` with two slots).
    pub fn other(self) -> Slot {
        match self {
            Slot::Ota0 => Slot::Ota1,
            Slot::Ota1 => Slot::Ota0,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotContent {
    /// Nothing (erased flash).
    Erased,
    /// A complete image stored in the blob store.
    Image { sha256: [u8; 32] },
    /// The first `written` bytes of an image; the rest erased.
    Partial { written: u64 },
}

/// The files of one slot in a device directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotFiles {
    pub slot: Slot,
}

impl SlotFiles {
    pub fn blob_record(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.blob", self.slot.label()))
    }

    pub fn partial(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.partial", self.slot.label()))
    }

    /// Read what the slot holds.
    pub fn load(self, dir: &Path) -> Result<SlotContent, ModelError> {
        let partial = self.partial(dir);
        match std::fs::metadata(&partial) {
            Ok(meta) => {
                return Ok(SlotContent::Partial {
                    written: meta.len(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ModelError::io("read", partial, e)),
        }
        let record = self.blob_record(dir);
        let text = match std::fs::read_to_string(&record) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SlotContent::Erased),
            Err(e) => return Err(ModelError::io("read", record, e)),
        };
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut sha256).map_err(|_| ModelError::Corrupt {
            path: record.clone(),
            detail: "it does not hold a 64-digit hex SHA-256".to_owned(),
        })?;
        Ok(SlotContent::Image { sha256 })
    }

    /// Start writing: an empty partial file (the slot now reads as erased), then drop the
    /// blob record.
    pub fn erase_for_write(self, dir: &Path) -> Result<std::fs::File, ModelError> {
        let partial = self.partial(dir);
        let file =
            std::fs::File::create(&partial).map_err(|e| ModelError::io("create", &partial, e))?;
        remove_if_present(&self.blob_record(dir))?;
        Ok(file)
    }

    /// Record a complete image, then drop the partial file.
    pub fn commit_image(self, dir: &Path, sha256: &[u8; 32]) -> Result<(), ModelError> {
        write_atomically(
            &self.blob_record(dir),
            format!("{}\n", hex::encode(sha256)).as_bytes(),
        )?;
        remove_if_present(&self.partial(dir))
    }

    /// Make the slot erased.
    pub fn erase(self, dir: &Path) -> Result<(), ModelError> {
        remove_if_present(&self.partial(dir))?;
        remove_if_present(&self.blob_record(dir))
    }
}

fn remove_if_present(path: &Path) -> Result<(), ModelError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ModelError::io("remove", path, e)),
    }
}
