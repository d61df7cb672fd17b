//! The ESP32-family chips an app image can be built for: the chip id esptool writes into the
//! extended header, the name users type (`esp32s3`), and the facts about each chip's address
//! space that parsing and building need (which addresses are mapped from flash, where RAM
//! segments load, where the bootloader sits in flash).
//!
//! The ids and ranges follow esptool v5.6 (`esptool/targets/*.py`: `IMAGE_CHIP_ID`,
//! `IROM_MAP_*`, `DROM_MAP_*`, `MEMORY_MAP`, `BOOTLOADER_FLASH_OFFSET`).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// An ESP32-family chip, as named by its image chip id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chip {
    Esp32,
    Esp32s2,
    Esp32c3,
    Esp32s3,
    Esp32c2,
    Esp32c6,
    Esp32h2,
    Esp32p4,
    Esp32c61,
    Esp32c5,
    Esp32h21,
    Esp32h4,
    Esp32e22,
    Esp32s31,
}

/// A half-open address range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub start: u32,
    pub end: u32,
}

impl Range {
    const fn new(start: u32, end: u32) -> Self {
        Self { start, end }
    }

    pub(crate) fn contains(self, addr: u32) -> bool {
        self.start <= addr && addr < self.end
    }

    pub(crate) fn len(self) -> u32 {
        self.end - self.start
    }
}

/// What a chip's address space looks like, as far as images are concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryLayout {
    /// Instruction bus mapped from flash (code, `.text` in flash).
    pub irom: Range,
    /// Data bus mapped from flash (`.rodata`, where the app descriptor lives).
    pub drom: Range,
    /// Where the builder loads its data segment.
    pub dram: u32,
    /// Where the builder loads its code segment (and points the entry at).
    pub iram: u32,
    /// Flash offset of the second-stage bootloader.
    pub bootloader_offset: u32,
}

impl Chip {
    /// Every chip esptool knows, in chip-id order.
    pub const ALL: &'static [Chip] = &[
        Chip::Esp32,
        Chip::Esp32s2,
        Chip::Esp32c3,
        Chip::Esp32s3,
        Chip::Esp32c2,
        Chip::Esp32c6,
        Chip::Esp32h2,
        Chip::Esp32p4,
        Chip::Esp32c61,
        Chip::Esp32c5,
        Chip::Esp32h21,
        Chip::Esp32h4,
        Chip::Esp32e22,
        Chip::Esp32s31,
    ];

    /// The chip id written at offset 0x0C of the image (esptool's `IMAGE_CHIP_ID`).
    pub fn id(self) -> u16 {
        match self {
            Chip::Esp32 => 0,
            Chip::Esp32s2 => 2,
            Chip::Esp32c3 => 5,
            Chip::Esp32s3 => 9,
            Chip::Esp32c2 => 12,
            Chip::Esp32c6 => 13,
            Chip::Esp32h2 => 16,
            Chip::Esp32p4 => 18,
            Chip::Esp32c61 => 20,
            Chip::Esp32c5 => 23,
            Chip::Esp32h21 => 25,
            Chip::Esp32h4 => 28,
            Chip::Esp32e22 => 31,
            Chip::Esp32s31 => 32,
        }
    }

    /// The chip for an image chip id, `None` for ids no released esptool knows.
    pub fn from_id(id: u16) -> Option<Chip> {
        Chip::ALL.iter().copied().find(|c| c.id() == id)
    }

    /// The short lower-case name (`esp32s3`), as used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Chip::Esp32 => "esp32",
            Chip::Esp32s2 => "esp32s2",
            Chip::Esp32c3 => "esp32c3",
            Chip::Esp32s3 => "esp32s3",
            Chip::Esp32c2 => "esp32c2",
            Chip::Esp32c6 => "esp32c6",
            Chip::Esp32h2 => "esp32h2",
            Chip::Esp32p4 => "esp32p4",
            Chip::Esp32c61 => "esp32c61",
            Chip::Esp32c5 => "esp32c5",
            Chip::Esp32h21 => "esp32h21",
            Chip::Esp32h4 => "esp32h4",
            Chip::Esp32e22 => "esp32e22",
            Chip::Esp32s31 => "esp32s31",
        }
    }

    /// The name as Espressif prints it (`ESP32-S3`).
    pub fn display_name(self) -> &'static str {
        match self {
            Chip::Esp32 => "ESP32",
            Chip::Esp32s2 => "ESP32-S2",
            Chip::Esp32c3 => "ESP32-C3",
            Chip::Esp32s3 => "ESP32-S3",
            Chip::Esp32c2 => "ESP32-C2",
            Chip::Esp32c6 => "ESP32-C6",
            Chip::Esp32h2 => "ESP32-H2",
            Chip::Esp32p4 => "ESP32-P4",
            Chip::Esp32c61 => "ESP32-C61",
            Chip::Esp32c5 => "ESP32-C5",
            Chip::Esp32h21 => "ESP32-H21",
            Chip::Esp32h4 => "ESP32-H4",
            Chip::Esp32e22 => "ESP32-E22",
            Chip::Esp32s31 => "ESP32-S31",
        }
    }

    /// The names of all chips, comma-separated, for error messages.
    pub fn known_names() -> String {
        Chip::ALL
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn layout(self) -> MemoryLayout {
        const fn l(
            irom: (u32, u32),
            drom: (u32, u32),
            dram: u32,
            iram: u32,
            boot: u32,
        ) -> MemoryLayout {
            MemoryLayout {
                irom: Range::new(irom.0, irom.1),
                drom: Range::new(drom.0, drom.1),
                dram,
                iram,
                bootloader_offset: boot,
            }
        }
        match self {
            Chip::Esp32 => l(
                (0x400D_0000, 0x4040_0000),
                (0x3F40_0000, 0x3F80_0000),
                0x3FFB_0000,
                0x4008_0000,
                0x1000,
            ),
            Chip::Esp32s2 => l(
                (0x4008_0000, 0x40B8_0000),
                (0x3F00_0000, 0x3F3F_0000),
                0x3FFB_C000,
                0x4002_4000,
                0x1000,
            ),
            Chip::Esp32s3 => l(
                (0x4200_0000, 0x4400_0000),
                (0x3C00_0000, 0x3E00_0000),
                0x3FC9_0000,
                0x4037_4000,
                0x0,
            ),
            Chip::Esp32c3 => l(
                (0x4200_0000, 0x4280_0000),
                (0x3C00_0000, 0x3C80_0000),
                0x3FC8_8000,
                0x4038_0000,
                0x0,
            ),
            Chip::Esp32c2 => l(
                (0x4200_0000, 0x4240_0000),
                (0x3C00_0000, 0x3C40_0000),
                0x3FCA_7000,
                0x4038_0000,
                0x0,
            ),
            // On the C6 family code and read-only data share one flash window.
            Chip::Esp32c6 | Chip::Esp32h2 => l(
                (0x4200_0000, 0x4300_0000),
                (0x4200_0000, 0x4300_0000),
                0x4080_0000,
                0x4080_8000,
                0x0,
            ),
            Chip::Esp32c61 => l(
                (0x4200_0000, 0x4400_0000),
                (0x4200_0000, 0x4400_0000),
                0x4080_0000,
                0x4080_8000,
                0x0,
            ),
            Chip::Esp32c5 => l(
                (0x4200_0000, 0x4400_0000),
                (0x4200_0000, 0x4400_0000),
                0x4080_0000,
                0x4080_8000,
                0x2000,
            ),
            Chip::Esp32h21 => l(
                (0x4200_0000, 0x4300_0000),
                (0x4200_0000, 0x4300_0000),
                0x4080_0000,
                0x4080_8000,
                0x0,
            ),
            Chip::Esp32h4 => l(
                (0x4200_0000, 0x4400_0000),
                (0x4200_0000, 0x4400_0000),
                0x4081_0000,
                0x4081_8000,
                0x2000,
            ),
            Chip::Esp32p4 => l(
                (0x4000_0000, 0x4C00_0000),
                (0x4000_0000, 0x4C00_0000),
                0x4FF0_0000,
                0x4FF0_8000,
                0x2000,
            ),
            Chip::Esp32e22 => l(
                (0x3C00_0000, 0x4000_0000),
                (0x3C00_0000, 0x4000_0000),
                0x3100_0000,
                0x3100_8000,
                0x0,
            ),
            Chip::Esp32s31 => l(
                (0x4000_0000, 0x5400_0000),
                (0x4000_0000, 0x5400_0000),
                0x2F00_0000,
                0x2F00_8000,
                0x2000,
            ),
        }
    }

    /// Whether code and data share one flash window (so the builder must keep them apart).
    pub(crate) fn shared_flash_window(self) -> bool {
        let l = self.layout();
        l.irom == l.drom
    }

    /// The smallest flash MMU page the chip supports. ESP32, S2, S3 and C3 map 64 KiB pages
    /// only; newer chips can be configured down (C2: 16 KiB, C6/H2 and later: 8 KiB), and an
    /// image does not always record which size it was linked for.
    pub(crate) fn min_mmu_page(self) -> u32 {
        match self {
            Chip::Esp32 | Chip::Esp32s2 | Chip::Esp32s3 | Chip::Esp32c3 => 0x1_0000,
            Chip::Esp32c2 => 0x4000,
            _ => 0x2000,
        }
    }

    /// Whether `addr` is mapped from flash (an IROM or DROM segment) on this chip.
    pub(crate) fn is_flash_mapped(self, addr: u32) -> bool {
        let l = self.layout();
        l.irom.contains(addr) || l.drom.contains(addr)
    }

    /// The flash frequency name for the low nibble of header byte 3, per esptool's tables.
    pub(crate) fn flash_freq_name(self, nibble: u8) -> Option<&'static str> {
        let table: &[(u8, &str)] = match self {
            Chip::Esp32c2 => &[(0xF, "60m"), (0x0, "30m"), (0x1, "20m"), (0x2, "15m")],
            Chip::Esp32h2 => &[(0xF, "48m"), (0x0, "24m"), (0x1, "16m"), (0x2, "12m")],
            Chip::Esp32h21 | Chip::Esp32h4 => &[(0xF, "48m"), (0x0, "24m")],
            // esptool writes 0 for both 80m and 40m on the C6 (a ROM workaround).
            Chip::Esp32c6 => &[(0x0, "80m/40m"), (0x2, "20m")],
            Chip::Esp32c5 | Chip::Esp32c61 => &[(0xF, "80m"), (0x0, "40m"), (0x2, "20m")],
            _ => &[(0xF, "80m"), (0x0, "40m"), (0x1, "26m"), (0x2, "20m")],
        };
        table.iter().find(|(n, _)| *n == nibble).map(|(_, s)| *s)
    }
}

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a chip name that is not one of [`Chip::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown chip `{given}`: known chips are {}", Chip::known_names())]
pub struct UnknownChip {
    pub given: String,
}

impl FromStr for Chip {
    type Err = UnknownChip;

    /// Accepts `esp32s3`, `ESP32-S3`, `esp32_s3` (case and separators ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Chip::ALL
            .iter()
            .copied()
            .find(|c| c.name() == norm)
            .ok_or_else(|| UnknownChip {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for &c in Chip::ALL {
            assert_eq!(Chip::from_id(c.id()), Some(c));
            assert_eq!(c.name().parse::<Chip>().ok(), Some(c));
            assert_eq!(c.display_name().parse::<Chip>().ok(), Some(c));
        }
        assert_eq!(Chip::from_id(1), None);
        assert_eq!(Chip::from_id(0xFFFF), None);
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let err = "esp33".parse::<Chip>().unwrap_err().to_string();
        assert!(err.contains("esp32s3") && err.contains("esp32c6"), "{err}");
    }

    #[test]
    fn layouts_are_sane() {
        for &c in Chip::ALL {
            let l = c.layout();
            assert!(
                l.irom.start < l.irom.end && l.drom.start < l.drom.end,
                "{c}"
            );
            assert_eq!(l.irom.start % 0x1_0000, 0, "{c}");
            assert_eq!(l.drom.start % 0x1_0000, 0, "{c}");
            assert!(
                !c.is_flash_mapped(l.dram) && !c.is_flash_mapped(l.iram),
                "{c}"
            );
        }
    }
}
