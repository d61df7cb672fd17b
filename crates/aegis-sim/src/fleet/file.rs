//! The fleet file (`aegis sim --fleet fleet.toml`): a mixed fleet as groups of identical
//! devices.
//!
//! ```toml
//! # Optional, for the whole fleet (command-line flags win over these):
//! faults = "busy:frac=0.05"      # rules over the whole fleet (dev=N counts fleet-wide)
//!
//! [[group]]
//! count = 40
//! project = "thermostat"
//! version = "1.4.2"
//! chip = "esp32c3"
//!
//! [[group]]
//! count = 10
//! project = "doorbell"
//! version = "0.9.0"
//! chip = "esp32s3"
//! secure_version = 1
//! faults = "drop@50%:frac=0.2"   # rules within the group (dev=1 is the group's first device)
//! bandwidth = "50KiB/s"           # or "unlimited"
//! slot_size = "2MiB"
//! ```

use serde::Deserialize;

use super::{FleetError, GroupConfig};
use crate::faults::{self, FaultSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    faults: Option<String>,
    #[serde(default)]
    group: Vec<GroupToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupToml {
    count: u32,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    chip: Option<String>,
    #[serde(default)]
    secure_version: Option<u32>,
    #[serde(default)]
    faults: Option<String>,
    #[serde(default)]
    bandwidth: Option<String>,
    #[serde(default)]
    slot_size: Option<String>,
}

/// A parsed fleet file: its groups, and its fleet-wide fault rules.
#[derive(Debug, Clone)]
pub struct FleetFile {
    /// The groups, in file order (device numbers follow this order).
    pub groups: Vec<GroupConfig>,
    /// Rules over the whole fleet.
    pub faults: FaultSpec,
}

impl FleetFile {
    /// Parses a fleet file; `defaults` supplies what a group leaves out (project, version,
    /// chip, slot size). `name` is only used in error messages.
    pub fn parse(text: &str, name: &str, defaults: &GroupConfig) -> Result<Self, FleetError> {
        let bad = |reason: String| FleetError::FleetFile {
            file: name.to_string(),
            reason,
        };
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            match line {
                Some(l) => bad(format!("line {l}: {}", e.message())),
                None => bad(e.message().to_string()),
            }
        })?;
        if file.group.is_empty() {
            return Err(bad(
                "it has no [[group]] table: add one with at least `count = N`".to_string(),
            ));
        }
        let faults = match &file.faults {
            Some(s) => s
                .parse()
                .map_err(|e: faults::FaultSpecError| bad(e.to_string()))?,
            None => FaultSpec::default(),
        };
        let mut groups = Vec::with_capacity(file.group.len());
        for (i, g) in file.group.into_iter().enumerate() {
            let n = i + 1;
            let in_group = |what: &str, reason: String| bad(format!("group {n}, {what}: {reason}"));
            if g.count == 0 {
                return Err(in_group("count", "it must be at least 1".to_string()));
            }
            let mut group = defaults.clone();
            group.count = g.count;
            if let Some(p) = g.project {
                group.project = p;
            }
            if let Some(v) = g.version {
                group.version = v;
            }
            if let Some(c) = g.chip {
                group.chip = c
                    .parse()
                    .map_err(|e: aegis_image::UnknownChip| in_group("chip", e.to_string()))?;
            }
            if let Some(s) = g.secure_version {
                group.secure_version = s;
            }
            if let Some(f) = g.faults {
                group.faults = f
                    .parse()
                    .map_err(|e: faults::FaultSpecError| in_group("faults", e.to_string()))?;
            }
            if let Some(b) = g.bandwidth {
                group.bandwidth = Some(parse_bandwidth(&b).map_err(|e| in_group("bandwidth", e))?);
            }
            if let Some(s) = g.slot_size {
                group.slot_size = parse_slot_size(&s).map_err(|e| in_group("slot_size", e))?;
            }
            groups.push(group);
        }
        Ok(Self { groups, faults })
    }
}

/// Parses a bandwidth: `unlimited`, or a rate like `200KiB/s` (`None` is unlimited).
pub fn parse_bandwidth(s: &str) -> Result<Option<u64>, String> {
    if s.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    faults::parse_rate(s).map(Some)
}

/// Parses an OTA slot size: bytes with an optional unit, a multiple of 4 KiB, at least 64 KiB.
pub fn parse_slot_size(s: &str) -> Result<u64, String> {
    let n = faults::parse_size(s)
        .ok_or_else(|| format!("`{s}` is not a size: use bytes like 1536KiB or 2MiB"))?;
    if n < 64 * 1024 || n % 4096 != 0 {
        return Err(format!(
            "`{s}` is not a usable slot size: it must be a multiple of 4 KiB and at least 64 KiB"
        ));
    }
    Ok(n)
}

/// Parses a duration like `2.5s`, `800ms`, `1m 30s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}): use e.g. 2.5s, 800ms or 1m"))
}
