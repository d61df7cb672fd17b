//! `inspect()`: one pass over a file that says what it is, whether it is a valid OTA app
//! image, why not, and everything found on the way. The checks follow what the ESP-IDF
//! bootloader and OTA code verify (magic, chip id, segment bounds and alignment, checksum,
//! appended SHA-256), and what esptool `image-info` reports.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::app_desc::{self, APP_DESC_LEN, APP_DESC_OFFSET, AppDescriptor};
use crate::checksum::{CHECKSUM_SEED, DIGEST_LEN, checksum_offset, xor_into};
use crate::chip::Chip;
use crate::classify::{self, Kind, UPLOAD_THE_APP};
use crate::header::{self, HEADER_LEN, Header, IMAGE_MAGIC};
use crate::partition_table;
use crate::read::{align_up, hex, serialize_hex};
use crate::segment::{self, MAX_SEGMENTS, Segment, Walk};
use crate::signature::{self, SignatureBlocks};
use crate::sim::{self, SimBehavior};

/// Everything `inspect()` found out about a file.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// What the file is (independent of whether it is intact).
    pub kind: Kind,
    /// True only for an intact ESP32-family app image an OTA update can install.
    pub valid: bool,
    /// Why the file is not a valid OTA app image (`None` exactly when `valid`).
    pub reason: Option<String>,
    /// Other observations worth knowing (no descriptor, trailing data, ...).
    pub notes: Vec<String>,
    pub chip: Option<Chip>,
    /// Raw chip id from the extended header, also when it names no known chip.
    pub chip_id: Option<u16>,
    /// `None` when the image is too damaged (or not an image) to find the checksum.
    pub checksum_valid: Option<bool>,
    /// `None` when no SHA-256 digest is appended (or the file is not an ESP32 image).
    pub digest_valid: Option<bool>,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    #[serde(serialize_with = "serialize_hex")]
    pub sha256: [u8; 32],
    pub header: Option<Header>,
    pub segments: Vec<Segment>,
    pub app: Option<AppDescriptor>,
    pub signatures: Option<SignatureBlocks>,
    /// Behaviour marker written by [`crate::ImageBuilder`] for the simulator.
    pub sim_behavior: Option<SimBehavior>,
}

impl Inspection {
    fn new(bytes: &[u8]) -> Self {
        Inspection {
            kind: Kind::Unknown,
            valid: false,
            reason: None,
            notes: Vec::new(),
            chip: None,
            chip_id: None,
            checksum_valid: None,
            digest_valid: None,
            size: bytes.len() as u64,
            sha256: [0; 32],
            header: None,
            segments: Vec::new(),
            app: None,
            signatures: None,
            sim_behavior: None,
        }
    }

    fn reject(mut self, kind: Kind, reason: impl Into<String>) -> Self {
        self.kind = kind;
        self.valid = false;
        self.reason = Some(reason.into());
        self
    }

    /// The image's version from its descriptor, if it has one.
    pub fn version(&self) -> Option<&str> {
        self.app.as_ref().map(|a| a.version.as_str())
    }
}

/// Inspect a file's bytes. Never fails and never panics: everything, including "this is not
/// an image", is in the returned [`Inspection`].
pub fn inspect(bytes: &[u8]) -> Inspection {
    let mut ins = inspect_structure(bytes, true);
    if ins.sha256 == [0; 32] {
        ins.sha256 = Sha256::digest(bytes).into();
    }
    ins
}

/// The analysis proper. `look_for_merged` is false when inspecting the app inside a merged
/// image (one level only). Fills `sha256` only when it was computed on the way.
fn inspect_structure(bytes: &[u8], look_for_merged: bool) -> Inspection {
    let ins = Inspection::new(bytes);
    if bytes.is_empty() {
        return ins.reject(Kind::Unknown, "the file is empty");
    }
    if let Some(parts) = partition_table::parse(bytes, 0) {
        let reason = classify::partition_table_reason(&parts);
        return ins.reject(Kind::PartitionTable, reason);
    }
    if let Some(m) = look_for_merged.then(|| classify::merged(bytes)).flatten() {
        let mut ins = ins.reject(Kind::Merged, classify::merged_reason(&m));
        note_apps_inside(bytes, &m, &mut ins);
        return ins;
    }
    match bytes[0] {
        IMAGE_MAGIC => esp_image(bytes, ins),
        0xEA => ins.reject(Kind::Esp8266, classify::ESP8266_V2_REASON),
        _ => {
            let reason = classify::foreign_format_reason(bytes);
            ins.reject(Kind::Unknown, reason)
        }
    }
}

fn note_apps_inside(bytes: &[u8], m: &classify::Merged, ins: &mut Inspection) {
    ins.notes.push(format!(
        "partition table at file offset 0x{:x}: {}",
        m.table_offset,
        m.partitions
            .iter()
            .map(|p| format!("{} @0x{:x}", p.label, p.offset))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for p in m.partitions.iter().filter(|p| p.is_app()) {
        let Some(start) = p.offset.checked_sub(m.base).map(|o| o as usize) else {
            continue;
        };
        let end = start.saturating_add(p.size as usize).min(bytes.len());
        let Some(slice) = bytes.get(start..end) else {
            continue;
        };
        if slice.first() != Some(&IMAGE_MAGIC) {
            continue;
        }
        let inner = inspect_structure(slice, false);
        let what = match &inner.app {
            Some(a) => format!(
                "version \"{}\", project \"{}\", ESP-IDF {}",
                a.version, a.project, a.idf_version
            ),
            None => "no app descriptor".to_owned(),
        };
        ins.notes.push(format!(
            "contains an app image in partition \"{}\" at file offset 0x{start:x} ({what}); \
             the same app is available as a separate .bin in the build output",
            p.label
        ));
    }
}

/// An image starting with 0xE9: ESP32 family, else ESP8266, else damaged.
fn esp_image(bytes: &[u8], mut ins: Inspection) -> Inspection {
    let Some(hdr) = header::parse_esp32(bytes) else {
        return ins.reject(
            Kind::Unknown,
            format!(
                "the file is truncated: it is only {} bytes long, too short even for the \
                 24-byte image header",
                bytes.len()
            ),
        );
    };
    let Some(ext) = hdr.extended.clone() else {
        return ins.reject(Kind::Unknown, "the image header could not be read");
    };
    let chip = Chip::from_id(ext.chip_id);
    if chip.is_none() || !ext.hash_flag_is_valid() {
        // esptool's rule: no valid ESP32 extended header means ESP8266.
        if let Some(e) = classify::esp8266(bytes).filter(|e| e.checksum_valid) {
            ins.header = Some(e.header);
            ins.segments = e.segments;
            ins.checksum_valid = Some(true);
            return ins.reject(Kind::Esp8266, classify::ESP8266_REASON);
        }
        ins.chip_id = Some(ext.chip_id);
        ins.header = Some(hdr);
        let reason = if !ext.hash_flag_is_valid() {
            format!(
                "this is not a valid ESP32 image: its hash-appended flag (byte 0x17) is 0x{:02x}, \
                 which must be 0 or 1, and it does not parse as an ESP8266 image either",
                ext.hash_appended_raw
            )
        } else {
            format!(
                "the image header names chip id {}, which no known chip uses (known: {}): the \
                 file is corrupt or was built for a chip newer than this version of aegis knows",
                ext.chip_id,
                Chip::known_names()
            )
        };
        return ins.reject(Kind::Unknown, reason);
    }
    let chip = chip.unwrap_or(Chip::Esp32);
    ins.chip = Some(chip);
    ins.chip_id = Some(ext.chip_id);
    esp32_image(bytes, ins, hdr, chip, ext.hash_appended())
}

/// The problems that make an ESP32 image invalid, in the order a bootloader would hit them.
/// The first becomes the reason; later ones become notes.
fn esp32_image(
    bytes: &[u8],
    mut ins: Inspection,
    hdr: Header,
    chip: Chip,
    hash_appended: bool,
) -> Inspection {
    let mut problems: Vec<String> = Vec::new();
    let count = usize::from(hdr.segment_count);
    ins.header = Some(hdr);
    if count > MAX_SEGMENTS {
        problems.push(format!(
            "the image header announces {count} segments, more than the 16 an ESP32 image may \
             have: the file is corrupt (or the linker script is broken)"
        ));
    }
    if count == 0 {
        problems.push("the image has no segments, so there is nothing to boot".to_owned());
    }
    let (segments, walk) = segment::walk(bytes, HEADER_LEN, count, Some(chip));
    ins.segments = segments;

    // What the content says the file is.
    let seg0 = ins.segments.first();
    let seg0_data = seg0
        .map(|s| data_prefix(bytes, s, usize::MAX))
        .unwrap_or(&[]);
    let desc_at_0x20 = seg0
        .filter(|s| s.data_offset == APP_DESC_OFFSET as u64)
        .and_then(|_| app_desc::parse(seg0_data, APP_DESC_OFFSET as u64));
    let desc_elsewhere = if desc_at_0x20.is_none() {
        ins.segments
            .iter()
            .skip(1)
            .find_map(|s| app_desc::parse(data_prefix(bytes, s, APP_DESC_LEN), s.data_offset))
    } else {
        None
    };
    let boot_desc = seg0
        .filter(|s| !s.is_flash_mapped())
        .and_then(|_| app_desc::parse_bootloader(seg0_data));
    let any_flash_mapped = ins.segments.iter().any(Segment::is_flash_mapped);
    ins.kind = if desc_at_0x20.is_some() || desc_elsewhere.is_some() {
        Kind::App
    } else if boot_desc.is_some() || (!any_flash_mapped && !ins.segments.is_empty()) {
        Kind::Bootloader
    } else {
        Kind::App
    };
    if desc_at_0x20.is_some() {
        let after_desc = seg0_data.get(APP_DESC_LEN..).unwrap_or(&[]);
        ins.sim_behavior = sim::find(after_desc);
    }

    // Integrity: bounds, checksum, digest.
    let mut image_end = None;
    match walk {
        Walk::Truncated {
            index,
            needed,
            available,
        } => problems.push(format!(
            "the file is truncated: segment {index} needs {needed} bytes but the file has only \
             {available}; download or copy it again"
        )),
        Walk::Complete { end } => {
            let ck_at = checksum_offset(end);
            match bytes.get(ck_at) {
                None => problems.push(format!(
                    "the file is truncated: it ends at {} bytes, before the checksum byte at \
                     offset 0x{ck_at:x}; download or copy it again",
                    bytes.len()
                )),
                Some(&stored) => {
                    let calc = ins
                        .segments
                        .iter()
                        .fold(CHECKSUM_SEED, |acc, s| xor_into(acc, s.data(bytes)));
                    ins.checksum_valid = Some(stored == calc);
                    if stored != calc {
                        problems.push(format!(
                            "the image checksum is wrong (stored 0x{stored:02x}, computed \
                             0x{calc:02x}): the file is corrupt and a bootloader would refuse it"
                        ));
                    }
                    image_end = Some(ck_at + 1);
                }
            }
        }
    }
    let mut hasher = Sha256::new();
    let mut end_of_image = None;
    if let Some(end) = image_end {
        if hash_appended {
            match bytes.get(end..end + DIGEST_LEN) {
                None => {
                    problems.push(format!(
                        "the file is truncated: the header says a SHA-256 digest follows the \
                         image at offset 0x{end:x}, but the file ends at {} bytes; download or \
                         copy it again",
                        bytes.len()
                    ));
                }
                Some(stored) => {
                    hasher.update(&bytes[..end]);
                    let calc: [u8; 32] = hasher.clone().finalize().into();
                    let ok = stored == calc;
                    ins.digest_valid = Some(ok);
                    if !ok {
                        problems.push(format!(
                            "the appended SHA-256 digest does not match the image (stored {}, \
                             computed {}): the file is corrupt and a bootloader would refuse it",
                            hex(stored),
                            hex(&calc)
                        ));
                    }
                    hasher.update(stored);
                    end_of_image = Some(end + DIGEST_LEN);
                }
            }
        } else {
            hasher.update(&bytes[..end]);
            end_of_image = Some(end);
            ins.notes.push(
                "no SHA-256 digest is appended (hash-appended flag is 0): a bootloader can only \
                 check the one-byte checksum"
                    .to_owned(),
            );
        }
    }

    // Layout rules the ESP-IDF bootloader enforces.
    for s in &ins.segments {
        if !s.length.is_multiple_of(4) {
            problems.push(format!(
                "segment {} has length 0x{:x}, not a multiple of 4: the ESP-IDF bootloader \
                 refuses such images; rebuild the firmware",
                s.index, s.length
            ));
        }
    }
    let wrong_chip = match (&desc_at_0x20, ins.segments.first()) {
        (Some(_), Some(s)) if !s.is_flash_mapped() => {
            problems.push(format!(
                "the header says {} (chip id {}), but the app's first segment loads at \
                 0x{:08x}, which is not flash-mapped memory on that chip: the image was built for \
                 another chip or its header was altered; rebuild it for your devices' chip",
                chip.display_name(),
                chip.id(),
                s.load_address,
            ));
            true
        }
        _ => false,
    };

    // Under the wrong chip the address checks below would only add noise.
    if !wrong_chip {
        let page = desc_at_0x20
            .as_ref()
            .and_then(|_| seg0_data.get(180).copied())
            .filter(|&p| (13..=16).contains(&p))
            .map_or(chip.min_mmu_page(), |p| 1u32 << p);
        for s in ins.segments.iter().filter(|s| s.is_flash_mapped()) {
            let file_mod = (s.data_offset % u64::from(page)) as u32;
            if s.load_address % page != file_mod {
                problems.push(format!(
                    "segment {} is mapped from flash at 0x{:08x} but its data sits at file offset \
                     0x{:x}, which does not line up on a 0x{page:x}-byte MMU page: a bootloader \
                     would refuse it",
                    s.index, s.load_address, s.data_offset
                ));
            }
        }
    }

    // What follows the image: signature sector, padding, or other data.
    if let Some(end) = end_of_image {
        let sig_at = align_up(end, signature::SECTOR_SIZE).unwrap_or(usize::MAX);
        if signature::looks_signed(bytes, sig_at) {
            let mut h = hasher.clone();
            h.update(&bytes[end..sig_at]);
            let signed_sha: [u8; 32] = h.finalize().into();
            ins.signatures = signature::parse_sector(bytes, sig_at, &signed_sha);
        }
        hasher.update(&bytes[end..]);
        ins.sha256 = hasher.finalize().into();
        let covered = match &ins.signatures {
            Some(s) => s.offset as usize + signature::SECTOR_SIZE,
            None => end,
        };
        if let Some(sigs) = &ins.signatures {
            ins.notes.push(format!(
                "signed for Secure Boot v2: {} valid signature block(s) ({}); signatures are not \
                 verified here",
                sigs.count,
                sigs.blocks
                    .iter()
                    .map(|b| b.kind)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if bytes.len() > covered {
            let extra = &bytes[covered..];
            let what = if extra.iter().all(|&b| b == 0xFF) {
                "0xFF padding"
            } else {
                "data"
            };
            ins.notes.push(format!(
                "{} bytes of {what} follow the end of the image at offset 0x{covered:x}; the \
                 bootloader ignores them",
                extra.len()
            ));
        }
    }

    // Descriptor notes.
    match (&desc_at_0x20, &desc_elsewhere) {
        (Some(_), _) => {}
        (None, Some(d)) => ins.notes.push(format!(
            "the app descriptor is at file offset 0x{:x}, not at 0x20 where ESP-IDF's OTA code \
             and esptool look for it; devices may not report this version",
            d.offset
        )),
        (None, None) if ins.kind == Kind::App => ins.notes.push(
            "no app descriptor (esp_app_desc_t): the image is valid but its version, project \
             and secure_version are unknown, so version checks cannot protect the rollout"
                .to_owned(),
        ),
        _ => {}
    }
    if ins.kind == Kind::App && !any_flash_mapped && !ins.segments.is_empty() {
        ins.notes.push(
            "RAM-only app: no segment is mapped from flash, the whole program is copied into \
             RAM at boot (an ESP-IDF \"RAM app\", usually loaded over JTAG/UART rather than \
             installed by OTA)"
                .to_owned(),
        );
    }
    ins.app = desc_at_0x20.or(desc_elsewhere);

    if ins.kind == Kind::Bootloader {
        let idf = boot_desc
            .map(|d| format!(" (ESP-IDF {})", d.idf_version))
            .unwrap_or_default();
        let offset = chip.layout().bootloader_offset;
        let mut ins = ins.reject(
            Kind::Bootloader,
            format!(
                "this is a second-stage bootloader{idf}, not an app image: it is written once at \
                 flash offset 0x{offset:x} with esptool and cannot be updated over the air; \
                 {UPLOAD_THE_APP}"
            ),
        );
        ins.notes.extend(problems);
        return ins;
    }
    let mut problems = problems.into_iter();
    match problems.next() {
        Some(first) => {
            let kind = ins.kind;
            let mut ins = ins.reject(kind, first);
            ins.notes.extend(problems);
            ins
        }
        None => {
            ins.valid = true;
            ins.reason = None;
            ins
        }
    }
}

/// Up to `max` bytes of a segment's data, clipped to the end of the file.
fn data_prefix<'a>(bytes: &'a [u8], s: &Segment, max: usize) -> &'a [u8] {
    let start = usize::try_from(s.data_offset).unwrap_or(usize::MAX);
    let len = usize::try_from(s.length).unwrap_or(usize::MAX).min(max);
    let end = start.saturating_add(len).min(bytes.len());
    bytes.get(start..end).unwrap_or(&[])
}
