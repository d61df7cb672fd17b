//! Version ordering for the anti-downgrade rule.
//!
//! App versions come from `esp_app_desc_t.version`, which ESP-IDF fills from `PROJECT_VER` or,
//! by default, from `git describe` (`v1.2.3`, `v1.2.3-4-gabc1234`, `v1.2.3-dirty`). The grammar
//! understood here, in order:
//!
//! 1. an optional leading `v` or `V`;
//! 2. one or more numeric components separated by `.` (`1`, `1.2`, `1.2.3.4`); missing trailing
//!    components count as 0, so `v2` = `2.0` = `2.0.0`;
//! 3. an optional `+build` suffix, ignored;
//! 4. an optional `-dirty` suffix, ignored;
//! 5. an optional `git describe` suffix `-N-g<hex>`: N commits after the tag, ordered after
//!    the tag itself and by N;
//! 6. an optional `-pre.release` part (dot-separated identifiers of `0-9A-Za-z-`), which orders
//!    before the same version without it, compared as in Semantic Versioning 2.0.0.
//!
//! A version that does not follow this grammar (including the empty string) is not
//! comparable, and an incomparable pair is never a downgrade: the device cannot order it, so it
//! leaves the decision to the operator who signed the trigger.

use std::cmp::Ordering;

/// A parsed, comparable version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    core: Vec<u64>,
    pre: Vec<Ident>,
    distance: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Numeric(u64),
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Numeric(a), Ident::Numeric(b)) => a.cmp(b),
            (Ident::Numeric(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Numeric(_)) => Ordering::Greater,
            (Ident::Alpha(a), Ident::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Splits a trailing `-N-g<hex>` (git describe) off `s`.
fn split_git_describe(s: &str) -> (&str, Option<u64>) {
    let Some((rest, hash)) = s.rsplit_once('-') else {
        return (s, None);
    };
    let is_hash = hash
        .strip_prefix('g')
        .is_some_and(|h| h.len() >= 4 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !is_hash {
        return (s, None);
    }
    let Some((base, n)) = rest.rsplit_once('-') else {
        return (s, None);
    };
    match n.parse::<u64>() {
        Ok(distance) if all_digits(n) => (base, Some(distance)),
        _ => (s, None),
    }
}

impl Version {
    /// Parses a version; `None` when it does not follow the grammar in the module docs.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split_once('+').map_or(s, |(v, _build)| v);
        let s = s.strip_suffix("-dirty").unwrap_or(s);
        let (s, distance) = split_git_describe(s);
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (s, None),
        };
        let core = core
            .split('.')
            .map(|c| {
                if all_digits(c) {
                    c.parse::<u64>().ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u64>>>()?;
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| {
                    if all_digits(id) {
                        id.parse::<u64>().ok().map(Ident::Numeric)
                    } else if !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        Some(Ident::Alpha(id.to_owned()))
                    } else {
                        None
                    }
                })
                .collect::<Option<Vec<Ident>>>()?,
        };
        Some(Version {
            core,
            pre,
            distance: distance.unwrap_or(0),
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let width = self.core.len().max(other.core.len());
        let component = |v: &Version, i: usize| v.core.get(i).copied().unwrap_or(0);
        for i in 0..width {
            match component(self, i).cmp(&component(other, i)) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        let pre = match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&other.pre),
        };
        pre.then(self.distance.cmp(&other.distance))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Orders two version strings; `None` when either is not comparable.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    Some(Version::parse(a)?.cmp(&Version::parse(b)?))
}

/// Whether installing `offered` over `running` is a downgrade: `offered` is strictly older.
/// Equal versions (a re-install) and incomparable versions are not downgrades.
pub fn is_downgrade(running: &str, offered: &str) -> bool {
    compare_versions(offered, running) == Some(Ordering::Less)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn orders() {
        let cases = [
            ("1.2.3", "1.2.4", Less),
            ("1.10.0", "1.9.9", Greater),
            ("v2", "2.0.0", Equal),
            ("V1.0", "1.0.0+build.7", Equal),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-rc.1", "1.0.0-beta", Greater),
            ("v1.2.3-4-gabc1234", "v1.2.3", Greater),
            ("v1.2.3-4-gabc1234", "v1.2.3-12-g0123abc", Less),
            ("v1.2.3-4-gabc1234", "v1.2.4", Less),
            ("v1.2.3-4-gabc1234-dirty", "v1.2.3-4-gffff", Equal),
            ("v1.2.3-dirty", "v1.2.3", Equal),
            ("2.0.0-rc.1-3-gdeadbee", "2.0.0-rc.1", Greater),
            ("2.0.0-rc.1-3-gdeadbee", "2.0.0", Less),
            ("1.2.3.4", "1.2.3", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), Some(want), "{a} vs {b}");
            assert_eq!(compare_versions(b, a), Some(want.reverse()), "{b} vs {a}");
        }
    }

    #[test]
    fn incomparable() {
        for v in [
            "",
            "v",
            "abc",
            "1..2",
            "1.2.",
            "1.x",
            "-1",
            "1.0.0-",
            "1.0.0-a..b",
            "1.0 ",
            "１.0",
        ] {
            assert_eq!(Version::parse(v), None, "{v:?}");
            assert!(!is_downgrade(v, "1.0.0"));
            assert!(!is_downgrade("1.0.0", v));
        }
        assert_eq!(Version::parse("99999999999999999999999"), None);
    }

    #[test]
    fn downgrade_rule() {
        assert!(is_downgrade("2.0.0", "1.9.9"));
        assert!(!is_downgrade("2.0.0", "2.0.0"));
        assert!(!is_downgrade("2.0.0", "2.0.1"));
        assert!(is_downgrade("2.0.0", "2.0.0-rc.1"));
    }
}
