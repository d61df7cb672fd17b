//! The `Range` request header, as the firmware endpoint answers it (RFC 9110 section 14).
//!
//! Decisions: one byte range (`bytes=N-`, `bytes=N-M`, `bytes=-N`) is served as 206, with an
//! end past the last byte clamped; a syntactically valid range that starts at or past the end
//! (or a zero-length suffix) is 416. Everything else — several ranges, another unit, garbage,
//! `N-M` with M < N — is ignored and the whole file is sent with 200, as RFC 9110 allows: a
//! device that sent it then sees a 200 and starts over, and the SHA-256 check still protects it.

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file (no Range, or one we ignore): 200.
    Full,
    /// Bytes `start..=end` (inclusive, already clamped): 206.
    Partial { start: u64, end: u64 },
    /// A valid range that selects no byte of the file: 416.
    Unsatisfiable,
}

/// Decides how to answer a `Range` header value for a file of `size` bytes.
pub fn resolve(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(value) = header else {
        return RangeRequest::Full;
    };
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    match (number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        // bytes=N-
        (Some(start), None) if last.is_empty() => partial(start, u64::MAX, size),
        // bytes=N-M
        (Some(start), Some(end)) if end >= start => partial(start, end, size),
        _ => RangeRequest::Full,
    }
}

fn partial(start: u64, end: u64, size: u64) -> RangeRequest {
    if start >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial {
            start,
            end: end.min(size - 1),
        }
    }
}

/// A non-empty run of ASCII digits that fits in u64.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    #[test]
    fn single_ranges_are_clamped_and_checked() {
        let r = |h: &str| resolve(Some(h), 1000);
        assert_eq!(resolve(None, 1000), Full);
        assert_eq!(r("bytes=0-"), Partial { start: 0, end: 999 });
        assert_eq!(
            r("bytes=100-199"),
            Partial {
                start: 100,
                end: 199
            }
        );
        assert_eq!(
            r("bytes=100-"),
            Partial {
                start: 100,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=900-5000"),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=-500"),
            Partial {
                start: 500,
                end: 999
            }
        );
        assert_eq!(r("bytes=-5000"), Partial { start: 0, end: 999 });
        assert_eq!(r("Bytes = 5-5"), Partial { start: 5, end: 5 });
        assert_eq!(r("bytes=1000-"), Unsatisfiable);
        assert_eq!(r("bytes=1001-2000"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
    }

    #[test]
    fn anything_else_is_ignored() {
        for h in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=abc",
            "bytes=5-1",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "garbage",
        ] {
            assert_eq!(resolve(Some(h), 1000), Full, "{h}");
        }
    }
}
