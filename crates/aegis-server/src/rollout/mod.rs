//! Rollouts: a firmware image deployed to a set of devices under a strategy (parallelism,
//! canary wave, failure threshold, retries, timeout). Planning (selectors, preflight, dry run),
//! running (the per-target state machine), and control (pause, resume, abort, retry-failed).

mod engine;
pub mod plan;
pub mod schedule;
mod types;

pub use engine::{Created, RolloutEngine};

pub use types::{
    CreateRollout, Decision, Phase, Plan, PlannedTarget, Rollout, RolloutState, RolloutSummary,
    Selector, Strategy, Target, TargetSpec, TargetState,
};
