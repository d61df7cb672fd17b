//! Rollouts: a firmware image deployed to a set of devices under a strategy (parallelism,
//! canary wave, failure threshold, retries, timeout). Planning (selectors, preflight, dry run),
//! running (the per-target state machine), and control (pause, resume, abort, retry-failed).

mod attempt;
mod client;
mod engine;
pub mod plan;
pub mod schedule;
mod types;
mod urls;

pub use attempt::{AttemptEnv, AttemptSpec, Outcome, Progress, Signal};
pub use client::{DeviceClient, HttpDeviceClient, TriggerReply, Unreachable};
pub use engine::{Created, EngineDeps, RolloutEngine};
pub use urls::DeviceUrls;

pub use types::{
    CreateRollout, Decision, Phase, Plan, PlannedTarget, Rollout, RolloutState, RolloutSummary,
    Selector, Strategy, Target, TargetSpec, TargetState,
};
