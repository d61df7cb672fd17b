//! Secure Boot v2 signature blocks. A signed image is padded to a 4 KiB boundary and followed
//! by one 4 KiB signature sector holding up to three 1216-byte blocks: magic 0xE7, version
//! (0x02 RSA-3072-PSS, 0x03 ECDSA), the SHA of the image, key material and signature, and a
//! CRC32 of the first 1196 bytes. We find and describe the blocks; we do not verify the
//! signatures (that needs the device's trusted key digests).

use serde::Serialize;

use crate::read::{u8_at, u32_at};

pub const SECTOR_SIZE: usize = 4096;
pub const BLOCK_SIZE: usize = 1216;
pub const MAX_BLOCKS: usize = 3;
const MAGIC: u8 = 0xE7;
const VERSION_RSA: u8 = 0x02;
const VERSION_ECDSA: u8 = 0x03;
const CRC_COVERS: usize = 1196;

/// The signature sector found after an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureBlocks {
    /// File offset of the 4 KiB signature sector.
    pub offset: u64,
    /// Number of well-formed blocks (magic, version and CRC32 correct).
    pub count: usize,
    pub blocks: Vec<SignatureBlock>,
}

/// One signature block. The signature itself is not verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureBlock {
    pub index: usize,
    /// "RSA-3072", "ECDSA-P192", "ECDSA-P256", "ECDSA-P384" or "ECDSA".
    pub kind: &'static str,
    pub crc_valid: bool,
    /// Whether the image digest recorded in the block equals the SHA-256 of the file up to
    /// the signature sector (`None` for SHA-384 blocks, which we do not compute).
    pub digest_matches: Option<bool>,
}

/// Look for a signature sector at `offset`. `image_sha256` is the SHA-256 of
/// `bytes[..offset]`, computed by the caller only if a sector is there (see [`looks_signed`]).
pub fn parse_sector(
    bytes: &[u8],
    offset: usize,
    image_sha256: &[u8; 32],
) -> Option<SignatureBlocks> {
    let sector = bytes.get(offset..offset.checked_add(SECTOR_SIZE)?)?;
    let mut blocks = Vec::new();
    for index in 0..MAX_BLOCKS {
        let at = index * BLOCK_SIZE;
        let Some(b) = sector.get(at..at + BLOCK_SIZE) else {
            break;
        };
        let version = u8_at(b, 1)?;
        if b[0] != MAGIC || !matches!(version, VERSION_RSA | VERSION_ECDSA) {
            break;
        }
        let crc_valid = u32_at(b, CRC_COVERS) == Some(crc32(&b[..CRC_COVERS]));
        let (kind, digest) = if version == VERSION_RSA {
            ("RSA-3072", b.get(4..36))
        } else {
            // ECDSA: byte 2 is the SHA version (0 = SHA-256, 1 = SHA-384), then the digest,
            // then the curve id (1 P-192, 2 P-256, 3 P-384).
            let sha384 = b[2] == 1;
            let (digest_len, curve_at) = if sha384 { (48, 52) } else { (32, 36) };
            let kind = match b.get(curve_at) {
                Some(1) => "ECDSA-P192",
                Some(2) => "ECDSA-P256",
                Some(3) => "ECDSA-P384",
                _ => "ECDSA",
            };
            (kind, if digest_len == 32 { b.get(4..36) } else { None })
        };
        blocks.push(SignatureBlock {
            index,
            kind,
            crc_valid,
            digest_matches: digest.map(|d| d == image_sha256),
        });
    }
    if blocks.is_empty() {
        return None;
    }
    Some(SignatureBlocks {
        offset: offset as u64,
        count: blocks.iter().filter(|b| b.crc_valid).count(),
        blocks,
    })
}

/// Whether a signature sector seems to start at `offset` (cheap check before hashing).
pub fn looks_signed(bytes: &[u8], offset: usize) -> bool {
    bytes.len() >= offset.saturating_add(SECTOR_SIZE)
        && bytes.get(offset) == Some(&MAGIC)
        && matches!(bytes.get(offset + 1), Some(&VERSION_RSA | &VERSION_ECDSA))
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn block(version: u8, digest: &[u8; 32]) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE];
        b[0] = MAGIC;
        b[1] = version;
        b[4..36].copy_from_slice(digest);
        if version == VERSION_ECDSA {
            b[36] = 2;
        }
        let crc = crc32(&b[..CRC_COVERS]);
        b[CRC_COVERS..CRC_COVERS + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn finds_rsa_and_ecdsa_blocks() {
        let digest = [7u8; 32];
        let mut sector = block(VERSION_RSA, &digest);
        sector.extend(block(VERSION_ECDSA, &[0u8; 32]));
        sector.resize(SECTOR_SIZE, 0xFF);
        let mut file = vec![0u8; SECTOR_SIZE];
        file.extend(&sector);
        assert!(looks_signed(&file, SECTOR_SIZE));
        let s = parse_sector(&file, SECTOR_SIZE, &digest).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.blocks[0].kind, "RSA-3072");
        assert_eq!(s.blocks[0].digest_matches, Some(true));
        assert_eq!(s.blocks[1].kind, "ECDSA-P256");
        assert_eq!(s.blocks[1].digest_matches, Some(false));
    }

    #[test]
    fn bad_crc_is_reported_not_counted() {
        let mut sector = block(VERSION_RSA, &[0; 32]);
        sector[100] ^= 1;
        sector.resize(SECTOR_SIZE, 0xFF);
        let s = parse_sector(&sector, 0, &[0; 32]).unwrap();
        assert_eq!(s.count, 0);
        assert!(!s.blocks[0].crc_valid);
    }
}
