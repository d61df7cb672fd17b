//! The two integrity checks a bootloader makes: the one-byte XOR checksum over all segment
//! data (seed 0xEF), stored in the last byte of the 16-byte-aligned padding after the last
//! segment, and the optional SHA-256 of everything before it, appended right after.

/// Seed of the XOR checksum.
pub const CHECKSUM_SEED: u8 = 0xEF;
/// Length of the appended digest.
pub const DIGEST_LEN: usize = 32;

/// XOR of all bytes in `data`, folded into `acc`. Works on 8-byte words for speed.
pub fn xor_into(acc: u8, data: &[u8]) -> u8 {
    let mut chunks = data.chunks_exact(8);
    let mut wide = 0u64;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        wide ^= u64::from_ne_bytes(w);
    }
    let mut out = acc;
    for b in wide.to_ne_bytes() {
        out ^= b;
    }
    for &b in chunks.remainder() {
        out ^= b;
    }
    out
}

/// File offset of the checksum byte for segments ending at `segments_end`: the last byte of
/// the 16-byte block that `segments_end` falls in (there is always at least one byte of
/// padding-or-checksum).
pub fn checksum_offset(segments_end: usize) -> usize {
    segments_end - (segments_end % 16) + 15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_matches_bytewise() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1003).collect();
        let slow = data.iter().fold(CHECKSUM_SEED, |a, b| a ^ b);
        assert_eq!(xor_into(CHECKSUM_SEED, &data), slow);
        assert_eq!(xor_into(CHECKSUM_SEED, &[]), CHECKSUM_SEED);
    }

    #[test]
    fn checksum_sits_at_the_end_of_a_16_byte_block() {
        assert_eq!(checksum_offset(0x20), 0x2F);
        assert_eq!(checksum_offset(0x2F), 0x2F);
        assert_eq!(checksum_offset(0x30), 0x3F);
    }
}
