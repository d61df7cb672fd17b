//! otadata: ESP-IDF's record of which OTA slot boots next and in what state.
//!
//! Two `esp_ota_select_entry_t` records (32 bytes each: `ota_seq` u32, `seq_label[20]`,
//! `ota_state` u32, `crc` u32, little-endian), one at the start of each of the two 4 KiB
//! sectors of the otadata partition. The CRC covers only the four bytes of `ota_seq`
//! (`esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4)`). The active entry is the valid one (CRC ok,
//! sequence not erased, state neither INVALID nor ABORTED) with the highest sequence; it
//! selects slot `(ota_seq - 1) % 2`. Every write erases the entry's whole sector and then
//! programs 32 bytes, so a write torn by a power loss leaves that sector erased or
//! half-programmed (invalid) and the other entry in force.
//!
//! [`OtadataFile`] keeps the partition as a real 8 KiB byte image on disk.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{ModelError, Slot, write_atomically};

/// Flash sector size: the unit of erase.
pub const SECTOR_SIZE: usize = 4096;
/// Size of the otadata partition: two sectors.
pub const OTADATA_SIZE: usize = 2 * SECTOR_SIZE;
/// Size of one `esp_ota_select_entry_t`.
pub const ENTRY_SIZE: usize = 32;

/// The CRC the ROM function `esp_rom_crc32_le` computes when called with `UINT32_MAX`: the
/// ROM inverts the value it is given, so the register starts at 0; reflected CRC-32
/// polynomial, result inverted.
const ESP_ROM_CRC32_LE_FROM_MAX: crc::Algorithm<u32> = crc::Algorithm {
    width: 32,
    poly: 0x04c1_1db7,
    init: 0,
    refin: true,
    refout: true,
    xorout: 0xffff_ffff,
    check: 0xd202_d277,
    residue: 0xdebb_20e3,
};
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&ESP_ROM_CRC32_LE_FROM_MAX);

/// `bootloader_common_ota_select_crc`: the CRC of an entry with this sequence number.
pub fn ota_select_crc(seq: u32) -> u32 {
    CRC.checksum(&seq.to_le_bytes())
}

/// `esp_ota_img_states_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtaState {
    /// Selected for the next boot, never booted yet.
    New,
    /// Booted once; the app has not confirmed itself yet.
    PendingVerify,
    /// Confirmed by the app.
    Valid,
    /// Marked invalid by the app (`esp_ota_mark_app_invalid_rollback_and_reboot`).
    Invalid,
    /// Reset while pending verification; the bootloader will not select it again.
    Aborted,
    /// Erased flash, or written with rollback disabled.
    Undefined,
    /// Any other value (damaged entry).
    Other(u32),
}

impl OtaState {
    /// The state for a raw `ota_state` word.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            0 => OtaState::New,
            1 => OtaState::PendingVerify,
            2 => OtaState::Valid,
            3 => OtaState::Invalid,
            4 => OtaState::Aborted,
            u32::MAX => OtaState::Undefined,
            other => OtaState::Other(other),
        }
    }

    /// The raw `ota_state` word.
    pub fn raw(self) -> u32 {
        match self {
            OtaState::New => 0,
            OtaState::PendingVerify => 1,
            OtaState::Valid => 2,
            OtaState::Invalid => 3,
            OtaState::Aborted => 4,
            OtaState::Undefined => u32::MAX,
            OtaState::Other(raw) => raw,
        }
    }

    /// ESP-IDF's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            OtaState::New => "NEW",
            OtaState::PendingVerify => "PENDING_VERIFY",
            OtaState::Valid => "VALID",
            OtaState::Invalid => "INVALID",
            OtaState::Aborted => "ABORTED",
            OtaState::Undefined => "UNDEFINED",
            OtaState::Other(_) => "OTHER",
        }
    }
}

/// One `esp_ota_select_entry_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtaEntry {
    pub seq: u32,
    pub label: [u8; 20],
    pub state: OtaState,
    pub crc: u32,
}

impl OtaEntry {
    /// An entry as erased flash reads it (all bits set).
    pub const ERASED: OtaEntry = OtaEntry {
        seq: u32::MAX,
        label: [0xff; 20],
        state: OtaState::Undefined,
        crc: u32::MAX,
    };

    /// A well-formed entry: erased label, CRC computed.
    pub fn new(seq: u32, state: OtaState) -> Self {
        OtaEntry::ERASED.with_seq(seq).with_state(state)
    }

    /// This entry with another sequence number and its CRC recomputed (as `rewrite_ota_seq`).
    pub fn with_seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self.crc = ota_select_crc(seq);
        self
    }

    /// This entry with another state (the CRC does not cover the state).
    pub fn with_state(mut self, state: OtaState) -> Self {
        self.state = state;
        self
    }

    /// Decode the 32 on-flash bytes.
    pub fn decode(bytes: &[u8; ENTRY_SIZE]) -> Self {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut label = [0u8; 20];
        label.copy_from_slice(&bytes[4..24]);
        OtaEntry {
            seq: word(0),
            label,
            state: OtaState::from_raw(word(24)),
            crc: word(28),
        }
    }

    /// The 32 on-flash bytes.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut out = [0u8; ENTRY_SIZE];
        out[0..4].copy_from_slice(&self.seq.to_le_bytes());
        out[4..24].copy_from_slice(&self.label);
        out[24..28].copy_from_slice(&self.state.raw().to_le_bytes());
        out[28..32].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    /// The stored CRC matches the sequence number.
    pub fn crc_ok(&self) -> bool {
        self.crc == ota_select_crc(self.seq)
    }

    /// `bootloader_common_ota_select_invalid`: erased sequence, INVALID or ABORTED.
    pub fn is_invalid(&self) -> bool {
        self.seq == u32::MAX || matches!(self.state, OtaState::Invalid | OtaState::Aborted)
    }

    /// `bootloader_common_ota_select_valid`: not invalid and the CRC matches.
    pub fn is_valid(&self) -> bool {
        !self.is_invalid() && self.crc_ok()
    }

    /// The slot this entry's sequence number selects: `(ota_seq - 1) % 2`.
    pub fn slot(&self) -> Slot {
        Slot::from_index(self.seq.wrapping_sub(1) % 2)
    }
}

/// Both entries, as read from the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Otadata {
    pub entries: [OtaEntry; 2],
}

impl Otadata {
    /// Both sectors erased: what `otadata_initial.bin` / a fresh flash holds.
    pub const ERASED: Otadata = Otadata {
        entries: [OtaEntry::ERASED, OtaEntry::ERASED],
    };

    /// Decode the 8 KiB partition image.
    pub fn decode(image: &[u8; OTADATA_SIZE]) -> Self {
        let entry = |sector: usize| {
            let mut raw = [0u8; ENTRY_SIZE];
            let start = sector * SECTOR_SIZE;
            raw.copy_from_slice(&image[start..start + ENTRY_SIZE]);
            OtaEntry::decode(&raw)
        };
        Otadata {
            entries: [entry(0), entry(1)],
        }
    }

    /// The 8 KiB partition image: each entry at the start of its sector, the rest erased.
    pub fn encode(&self) -> Vec<u8> {
        let mut image = vec![0xff; OTADATA_SIZE];
        for (sector, entry) in self.entries.iter().enumerate() {
            let start = sector * SECTOR_SIZE;
            image[start..start + ENTRY_SIZE].copy_from_slice(&entry.encode());
        }
        image
    }

    /// `bootloader_common_get_active_otadata`: the index of the valid entry with the highest
    /// sequence (entry 0 on a tie), or `None` when neither is valid.
    pub fn active(&self) -> Option<usize> {
        match (self.entries[0].is_valid(), self.entries[1].is_valid()) {
            (true, true) => {
                if self.entries[0].seq >= self.entries[1].seq {
                    Some(0)
                } else {
                    Some(1)
                }
            }
            (true, false) => Some(0),
            (false, true) => Some(1),
            (false, false) => None,
        }
    }

    /// The slot the active entry selects.
    pub fn selected_slot(&self) -> Option<Slot> {
        self.active().map(|i| self.entries[i].slot())
    }

    /// `esp_ota_get_state_partition`: the state of the first entry (sector 0 first) whose
    /// sequence maps to `slot` and whose CRC matches; `None` when no entry does.
    pub fn state_of(&self, slot: Slot) -> Option<OtaState> {
        self.entries
            .iter()
            .find(|e| e.slot() == slot && e.crc_ok())
            .map(|e| e.state)
    }

    /// What `esp_ota_set_boot_partition(slot)` writes: `(sector, entry)`. The new entry goes in
    /// the sector that is not active, with the smallest sequence number not below the active
    /// one that maps to `slot` (normally active + 1), state NEW; with no active entry, sector 0
    /// with sequence `slot + 1`. The other fields of the rewritten sector are kept, as ESP-IDF
    /// rewrites the entry it read.
    pub fn boot_selection(&self, slot: Slot) -> (usize, OtaEntry) {
        let target = u64::from(slot.index());
        match self.active() {
            Some(active) => {
                let seq = u64::from(self.entries[active].seq);
                let base = (target + 1) % 2;
                let new_seq = if seq <= base {
                    base
                } else {
                    base + (seq - base).div_ceil(2) * 2
                };
                let sector = 1 - active;
                // Sequence numbers never get near u32::MAX in a device's life; wrap as C would.
                let entry = self.entries[sector]
                    .with_seq(new_seq as u32)
                    .with_state(OtaState::New);
                (sector, entry)
            }
            None => (
                0,
                self.entries[0]
                    .with_seq(slot.index() + 1)
                    .with_state(OtaState::New),
            ),
        }
    }
}

/// How a simulated power loss tears an otadata write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tear {
    /// The sector was erased; nothing of the new entry was programmed.
    AfterErase,
    /// The sector was erased and the first half of the entry (sequence and part of the
    /// label) programmed; the state and CRC words are still erased.
    MidWrite,
}

/// The otadata partition kept as an 8 KiB file.
#[derive(Debug, Clone)]
pub struct OtadataFile {
    path: PathBuf,
}

impl OtadataFile {
    /// The otadata file at `path` (not read until asked).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        OtadataFile { path: path.into() }
    }

    /// Where the partition image lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a fully erased partition (a freshly flashed device).
    pub fn create_erased(&self) -> Result<(), ModelError> {
        write_atomically(&self.path, &Otadata::ERASED.encode())
    }

    /// Read and decode both entries.
    pub fn read(&self) -> Result<Otadata, ModelError> {
        let bytes = std::fs::read(&self.path).map_err(|e| ModelError::io("read", &self.path, e))?;
        let image: &[u8; OTADATA_SIZE] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| ModelError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("it is {} bytes, not {OTADATA_SIZE}", bytes.len()),
                })?;
        Ok(Otadata::decode(image))
    }

    /// Erase `sector` and program `entry` at its start, as `write_otadata` / `rewrite_ota_seq`
    /// do. With `tear`, stop part-way as a power loss would and return
    /// [`ModelError::PowerLost`].
    pub fn write_entry(
        &self,
        sector: usize,
        entry: &OtaEntry,
        tear: Option<Tear>,
    ) -> Result<(), ModelError> {
        let sector = sector.min(1);
        let mut file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| ModelError::io("open", &self.path, e))?;
        let offset = (sector * SECTOR_SIZE) as u64;
        let io = |e| ModelError::io("write", &self.path, e);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.write_all(&[0xff; SECTOR_SIZE]).map_err(io)?;
        let programmed = match tear {
            Some(Tear::AfterErase) => return Err(ModelError::PowerLost),
            Some(Tear::MidWrite) => ENTRY_SIZE / 2,
            None => ENTRY_SIZE,
        };
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.write_all(&entry.encode()[..programmed]).map_err(io)?;
        if tear.is_some() {
            return Err(ModelError::PowerLost);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_esp_idf_vectors() {
        assert_eq!(ota_select_crc(1), 0x4743_989a);
        assert_eq!(ota_select_crc(2), 0x55f6_3774);
        assert_eq!(ota_select_crc(3), 0xed4a_5011);
        assert_eq!(ota_select_crc(u32::MAX), 0x2144_df1c);
    }

    #[test]
    fn entry_round_trips_through_its_32_bytes() {
        let entry = OtaEntry::new(7, OtaState::PendingVerify);
        let bytes = entry.encode();
        assert_eq!(&bytes[0..4], &7u32.to_le_bytes());
        assert_eq!(&bytes[24..28], &1u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &ota_select_crc(7).to_le_bytes());
        assert_eq!(OtaEntry::decode(&bytes), entry);
    }

    #[test]
    fn selection_picks_highest_valid_sequence() {
        let mut od = Otadata {
            entries: [
                OtaEntry::new(1, OtaState::Valid),
                OtaEntry::new(2, OtaState::New),
            ],
        };
        assert_eq!(od.active(), Some(1));
        assert_eq!(od.selected_slot(), Some(Slot::Ota1));
        od.entries[1].state = OtaState::Aborted;
        assert_eq!(od.selected_slot(), Some(Slot::Ota0));
        od.entries[1].state = OtaState::Invalid;
        assert_eq!(od.selected_slot(), Some(Slot::Ota0));
        od.entries[1].state = OtaState::Valid;
        od.entries[1].crc ^= 1;
        assert_eq!(od.selected_slot(), Some(Slot::Ota0));
        assert_eq!(Otadata::ERASED.active(), None);
    }

    #[test]
    fn boot_selection_writes_the_other_sector_with_next_sequence() {
        let od = Otadata {
            entries: [OtaEntry::new(1, OtaState::Valid), OtaEntry::ERASED],
        };
        let (sector, entry) = od.boot_selection(Slot::Ota1);
        assert_eq!((sector, entry.seq, entry.state), (1, 2, OtaState::New));
        assert!(entry.crc_ok());
        let od = Otadata {
            entries: [
                OtaEntry::new(3, OtaState::Valid),
                OtaEntry::new(2, OtaState::Valid),
            ],
        };
        let (sector, entry) = od.boot_selection(Slot::Ota1);
        assert_eq!((sector, entry.seq), (1, 4));
        // Re-selecting the slot already active keeps its sequence (ESP-IDF's formula).
        let (sector, entry) = od.boot_selection(Slot::Ota0);
        assert_eq!((sector, entry.seq), (1, 3));
        let (sector, entry) = Otadata::ERASED.boot_selection(Slot::Ota1);
        assert_eq!((sector, entry.seq), (0, 2));
    }

    #[test]
    fn state_of_takes_first_entry_with_good_crc() {
        let od = Otadata {
            entries: [
                OtaEntry::new(1, OtaState::Valid),
                OtaEntry::new(2, OtaState::PendingVerify),
            ],
        };
        assert_eq!(od.state_of(Slot::Ota0), Some(OtaState::Valid));
        assert_eq!(od.state_of(Slot::Ota1), Some(OtaState::PendingVerify));
        assert_eq!(Otadata::ERASED.state_of(Slot::Ota1), None);
    }

    #[test]
    fn torn_writes_leave_the_sector_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let file = OtadataFile::new(dir.path().join("otadata.bin"));
        file.create_erased().unwrap();
        file.write_entry(0, &OtaEntry::new(1, OtaState::Valid), None)
            .unwrap();
        for tear in [Tear::AfterErase, Tear::MidWrite] {
            let err = file.write_entry(1, &OtaEntry::new(2, OtaState::New), Some(tear));
            assert!(matches!(err, Err(ModelError::PowerLost)));
            let od = file.read().unwrap();
            assert!(!od.entries[1].is_valid(), "{tear:?}");
            assert_eq!(od.selected_slot(), Some(Slot::Ota0));
        }
        assert_eq!(
            std::fs::metadata(file.path()).unwrap().len(),
            OTADATA_SIZE as u64
        );
    }
}
