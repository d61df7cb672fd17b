//! The rollout engine: owns every running rollout, answers the API's rollout calls, and feeds
//! device reports to the targets they belong to.
//!
//! (Interface in place; the runner is being written. Every call fails with a clear message
//! until then.)

use std::net::IpAddr;

use aegis_protocol::Report;

use super::types::{CreateRollout, Plan, Rollout, RolloutSummary};
use crate::{Error, Result};

/// Handle to the rollout engine; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RolloutEngine {}

/// What `create` did: started a rollout, or (dry run) only planned one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Created {
    Started(Rollout),
    DryRun(Plan),
}

fn not_built() -> Error {
    Error::internal("rollouts are not available in this build yet")
}

impl RolloutEngine {
    /// Plans (and unless `dry_run`, starts) a rollout.
    pub async fn create(&self, _req: CreateRollout) -> Result<Created> {
        Err(not_built())
    }

    pub async fn get(&self, _id: &str) -> Result<Rollout> {
        Err(not_built())
    }

    pub async fn list(&self) -> Result<Vec<RolloutSummary>> {
        Err(not_built())
    }

    pub async fn pause(&self, _id: &str) -> Result<RolloutSummary> {
        Err(not_built())
    }

    pub async fn resume(&self, _id: &str) -> Result<RolloutSummary> {
        Err(not_built())
    }

    pub async fn abort(&self, _id: &str) -> Result<RolloutSummary> {
        Err(not_built())
    }

    pub async fn retry_failed(&self, _id: &str) -> Result<RolloutSummary> {
        Err(not_built())
    }

    /// A device's progress report (`POST /api/v1/report` on the device listener). Refused
    /// (NotFound) unless the deployment is in flight on a target whose device matches `peer`.
    pub async fn report(&self, _report: Report, _peer: IpAddr) -> Result<()> {
        Err(not_built())
    }
}
