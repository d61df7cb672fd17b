//! Making valid app images for tests and the simulator: an ESP-IDF-shaped image for any chip
//! with a chosen version, project, size and secure_version, accepted by `esptool image-info`,
//! and optionally broken on purpose.
//!
//! Layout (four segments, like a small ESP-IDF app without the padding segment):
//!
//! | segment | memory | content |
//! |---|---|---|
//! | 0 | DROM (flash data) | `esp_app_desc_t` at file offset 0x20, the simulator marker, filler |
//! | 1 | DRAM | filler |
//! | 2 | IRAM | filler; the entry point |
//! | 3 | IROM (flash code) | filler, most of the requested size |
//!
//! Flash-mapped segments get load addresses congruent to their file offsets modulo the 64 KiB
//! MMU page, as the bootloader requires. The output depends only on the inputs: no clock, no
//! randomness.

use sha2::{Digest, Sha256};

use crate::app_desc::{APP_DESC_LEN, APP_DESC_MAGIC, field};
use crate::checksum::{CHECKSUM_SEED, DIGEST_LEN, checksum_offset, xor_into};
use crate::chip::Chip;
use crate::header::{HEADER_LEN, IMAGE_MAGIC, WP_PIN_DISABLED};
use crate::segment::SEGMENT_HEADER_LEN;
use crate::sim::{self, SimBehavior};

/// Ways to break an image on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// The XOR checksum byte is wrong (the digest is recomputed, so only the checksum fails).
    BadChecksum,
    /// The appended SHA-256 digest is wrong.
    BadDigest,
    /// The file is cut in half.
    Truncated,
    /// The header names a different chip than the one the segments were laid out for.
    WrongChip,
}

impl Corruption {
    pub const ALL: &'static [Corruption] = &[
        Corruption::BadChecksum,
        Corruption::BadDigest,
        Corruption::Truncated,
        Corruption::WrongChip,
    ];
}

/// Why an image could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error(
        "the {field} \"{value}\" is {len} bytes long; the app descriptor holds at most {max} bytes"
    )]
    TooLong {
        field: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error("the {field} must not contain NUL characters")]
    ContainsNul { field: &'static str },
    #[error("an image of {size} bytes is too small: it needs at least {min} bytes (4 KiB)")]
    TooSmall { size: u64, min: u64 },
    #[error("an image of {size} bytes is too large for {chip}: at most {max} bytes fit")]
    TooLarge { size: u64, max: u64, chip: Chip },
}

/// Smallest image the builder makes.
pub const MIN_SIZE: u64 = 4096;
/// Largest image the builder makes (an OTA slot is never larger).
pub const MAX_SIZE: u64 = 16 * 1024 * 1024;

const PAGE: usize = 0x1_0000;
const SEGMENTS: usize = 4;
const DRAM_LEN: usize = 0x100;
const IRAM_LEN: usize = 0x400;
/// Descriptor, marker and a little filler.
const DROM_MIN: usize = 0x200;

/// Builds app images. Defaults: version 1.0.0, project demo, ESP-IDF v5.2.2, 256 KiB,
/// secure_version 0, behavior `Boots`, not corrupted.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    chip: Chip,
    version: String,
    project: String,
    idf_version: String,
    date: String,
    time: String,
    secure_version: u32,
    size: u64,
    behavior: SimBehavior,
    corruption: Option<Corruption>,
}

impl ImageBuilder {
    pub fn new(chip: Chip) -> Self {
        ImageBuilder {
            chip,
            version: "1.0.0".into(),
            project: "demo".into(),
            idf_version: "v5.2.2".into(),
            date: "Jan  1 2025".into(),
            time: "00:00:00".into(),
            secure_version: 0,
            size: 256 * 1024,
            behavior: SimBehavior::Boots,
            corruption: None,
        }
    }

    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }

    pub fn project(mut self, p: impl Into<String>) -> Self {
        self.project = p.into();
        self
    }

    pub fn idf_version(mut self, v: impl Into<String>) -> Self {
        self.idf_version = v.into();
        self
    }

    /// Compile date as ESP-IDF writes it ("Jul 25 2024"); fixed by default so output is
    /// deterministic.
    pub fn date(mut self, d: impl Into<String>) -> Self {
        self.date = d.into();
        self
    }

    /// Compile time ("16:23:40").
    pub fn time(mut self, t: impl Into<String>) -> Self {
        self.time = t.into();
        self
    }

    pub fn secure_version(mut self, v: u32) -> Self {
        self.secure_version = v;
        self
    }

    /// Total file size in bytes, rounded up to a multiple of 16 (the format's granularity).
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = bytes;
        self
    }

    pub fn behavior(mut self, b: SimBehavior) -> Self {
        self.behavior = b;
        self
    }

    pub fn corrupt(mut self, c: Corruption) -> Self {
        self.corruption = Some(c);
        self
    }

    /// The largest size this chip's flash windows can hold with this layout.
    pub fn max_size(chip: Chip) -> u64 {
        let l = chip.layout();
        let flash = if chip.shared_flash_window() {
            l.irom.len() as usize - 4 * PAGE
        } else {
            (l.drom.len() as usize - 0x20) + (l.irom.len() as usize - PAGE)
        };
        let total = flash + overhead();
        (total as u64 - total as u64 % 16).min(MAX_SIZE)
    }

    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        self.check_strings()?;
        let size = self.size.div_ceil(16) * 16;
        if size < MIN_SIZE {
            return Err(BuildError::TooSmall {
                size: self.size,
                min: MIN_SIZE,
            });
        }
        let max = Self::max_size(self.chip);
        if size > max {
            return Err(BuildError::TooLarge {
                size: self.size,
                max,
                chip: self.chip,
            });
        }
        // `size <= MAX_SIZE`, so this fits in usize everywhere we build.
        let size = usize::try_from(size).map_err(|_| BuildError::TooLarge {
            size: self.size,
            max,
            chip: self.chip,
        })?;
        let mut out = self.layout(size);
        if let Some(c) = self.corruption {
            self.apply(c, &mut out);
        }
        Ok(out)
    }

    fn check_strings(&self) -> Result<(), BuildError> {
        let fields = [
            ("version", &self.version, field::VERSION_LEN),
            ("project name", &self.project, field::PROJECT_LEN),
            ("ESP-IDF version", &self.idf_version, field::IDF_VER_LEN),
            ("date", &self.date, field::DATE_LEN),
            ("time", &self.time, field::TIME_LEN),
        ];
        for (name, value, width) in fields {
            if value.contains('\0') {
                return Err(BuildError::ContainsNul { field: name });
            }
            if value.len() >= width {
                return Err(BuildError::TooLong {
                    field: name,
                    value: value.clone(),
                    len: value.len(),
                    max: width - 1,
                });
            }
        }
        Ok(())
    }

    fn layout(&self, size: usize) -> Vec<u8> {
        let l = self.chip.layout();
        let flash_len = size - overhead();
        let irom_len = if self.chip.shared_flash_window() {
            flash_len - DROM_MIN
        } else {
            (flash_len - DROM_MIN).min(l.irom.len() as usize - PAGE)
        };
        let drom_len = flash_len - irom_len;
        let irom_data_at =
            HEADER_LEN + SEGMENTS * SEGMENT_HEADER_LEN + drom_len + DRAM_LEN + IRAM_LEN;
        let irom_addr = l.irom.start + (irom_data_at % PAGE) as u32;
        let drom_addr = if self.chip.shared_flash_window() {
            let irom_end = (irom_data_at % PAGE) + irom_len;
            l.irom.start + (irom_end.div_ceil(PAGE) * PAGE + PAGE) as u32 + 0x20
        } else {
            l.drom.start + 0x20
        };

        let mut filler = Filler::new(&self.seed());
        let mut drom = self.descriptor();
        drom.extend(sim::marker(self.behavior));
        filler.extend(&mut drom, drom_len);
        let mut dram = Vec::new();
        filler.extend(&mut dram, DRAM_LEN);
        let mut iram = Vec::new();
        filler.extend(&mut iram, IRAM_LEN);
        let mut irom = Vec::new();
        filler.extend(&mut irom, irom_len);

        let mut out = Vec::with_capacity(size);
        out.extend([
            IMAGE_MAGIC,
            SEGMENTS as u8,
            0x02,
            flash_size_nibble(size) << 4,
        ]);
        out.extend(l.iram.to_le_bytes());
        out.extend([WP_PIN_DISABLED, 0, 0, 0]);
        out.extend(self.chip.id().to_le_bytes());
        out.push(0); // min_chip_rev
        out.extend(0u16.to_le_bytes()); // min_chip_rev_full
        out.extend(0xFFFFu16.to_le_bytes()); // max_chip_rev_full: no upper limit
        out.extend([0; 4]);
        out.push(1); // hash appended
        let mut checksum = CHECKSUM_SEED;
        for (addr, data) in [
            (drom_addr, &drom),
            (l.dram, &dram),
            (l.iram, &iram),
            (irom_addr, &irom),
        ] {
            out.extend(addr.to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data.iter());
            checksum = xor_into(checksum, data);
        }
        let ck_at = checksum_offset(out.len());
        out.resize(ck_at, 0);
        out.push(checksum);
        let digest = Sha256::digest(&out);
        out.extend(digest);
        debug_assert_eq!(out.len(), size);
        out
    }

    fn descriptor(&self) -> Vec<u8> {
        let mut d = vec![0u8; APP_DESC_LEN];
        let mut put = |at: usize, bytes: &[u8]| d[at..at + bytes.len()].copy_from_slice(bytes);
        put(field::MAGIC, &APP_DESC_MAGIC.to_le_bytes());
        put(field::SECURE_VERSION, &self.secure_version.to_le_bytes());
        put(field::VERSION, self.version.as_bytes());
        put(field::PROJECT, self.project.as_bytes());
        put(field::TIME, self.time.as_bytes());
        put(field::DATE, self.date.as_bytes());
        put(field::IDF_VER, self.idf_version.as_bytes());
        put(field::ELF_SHA256, &self.seed());
        d
    }

    /// Stands in for the ELF's SHA-256 and seeds the filler: a hash of every input.
    fn seed(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            self.chip.name(),
            &self.version,
            &self.project,
            &self.idf_version,
            &self.date,
            &self.time,
            self.behavior.name(),
        ] {
            h.update((part.len() as u32).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(self.secure_version.to_le_bytes());
        h.finalize().into()
    }

    fn apply(&self, c: Corruption, out: &mut Vec<u8>) {
        let body = out.len() - DIGEST_LEN;
        match c {
            Corruption::BadChecksum => {
                out[body - 1] ^= 0xFF;
                refresh_digest(out);
            }
            Corruption::BadDigest => out[body] ^= 0x01,
            Corruption::Truncated => out.truncate(out.len() / 2),
            Corruption::WrongChip => {
                let drom_addr = u32::from_le_bytes([out[24], out[25], out[26], out[27]]);
                let other = Chip::ALL
                    .iter()
                    .copied()
                    .find(|c| *c != self.chip && !c.is_flash_mapped(drom_addr))
                    .unwrap_or(Chip::Esp32);
                out[12..14].copy_from_slice(&other.id().to_le_bytes());
                refresh_digest(out);
            }
        }
    }
}

fn refresh_digest(out: &mut [u8]) {
    let body = out.len() - DIGEST_LEN;
    let digest = Sha256::digest(&out[..body]);
    out[body..].copy_from_slice(&digest);
}

/// Bytes that are not flash-segment data: header, segment headers, RAM segments, the
/// checksum word (4 bytes: three padding + checksum) and the digest.
const fn overhead() -> usize {
    HEADER_LEN + SEGMENTS * SEGMENT_HEADER_LEN + DRAM_LEN + IRAM_LEN + 4 + DIGEST_LEN
}

/// Declared flash size: the smallest of 2..32 MB that holds two OTA slots of this size.
fn flash_size_nibble(size: usize) -> u8 {
    let need = 2 * size + 0x1_0000;
    (1u8..=5)
        .find(|n| need <= (1usize << (20 + n)))
        .unwrap_or(5)
}

/// Deterministic filler bytes (xorshift64*), so images are not trivially compressible and
/// differ between versions.
struct Filler(u64);

impl Filler {
    fn new(seed: &[u8; 32]) -> Self {
        let mut s = [0u8; 8];
        s.copy_from_slice(&seed[..8]);
        Filler(u64::from_le_bytes(s) | 1)
    }

    fn extend(&mut self, v: &mut Vec<u8>, to_len: usize) {
        while v.len() < to_len {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let take = (to_len - v.len()).min(8);
            v.extend_from_slice(&word[..take]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, inspect};

    #[test]
    fn builds_exact_sizes_for_every_chip() {
        for &chip in Chip::ALL {
            for size in [4096u64, 100_000, 1 << 20] {
                let img = ImageBuilder::new(chip).size(size).build().unwrap();
                assert_eq!(img.len() as u64, size.div_ceil(16) * 16, "{chip}");
                let ins = inspect(&img);
                assert!(ins.valid, "{chip} {size}: {:?} {:?}", ins.reason, ins.notes);
                assert_eq!(ins.kind, Kind::App);
                assert_eq!(ins.chip, Some(chip));
                assert!(ins.notes.is_empty(), "{chip}: {:?}", ins.notes);
            }
        }
    }

    #[test]
    fn deterministic() {
        let a = ImageBuilder::new(Chip::Esp32s3)
            .version("2.0.0")
            .build()
            .unwrap();
        let b = ImageBuilder::new(Chip::Esp32s3)
            .version("2.0.0")
            .build()
            .unwrap();
        let c = ImageBuilder::new(Chip::Esp32s3)
            .version("2.0.1")
            .build()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn rejects_bad_inputs() {
        let long = "x".repeat(32);
        assert!(matches!(
            ImageBuilder::new(Chip::Esp32).version(&long).build(),
            Err(BuildError::TooLong { max: 31, .. })
        ));
        assert!(
            ImageBuilder::new(Chip::Esp32)
                .version("x".repeat(31))
                .build()
                .is_ok()
        );
        assert!(matches!(
            ImageBuilder::new(Chip::Esp32).size(4000).build(),
            Err(BuildError::TooSmall { .. })
        ));
        assert!(matches!(
            ImageBuilder::new(Chip::Esp32).size(64 << 20).build(),
            Err(BuildError::TooLarge { .. })
        ));
        assert!(matches!(
            ImageBuilder::new(Chip::Esp32).project("a\0b").build(),
            Err(BuildError::ContainsNul { .. })
        ));
        // Debug builds hash slowly: check the limit on one chip per kind of flash window.
        for chip in [Chip::Esp32, Chip::Esp32c6] {
            let max = ImageBuilder::max_size(chip);
            let img = ImageBuilder::new(chip).size(max).build().unwrap();
            assert!(inspect(&img).valid, "{chip} at max size {max}");
            assert!(ImageBuilder::new(chip).size(max + 16).build().is_err());
        }
    }
}
