//! `esp_app_desc_t`, the 256-byte application descriptor ESP-IDF links at the start of the
//! first flash-data segment (file offset 0x20), and `esp_bootloader_desc_t`, its counterpart
//! in second-stage bootloaders (magic byte 0x50 at the same place).

use serde::Serialize;

use crate::read::{array_at, c_string, serialize_hex, u8_at, u32_at};

/// Magic word of `esp_app_desc_t` (little-endian at offset 0).
pub const APP_DESC_MAGIC: u32 = 0xABCD_5432;
/// Size of `esp_app_desc_t`.
pub const APP_DESC_LEN: usize = 256;
/// File offset of the descriptor in a normal app image (header 24 + segment header 8).
pub const APP_DESC_OFFSET: usize = 0x20;
/// Magic byte of `esp_bootloader_desc_t`.
pub const BOOTLOADER_DESC_MAGIC: u8 = 0x50;
/// Size of `esp_bootloader_desc_t`.
pub const BOOTLOADER_DESC_LEN: usize = 80;

/// The application descriptor. Strings are NUL-terminated in the image and may be empty
/// (Tasmota and MicroPython builds leave `version` and `project` empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppDescriptor {
    pub version: String,
    pub project: String,
    pub time: String,
    pub date: String,
    pub idf_version: String,
    pub secure_version: u32,
    #[serde(serialize_with = "serialize_hex")]
    pub elf_sha256: [u8; 32],
    /// File offset where the descriptor was found (0x20 for a normal app).
    pub offset: u64,
}

/// Layout of `esp_app_desc_t` (offsets inside the 256 bytes).
pub(crate) mod field {
    pub const MAGIC: usize = 0;
    pub const SECURE_VERSION: usize = 4;
    pub const VERSION: usize = 16;
    pub const PROJECT: usize = 48;
    pub const TIME: usize = 80;
    pub const DATE: usize = 96;
    pub const IDF_VER: usize = 112;
    pub const ELF_SHA256: usize = 144;
    pub const VERSION_LEN: usize = 32;
    pub const PROJECT_LEN: usize = 32;
    pub const TIME_LEN: usize = 16;
    pub const DATE_LEN: usize = 16;
    pub const IDF_VER_LEN: usize = 32;
}

/// Parse a descriptor from `data` (which must start at the descriptor). `None` when the data
/// is shorter than the descriptor or the magic word is wrong.
pub fn parse(data: &[u8], offset: u64) -> Option<AppDescriptor> {
    use field::*;
    let d = data.get(..APP_DESC_LEN)?;
    if u32_at(d, MAGIC)? != APP_DESC_MAGIC {
        return None;
    }
    let s = |at: usize, len: usize| d.get(at..at + len).map(c_string).unwrap_or_default();
    Some(AppDescriptor {
        version: s(VERSION, VERSION_LEN),
        project: s(PROJECT, PROJECT_LEN),
        time: s(TIME, TIME_LEN),
        date: s(DATE, DATE_LEN),
        idf_version: s(IDF_VER, IDF_VER_LEN),
        secure_version: u32_at(d, SECURE_VERSION)?,
        elf_sha256: array_at(d, ELF_SHA256)?,
        offset,
    })
}

/// What `esp_bootloader_desc_t` says, when a bootloader carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootloaderDescriptor {
    pub version: u32,
    pub idf_version: String,
    pub date_time: String,
}

/// Parse a bootloader descriptor from `data` (magic byte 0x50, 3 reserved, version u32,
/// idf_ver[32], date_time[24], reserved[16]).
pub fn parse_bootloader(data: &[u8]) -> Option<BootloaderDescriptor> {
    let d = data.get(..BOOTLOADER_DESC_LEN)?;
    if u8_at(d, 0)? != BOOTLOADER_DESC_MAGIC {
        return None;
    }
    let idf_version = c_string(d.get(8..40)?);
    // Guard against random data that merely starts with 0x50: the IDF version is text.
    if idf_version.is_empty() || !idf_version.chars().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    Some(BootloaderDescriptor {
        version: u32_at(d, 4)?,
        idf_version,
        date_time: c_string(d.get(40..64)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_magic_and_short_data() {
        assert!(parse(&[0u8; 256], 0x20).is_none());
        let mut d = [0u8; 255];
        d[..4].copy_from_slice(&APP_DESC_MAGIC.to_le_bytes());
        assert!(parse(&d, 0x20).is_none());
    }

    #[test]
    fn reads_fields() {
        let mut d = [0u8; 256];
        d[..4].copy_from_slice(&APP_DESC_MAGIC.to_le_bytes());
        d[4] = 7;
        d[16..21].copy_from_slice(b"2.0.0");
        d[48..52].copy_from_slice(b"demo");
        // A field with no NUL uses its whole width.
        d[112..144].copy_from_slice(&[b'v'; 32]);
        let a = parse(&d, 0x20).unwrap();
        assert_eq!(a.version, "2.0.0");
        assert_eq!(a.project, "demo");
        assert_eq!(a.secure_version, 7);
        assert_eq!(a.idf_version.len(), 32);
        assert_eq!(a.time, "");
    }
}
