//! Property tests standing in for a fuzzer (no nightly toolchain for cargo-fuzz): random
//! bytes, random headers, and mutations of real and built images (bit flips, truncations,
//! splices, rewritten segment counts and lengths). `inspect()` must never panic, and what it
//! returns must be self-consistent. Cases default to proptest's 256 per property; raise them
//! with PROPTEST_CASES=100000 for a longer run.

use std::sync::OnceLock;

use aegis_image::{Chip, ImageBuilder, Inspection, Kind, inspect};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use crate::support::corpus_files;

/// Seeds for mutation: the smaller corpus files (keeps debug-build runs quick) and builder
/// images for a few chips.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut s: Vec<Vec<u8>> = corpus_files()
            .into_iter()
            .map(|(_, b)| b)
            .filter(|b| b.len() <= 140_000)
            .collect();
        for chip in [Chip::Esp32, Chip::Esp32c6, Chip::Esp32p4] {
            s.push(ImageBuilder::new(chip).size(8192).build().unwrap());
        }
        s
    })
}

fn check(bytes: &[u8], ins: &Inspection) {
    assert_eq!(ins.size, bytes.len() as u64);
    assert_eq!(ins.sha256, <[u8; 32]>::from(Sha256::digest(bytes)));
    assert_eq!(ins.valid, ins.reason.is_none(), "{:?}", ins.reason);
    if let Some(r) = &ins.reason {
        assert!(!r.is_empty());
    }
    if ins.valid {
        assert_eq!(ins.kind, Kind::App);
        assert!(ins.chip.is_some());
        assert_eq!(ins.checksum_valid, Some(true));
        assert_ne!(ins.digest_valid, Some(false));
        assert!(!ins.segments.is_empty() && ins.segments.len() <= 16);
        for s in &ins.segments {
            assert!(s.data_offset + u64::from(s.length) <= ins.size);
            assert_eq!(s.length % 4, 0);
        }
    }
    if let Some(chip) = ins.chip {
        assert_eq!(ins.chip_id, Some(chip.id()));
    }
    // The JSON form never fails either.
    serde_json::to_string(ins).unwrap();
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    Truncate { at: usize },
    Splice { from: usize, to: usize, len: usize },
    SegmentCount(u8),
    SegmentLength { segment: usize, len: u32 },
    Byte { at: usize, value: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), any::<usize>(), 0usize..4096)
            .prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
        1 => any::<u8>().prop_map(Mutation::SegmentCount),
        2 => (0usize..8, prop_oneof![any::<u32>(), 0u32..0x10000])
            .prop_map(|(segment, len)| Mutation::SegmentLength { segment, len }),
        2 => (0usize..64, any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *m {
        Mutation::FlipBit { at, bit } => bytes[at % n] ^= 1 << bit,
        Mutation::Truncate { at } => bytes.truncate(at % n),
        Mutation::Splice { from, to, len } => {
            let (from, to) = (from % n, to % n);
            let len = len.min(n - from).min(n - to);
            let chunk = bytes[from..from + len].to_vec();
            bytes[to..to + len].copy_from_slice(&chunk);
        }
        Mutation::SegmentCount(c) if n > 1 => bytes[1] = c,
        Mutation::SegmentLength { segment, len } => {
            // Walk to the segment header the way the format does, then rewrite its length.
            let mut pos = 24usize;
            for _ in 0..segment {
                let Some(l) = bytes.get(pos + 4..pos + 8) else {
                    return;
                };
                let l = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                pos = pos.saturating_add(8).saturating_add(l);
            }
            if let Some(field) = bytes.get_mut(pos + 4..pos + 8) {
                field.copy_from_slice(&len.to_le_bytes());
            }
        }
        Mutation::Byte { at, value } if at < n => bytes[at] = value,
        _ => {}
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes, &inspect(&bytes));
    }

    #[test]
    fn random_images_with_plausible_headers_never_panic(
        chip in proptest::sample::select(Chip::ALL),
        count in 0u8..20,
        hash in 0u8..2,
        body in proptest::collection::vec(any::<u8>(), 0..8192),
    ) {
        let mut bytes = vec![0xE9, count, 2, 0x20, 0, 0, 0x08, 0x40, 0xEE, 0, 0, 0];
        bytes.extend(chip.id().to_le_bytes());
        bytes.extend([0; 9]);
        bytes.push(hash);
        bytes.extend(body);
        check(&bytes, &inspect(&bytes));
    }

    #[test]
    fn mutated_real_and_built_images_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check(&bytes, &inspect(&bytes));
    }
}
