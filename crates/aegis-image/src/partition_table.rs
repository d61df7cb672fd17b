//! ESP-IDF partition tables (flashed at 0x8000 by default): 32-byte entries starting with
//! 0xAA 0x50, an optional MD5 entry (0xEB 0xEB), then 0xFF. Used to recognise a partition
//! table file and the table inside a merged flash image.

use crate::read::{c_string, u32_at};

const ENTRY_LEN: usize = 32;
const MAX_ENTRIES: usize = 95;

/// One partition, as far as classification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub label: String,
    pub kind: u8,
    pub subtype: u8,
    pub offset: u32,
    pub size: u32,
}

impl Partition {
    /// An app partition: factory, ota_N or test.
    pub fn is_app(&self) -> bool {
        self.kind == 0
    }
}

/// Parse a partition table starting at `offset`. `None` unless the first entry is a plausible
/// partition (magic, type, 4 KiB-aligned offset, non-zero size, printable label).
pub fn parse(bytes: &[u8], offset: usize) -> Option<Vec<Partition>> {
    let mut out = Vec::new();
    for i in 0..MAX_ENTRIES {
        let at = offset.checked_add(i * ENTRY_LEN)?;
        let Some(e) = bytes.get(at..at.checked_add(ENTRY_LEN)?) else {
            break;
        };
        if e[0] != 0xAA || e[1] != 0x50 {
            break;
        }
        let p = Partition {
            kind: e[2],
            subtype: e[3],
            offset: u32_at(e, 4)?,
            size: u32_at(e, 8)?,
            label: c_string(&e[12..28]),
        };
        let plausible = (p.kind <= 1 || (0x40..=0xFE).contains(&p.kind))
            && p.offset.is_multiple_of(0x1000)
            && p.size != 0
            && p.label.chars().all(|c| c.is_ascii_graphic());
        if !plausible {
            return None;
        }
        out.push(p);
    }
    if out.is_empty() { None } else { Some(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: u8, sub: u8, off: u32, size: u32, label: &str) -> Vec<u8> {
        let mut e = vec![0xAA, 0x50, kind, sub];
        e.extend(off.to_le_bytes());
        e.extend(size.to_le_bytes());
        let mut l = [0u8; 16];
        l[..label.len()].copy_from_slice(label.as_bytes());
        e.extend(l);
        e.extend(0u32.to_le_bytes());
        e
    }

    #[test]
    fn parses_entries_until_the_end_marker() {
        let mut t = entry(1, 2, 0x9000, 0x6000, "nvs");
        t.extend(entry(0, 0, 0x10000, 0x100000, "factory"));
        t.extend([0xFF; 32]);
        let p = parse(&t, 0).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[1].is_app());
        assert_eq!(p[1].label, "factory");
    }

    #[test]
    fn rejects_implausible_entries() {
        assert!(parse(&entry(1, 2, 0x9001, 0x6000, "nvs"), 0).is_none());
        assert!(parse(&[0xAA, 0x50], 0).is_none());
        assert!(parse(&[], usize::MAX).is_none());
    }
}
