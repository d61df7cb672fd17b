//! Recognising files that are not ESP32 app images, and saying so in a sentence a user can
//! act on: partition tables, merged/factory flash images, ESP8266 images, direct-boot
//! images, ELF/UF2/ZIP files, erased flash, and anything else.

use serde::Serialize;

use crate::app_desc::{self, APP_DESC_OFFSET};
use crate::checksum::{CHECKSUM_SEED, checksum_offset, xor_into};
use crate::header::{self, COMMON_HEADER_LEN, Header, IMAGE_MAGIC};
use crate::partition_table::{self, Partition};
use crate::segment::{self, MAX_SEGMENTS, Segment, Walk};

/// What a file is, whether or not it is intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An ESP32-family application image (the thing OTA installs).
    App,
    /// A second-stage bootloader image.
    Bootloader,
    /// An ESP-IDF partition table.
    PartitionTable,
    /// A merged ("factory") flash image: bootloader + partition table + app.
    Merged,
    /// An ESP8266 firmware image.
    Esp8266,
    /// Anything else, or too damaged to tell.
    Unknown,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Bootloader => "bootloader",
            Kind::PartitionTable => "partition_table",
            Kind::Merged => "merged",
            Kind::Esp8266 => "esp8266",
            Kind::Unknown => "unknown",
        }
    }
}

/// The advice every "not an app image" reason ends with.
pub(crate) const UPLOAD_THE_APP: &str =
    "upload the app .bin from your build directory (e.g. build/<project>.bin)";

pub(crate) fn partition_table_reason(parts: &[Partition]) -> String {
    let labels: Vec<&str> = parts.iter().map(|p| p.label.as_str()).collect();
    format!(
        "this is a partition table ({} entries: {}), not an app image: it is written once at \
         flash offset 0x8000 with esptool and cannot be deployed over the air; {UPLOAD_THE_APP}",
        parts.len(),
        labels.join(", ")
    )
}

/// A merged flash image found at the start of the file.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    /// Flash address the file's first byte is written to.
    pub base: u32,
    pub table_offset: usize,
    pub partitions: Vec<Partition>,
}

/// Detect a merged image: a partition table where it sits in flash (0x8000) for a file that
/// starts at flash 0x0, 0x1000 or 0x2000, and a start that is a bootloader or erased flash
/// (never an app: an app begins with its descriptor at 0x20).
pub(crate) fn merged(bytes: &[u8]) -> Option<Merged> {
    let starts_like_flash = match bytes.first() {
        Some(&0xFF) => true,
        Some(&IMAGE_MAGIC) => {
            let desc = bytes.get(APP_DESC_OFFSET..).unwrap_or(&[]);
            app_desc::parse(desc, APP_DESC_OFFSET as u64).is_none()
        }
        _ => false,
    };
    if !starts_like_flash {
        return None;
    }
    for base in [0x0u32, 0x1000, 0x2000] {
        let table_offset = (0x8000 - base) as usize;
        if let Some(partitions) = partition_table::parse(bytes, table_offset) {
            return Some(Merged {
                base,
                table_offset,
                partitions,
            });
        }
    }
    None
}

pub(crate) fn merged_reason(m: &Merged) -> String {
    format!(
        "this is a merged flash image (bootloader + partition table + app, written to flash at \
         0x{:x}), not an OTA app image: {UPLOAD_THE_APP}, not the merged/factory file",
        m.base
    )
}

/// An ESP8266 (v1) image: common header, segments, checksum; no extended header, no digest.
#[derive(Debug, Clone)]
pub(crate) struct Esp8266 {
    pub header: Header,
    pub segments: Vec<Segment>,
    pub checksum_valid: bool,
}

/// Parse as an ESP8266 image; `None` unless every segment is in the file and the checksum byte
/// is present.
pub(crate) fn esp8266(bytes: &[u8]) -> Option<Esp8266> {
    let header = header::parse_esp8266(bytes)?;
    let count = usize::from(header.segment_count);
    if header.magic != IMAGE_MAGIC || count == 0 || count > MAX_SEGMENTS {
        return None;
    }
    let (segments, walk) = segment::walk(bytes, COMMON_HEADER_LEN, count, None);
    let Walk::Complete { end } = walk else {
        return None;
    };
    let stored = *bytes.get(checksum_offset(end))?;
    let calc = segments
        .iter()
        .fold(CHECKSUM_SEED, |acc, s| xor_into(acc, s.data(bytes)));
    Some(Esp8266 {
        header,
        segments,
        checksum_valid: stored == calc,
    })
}

pub(crate) const ESP8266_REASON: &str = "this is an ESP8266 firmware image (it has no ESP32 \
    extended header, chip id or SHA-256 digest), not an ESP32 app image: AegisOTA deploys \
    ESP32-family firmware only";

pub(crate) const ESP8266_V2_REASON: &str = "this is an ESP8266 \"v2\" OTA image (magic 0xEA), \
    not an ESP32 app image: AegisOTA deploys ESP32-family firmware only";

/// A reason for a file that does not start like any ESP image.
pub(crate) fn foreign_format_reason(bytes: &[u8]) -> String {
    let first = bytes.first().copied().unwrap_or(0);
    if bytes.starts_with(&[0x1D, 0x04, 0xDB, 0xAE]) {
        return "this is a direct-boot image (magic 0xaedb041d, as esp-hal/espflash make for \
                ESP32-C3 and similar chips): it has no ESP-IDF image header, so no bootloader \
                can verify it or install it over the air; build a normal app image, which \
                starts with byte 0xE9"
            .to_owned();
    }
    if bytes.starts_with(b"\x7fELF") {
        return "this is an ELF file, not a flashable image: upload the .bin the build writes \
                next to it (e.g. build/<project>.bin), or convert it with `esptool elf2image`"
            .to_owned();
    }
    if bytes.starts_with(b"UF2\n") {
        return format!(
            "this is a UF2 file (for USB drag-and-drop flashing), not an app image: {UPLOAD_THE_APP}"
        );
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return format!("this is a ZIP archive, not an app image: extract it and {UPLOAD_THE_APP}");
    }
    if bytes.starts_with(&[0x1F, 0x8B]) {
        return format!(
            "this is a gzip-compressed file, not an app image: decompress it, then {UPLOAD_THE_APP}"
        );
    }
    if bytes.iter().all(|&b| b == 0xFF) {
        return "the file contains only 0xFF bytes (erased flash), not a firmware image".to_owned();
    }
    if bytes.iter().all(|&b| b == 0) {
        return "the file contains only zero bytes, not a firmware image".to_owned();
    }
    format!(
        "this is not an ESP32 app image: it starts with byte 0x{first:02x}, but every ESP32 app \
         image starts with 0xE9; {UPLOAD_THE_APP}"
    )
}
