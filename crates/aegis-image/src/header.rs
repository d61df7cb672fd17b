//! The image header: the 8-byte common header every ESP image starts with (magic 0xE9,
//! segment count, SPI flash mode, flash size and frequency, entry point) and the 16-byte
//! extended header ESP32-family images add after it (WP pin, SPI pin drive strengths, chip
//! id, chip revision range, and whether a SHA-256 digest is appended).

use serde::Serialize;

use crate::chip::Chip;
use crate::read::{u8_at, u16_at, u32_at};

/// First byte of every ESP8266/ESP32 image.
pub const IMAGE_MAGIC: u8 = 0xE9;
/// Length of the common header.
pub const COMMON_HEADER_LEN: usize = 8;
/// Length of common + extended header (where the first segment header starts on ESP32).
pub const HEADER_LEN: usize = 24;
/// The WP pin value ESP-IDF writes to say "not used".
pub const WP_PIN_DISABLED: u8 = 0xEE;

/// SPI flash read mode (header byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashMode {
    Qio,
    Qout,
    Dio,
    Dout,
    FastRead,
    SlowRead,
    /// A value no tool writes.
    Unknown,
}

impl FlashMode {
    pub fn from_byte(b: u8) -> FlashMode {
        match b {
            0 => FlashMode::Qio,
            1 => FlashMode::Qout,
            2 => FlashMode::Dio,
            3 => FlashMode::Dout,
            4 => FlashMode::FastRead,
            5 => FlashMode::SlowRead,
            _ => FlashMode::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FlashMode::Qio => "QIO",
            FlashMode::Qout => "QOUT",
            FlashMode::Dio => "DIO",
            FlashMode::Dout => "DOUT",
            FlashMode::FastRead => "FAST_READ",
            FlashMode::SlowRead => "SLOW_READ",
            FlashMode::Unknown => "unknown",
        }
    }
}

/// The common header (first 8 bytes), shared by ESP8266 and ESP32 images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub magic: u8,
    pub segment_count: u8,
    pub flash_mode: FlashMode,
    /// Raw byte 2.
    pub flash_mode_raw: u8,
    /// Flash size as the header declares it ("4MB"), `None` when the value is not defined.
    pub flash_size: Option<&'static str>,
    /// Flash frequency ("40m"), `None` when the value is not defined for the chip.
    pub flash_freq: Option<&'static str>,
    /// Raw byte 3 (high nibble size, low nibble frequency).
    pub flash_size_freq_raw: u8,
    pub entry_point: u32,
    /// Absent for ESP8266 images.
    pub extended: Option<ExtendedHeader>,
}

/// The ESP32-family extended header (16 bytes at offset 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtendedHeader {
    pub wp_pin: u8,
    /// SPI pin drive settings, bytes 9..12 (two 4-bit fields per byte).
    pub spi_pin_drive: [u8; 3],
    pub chip_id: u16,
    /// Legacy minimum chip revision (byte 14).
    pub min_chip_rev: u8,
    /// Minimum chip revision as major*100+minor (v3.1 = 301).
    pub min_chip_rev_full: u16,
    /// Maximum chip revision as major*100+minor; 0xFFFF means no limit.
    pub max_chip_rev_full: u16,
    /// Raw byte 0x17: 1 = a SHA-256 digest follows the checksum, 0 = none; other values are
    /// not valid for an ESP32 image.
    pub hash_appended_raw: u8,
}

impl ExtendedHeader {
    pub fn hash_appended(&self) -> bool {
        self.hash_appended_raw == 1
    }

    /// Whether the byte 0x17 holds a value an ESP32 image can have (esptool's test for
    /// "this is not an ESP8266 image").
    pub fn hash_flag_is_valid(&self) -> bool {
        self.hash_appended_raw <= 1
    }
}

/// Format a revision such as 301 as "v3.1", the way esptool prints it.
pub fn format_revision(full: u16) -> String {
    format!("v{}.{}", full / 100, full % 100)
}

/// ESP32 flash size names for the high nibble of byte 3.
fn esp32_flash_size(nibble: u8) -> Option<&'static str> {
    Some(match nibble {
        0 => "1MB",
        1 => "2MB",
        2 => "4MB",
        3 => "8MB",
        4 => "16MB",
        5 => "32MB",
        6 => "64MB",
        7 => "128MB",
        _ => return None,
    })
}

/// ESP8266 flash size names for the high nibble of byte 3.
fn esp8266_flash_size(nibble: u8) -> Option<&'static str> {
    Some(match nibble {
        0 => "512KB",
        1 => "256KB",
        2 => "1MB",
        3 => "2MB",
        4 => "4MB",
        5 => "2MB-c1",
        6 => "4MB-c1",
        8 => "8MB",
        9 => "16MB",
        _ => return None,
    })
}

fn esp8266_flash_freq(nibble: u8) -> Option<&'static str> {
    Some(match nibble {
        0xF => "80m",
        0x0 => "40m",
        0x1 => "26m",
        0x2 => "20m",
        _ => return None,
    })
}

/// Parse the ESP32-family header (common + extended). `None` if the input is shorter than 24
/// bytes; the magic is reported, not checked.
pub fn parse_esp32(bytes: &[u8]) -> Option<Header> {
    let mut h = parse_common(bytes)?;
    let ext = ExtendedHeader {
        wp_pin: u8_at(bytes, 8)?,
        spi_pin_drive: [u8_at(bytes, 9)?, u8_at(bytes, 10)?, u8_at(bytes, 11)?],
        chip_id: u16_at(bytes, 12)?,
        min_chip_rev: u8_at(bytes, 14)?,
        min_chip_rev_full: u16_at(bytes, 15)?,
        max_chip_rev_full: u16_at(bytes, 17)?,
        hash_appended_raw: u8_at(bytes, 23)?,
    };
    h.flash_size = esp32_flash_size(h.flash_size_freq_raw >> 4);
    h.flash_freq =
        Chip::from_id(ext.chip_id).and_then(|c| c.flash_freq_name(h.flash_size_freq_raw & 0xF));
    h.extended = Some(ext);
    Some(h)
}

/// Parse the ESP8266 (v1) header: the common 8 bytes only.
pub fn parse_esp8266(bytes: &[u8]) -> Option<Header> {
    let mut h = parse_common(bytes)?;
    h.flash_size = esp8266_flash_size(h.flash_size_freq_raw >> 4);
    h.flash_freq = esp8266_flash_freq(h.flash_size_freq_raw & 0xF);
    Some(h)
}

fn parse_common(bytes: &[u8]) -> Option<Header> {
    let mode = u8_at(bytes, 2)?;
    Some(Header {
        magic: u8_at(bytes, 0)?,
        segment_count: u8_at(bytes, 1)?,
        flash_mode: FlashMode::from_byte(mode),
        flash_mode_raw: mode,
        flash_size: None,
        flash_freq: None,
        flash_size_freq_raw: u8_at(bytes, 3)?,
        entry_point: u32_at(bytes, 4)?,
        extended: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_esp32_header() {
        // First 24 bytes of esp-serial-flasher's ESP32 hello_world.
        let b = [
            0xe9, 0x05, 0x02, 0x10, 0xf0, 0x0a, 0x08, 0x40, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0x8f,
            0x01, 0, 0, 0, 0, 1,
        ];
        let h = parse_esp32(&b).unwrap();
        assert_eq!(h.segment_count, 5);
        assert_eq!(h.flash_mode, FlashMode::Dio);
        assert_eq!(h.flash_size, Some("2MB"));
        assert_eq!(h.flash_freq, Some("40m"));
        assert_eq!(h.entry_point, 0x4008_0af0);
        let e = h.extended.unwrap();
        assert_eq!(e.chip_id, 0);
        assert_eq!(format_revision(e.max_chip_rev_full), "v3.99");
        assert!(e.hash_appended());
    }

    #[test]
    fn short_input_is_none() {
        assert!(parse_esp32(&[0xe9; 23]).is_none());
        assert!(parse_esp8266(&[0xe9; 7]).is_none());
    }
}
