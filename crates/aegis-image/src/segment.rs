//! Segments: after the header come `segment_count` records of (load address u32, length u32,
//! data). This module walks them with bounds checks and says, per chip, what kind of memory
//! each one loads into.

use serde::Serialize;

use crate::chip::Chip;
use crate::read::u32_at;

/// Most segments an image may have (esptool refuses more; so does the ROM loader).
pub const MAX_SEGMENTS: usize = 16;
/// Length of a segment header (load address + length).
pub const SEGMENT_HEADER_LEN: usize = 8;

/// One segment as it sits in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub index: usize,
    pub load_address: u32,
    pub length: u32,
    /// File offset of the segment header.
    pub file_offset: u64,
    /// File offset of the segment's first data byte (`file_offset + 8`).
    pub data_offset: u64,
    /// What the address is on the image's chip: "IROM", "DROM", "IROM/DROM" (flash-mapped),
    /// "padding" (address 0), "RAM" (anything else, loaded by the bootloader), or "unknown"
    /// when the chip is not known.
    pub memory: &'static str,
}

impl Segment {
    pub fn is_flash_mapped(&self) -> bool {
        matches!(self.memory, "IROM" | "DROM" | "IROM/DROM")
    }

    pub(crate) fn data<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let start = usize::try_from(self.data_offset).unwrap_or(usize::MAX);
        let len = usize::try_from(self.length).unwrap_or(usize::MAX);
        start
            .checked_add(len)
            .and_then(|end| bytes.get(start..end))
            .unwrap_or(&[])
    }
}

/// Where walking the segment table stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// All segments are inside the file; `end` is the offset just past the last one.
    Complete { end: usize },
    /// Segment `index` (its header or its data) runs past the end of the file.
    Truncated {
        index: usize,
        needed: u64,
        available: u64,
    },
}

/// Read `count` segments starting at `offset`. Segments read before a truncation are kept.
pub fn walk(bytes: &[u8], offset: usize, count: usize, chip: Option<Chip>) -> (Vec<Segment>, Walk) {
    let mut segments = Vec::with_capacity(count.min(MAX_SEGMENTS));
    let mut pos = offset;
    let available = bytes.len() as u64;
    for index in 0..count {
        let (Some(load_address), Some(length)) = (u32_at(bytes, pos), u32_at(bytes, pos + 4))
        else {
            let needed = pos as u64 + SEGMENT_HEADER_LEN as u64;
            return (
                segments,
                Walk::Truncated {
                    index,
                    needed,
                    available,
                },
            );
        };
        let data_offset = pos + SEGMENT_HEADER_LEN;
        let end = data_offset as u64 + u64::from(length);
        segments.push(Segment {
            index,
            load_address,
            length,
            file_offset: pos as u64,
            data_offset: data_offset as u64,
            memory: memory_kind(chip, load_address),
        });
        if end > available {
            return (
                segments,
                Walk::Truncated {
                    index,
                    needed: end,
                    available,
                },
            );
        }
        // `end <= bytes.len()`, so this fits in usize.
        pos = usize::try_from(end).unwrap_or(usize::MAX);
    }
    (segments, Walk::Complete { end: pos })
}

fn memory_kind(chip: Option<Chip>, addr: u32) -> &'static str {
    if addr == 0 {
        return "padding";
    }
    let Some(chip) = chip else { return "unknown" };
    let l = chip.layout();
    match (l.irom.contains(addr), l.drom.contains(addr)) {
        (true, true) => "IROM/DROM",
        (true, false) => "IROM",
        (false, true) => "DROM",
        (false, false) => "RAM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(addr: u32, data: &[u8]) -> Vec<u8> {
        let mut v = addr.to_le_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn walks_complete_tables() {
        let mut b = seg(0x3F40_0020, &[1, 2, 3, 4]);
        b.extend(seg(0x4008_0000, &[5; 8]));
        let (s, w) = walk(&b, 0, 2, Some(Chip::Esp32));
        assert_eq!(w, Walk::Complete { end: b.len() });
        assert_eq!(s[0].memory, "DROM");
        assert_eq!(s[1].memory, "RAM");
        assert_eq!(s[1].data(&b), &[5; 8]);
    }

    #[test]
    fn reports_truncation() {
        let mut b = seg(0x3F40_0020, &[1, 2, 3, 4]);
        b.truncate(10);
        let (s, w) = walk(&b, 0, 1, None);
        assert_eq!(s.len(), 1);
        assert_eq!(
            w,
            Walk::Truncated {
                index: 0,
                needed: 12,
                available: 10
            }
        );
        let (s, w) = walk(&b, 4, 2, None);
        assert!(s.is_empty());
        assert!(matches!(w, Walk::Truncated { index: 0, .. }));
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let b = [0xFF; 8];
        let (_, w) = walk(&b, 0, 1, None);
        assert!(matches!(w, Walk::Truncated { .. }));
    }
}
