//! Bounds-checked little-endian reads from a byte slice. Every read returns `None` past the
//! end instead of panicking, so the parsers can be fed any input.

pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let s = b.get(off..off.checked_add(N)?)?;
    let mut out = [0u8; N];
    out.copy_from_slice(s);
    Some(out)
}

/// A fixed-size C string field: bytes up to the first NUL (or the whole field), decoded
/// lossily so that a corrupt descriptor still prints.
pub(crate) fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Lower-case hex, for digests in reasons and notes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

/// Serde helper: a byte array as a lower-case hex string.
pub(crate) fn serialize_hex<S: serde::Serializer>(
    bytes: &[u8; 32],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}

pub(crate) fn align_up(n: usize, to: usize) -> Option<usize> {
    let rem = n % to;
    if rem == 0 {
        Some(n)
    } else {
        n.checked_add(to - rem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let b = [1u8, 2, 3];
        assert_eq!(u16_at(&b, 1), Some(0x0302));
        assert_eq!(u16_at(&b, 2), None);
        assert_eq!(u32_at(&b, 0), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
        assert_eq!(array_at::<2>(&b, usize::MAX - 1), None);
    }

    #[test]
    fn c_strings() {
        assert_eq!(c_string(b"abc\0def"), "abc");
        assert_eq!(c_string(b"abc"), "abc");
        assert_eq!(c_string(b"\0"), "");
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
