//! Rollout and target records, as stored and as the API returns them (DESIGN.md's shapes).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How a rollout as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Created, not started (only briefly, or a dry run).
    Planned,
    Running,
    /// Stopped starting new targets: by the operator or by the failure threshold.
    Paused,
    /// Every target reached an end state.
    Completed,
    /// Stopped by the operator; unfinished targets were cancelled.
    Aborted,
}

/// Where one device stands in a rollout. The last six are end states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Waiting for its wave / a parallelism slot.
    Pending,
    /// Being deployed; `phase` says where.
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
    TimedOut,
    Skipped,
    Cancelled,
}

impl TargetState {
    pub fn is_final(self) -> bool {
        !matches!(self, TargetState::Pending | TargetState::InProgress)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::InProgress => "in_progress",
            TargetState::Succeeded => "succeeded",
            TargetState::Failed => "failed",
            TargetState::RolledBack => "rolled_back",
            TargetState::TimedOut => "timed_out",
            TargetState::Skipped => "skipped",
            TargetState::Cancelled => "cancelled",
        }
    }

    /// Counts toward the failure threshold.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            TargetState::Failed | TargetState::RolledBack | TargetState::TimedOut
        )
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The step an in-progress target is at (shown with progress bars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Queued,
    Preflight,
    Triggered,
    Downloading,
    Verifying,
    Rebooting,
    Confirming,
    Done,
}

/// How to deploy. Every field has a sane default, so `{}` is a valid strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Strategy {
    /// Devices updating at the same time.
    pub max_parallel: u32,
    /// Devices in the first wave; all must succeed before the rest start (0 = no canary).
    pub canary: u32,
    /// Pause the rollout when failed/rolled-back/timed-out targets exceed this share of the
    /// rollout's devices (those not skipped), in percent (0-100). Failures present when the
    /// operator resumes no longer count.
    pub max_failure_pct: u8,
    /// Extra attempts per device after a retryable failure, with back-off.
    pub retries: u32,
    /// Per-device limit from trigger to confirmation, seconds.
    pub timeout_s: u64,
    /// Permit deploying an older version than a device runs.
    pub allow_downgrade: bool,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            max_parallel: 10,
            canary: 1,
            max_failure_pct: 20,
            retries: 1,
            timeout_s: 300,
            allow_downgrade: false,
        }
    }
}

/// A named set of devices (`all`, `outdated`, `project:P`, `chip:C`, `version:V`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    /// Same project as the firmware, different version.
    Outdated,
    Project(String),
    Chip(String),
    Version(String),
}

impl FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "unknown selector `{s}`: use all, outdated, project:NAME, chip:NAME or version:V"
            )
        };
        match s.split_once(':') {
            None if s == "all" => Ok(Selector::All),
            None if s == "outdated" => Ok(Selector::Outdated),
            Some((k, v)) if !v.is_empty() => match k {
                "project" => Ok(Selector::Project(v.to_string())),
                "chip" => Ok(Selector::Chip(v.to_string())),
                "version" => Ok(Selector::Version(v.to_string())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("all"),
            Selector::Outdated => f.write_str("outdated"),
            Selector::Project(p) => write!(f, "project:{p}"),
            Selector::Chip(c) => write!(f, "chip:{c}"),
            Selector::Version(v) => write!(f, "version:{v}"),
        }
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Which devices: `{"ids": [...]}` or `{"selector": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetSpec {
    Ids(Vec<String>),
    Selector(Selector),
}

/// One device in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub device: String,
    pub state: TargetState,
    pub phase: Phase,
    /// Bytes the device has fetched of the image (served or reported, whichever is larger).
    pub bytes: u64,
    pub total: u64,
    /// Why it failed / was skipped, one sentence.
    pub error: Option<String>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    /// Attempts started so far (1 + retries used).
    pub attempts: u32,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// A rollout without its targets (list views, events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub id: String,
    pub state: RolloutState,
    /// Firmware SHA-256.
    pub firmware: String,
    pub strategy: Strategy,
    /// Why it is paused (threshold, operator), when paused.
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Targets per state name.
    pub counts: BTreeMap<String, u32>,
}

/// A rollout with its targets (`GET /api/v1/rollouts/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    #[serde(flatten)]
    pub summary: RolloutSummary,
    pub targets: Vec<Target>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_print() {
        for s in [
            "all",
            "outdated",
            "project:demo",
            "chip:esp32s3",
            "version:1.2.3",
        ] {
            assert_eq!(s.parse::<Selector>().unwrap().to_string(), s);
        }
        for bad in ["", "some", "project:", "colour:red"] {
            let err = bad.parse::<Selector>().unwrap_err();
            assert!(err.contains("use all, outdated"), "{err}");
        }
    }

    #[test]
    fn target_spec_json_shapes() {
        let ids: TargetSpec = serde_json::from_str(r#"{"ids":["aabbccddeeff"]}"#).unwrap();
        assert_eq!(ids, TargetSpec::Ids(vec!["aabbccddeeff".into()]));
        let sel: TargetSpec = serde_json::from_str(r#"{"selector":"outdated"}"#).unwrap();
        assert_eq!(sel, TargetSpec::Selector(Selector::Outdated));
    }

    #[test]
    fn empty_strategy_takes_defaults_and_unknown_fields_are_refused() {
        let s: Strategy = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Strategy::default());
        assert!(serde_json::from_str::<Strategy>(r#"{"max_paralel":3}"#).is_err());
    }
}

/// `POST /api/v1/rollouts` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    /// Firmware SHA-256 (must be in the library).
    pub firmware: String,
    pub targets: TargetSpec,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub dry_run: bool,
}

/// What a rollout would do, without doing it (`dry_run: true`, and the preflight of every
/// rollout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub firmware: String,
    pub strategy: Strategy,
    pub targets: Vec<PlannedTarget>,
    /// Devices that will get the image.
    pub deploy: u32,
    /// Devices left out, each with its reason.
    pub skip: u32,
    /// Rough wall time for the whole rollout, seconds (see `rollout::plan::estimate`).
    pub estimated_s: u64,
}

/// One device in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTarget {
    pub device: String,
    pub hostname: String,
    pub from_version: String,
    pub to_version: String,
    /// `deploy` or `skip`.
    pub decision: Decision,
    /// Why it is skipped.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Deploy,
    Skip,
}
