//! Scheduling: given where every target stands, decide what a rollout does next — start which
//! pending targets, pause on the failure threshold or a failed canary, or finish. Pure and
//! deterministic, so the rules are tested exhaustively without devices or time.

use super::types::{Strategy, Target, TargetState};
use crate::time::Timestamp;

/// A target as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub state: TargetState,
    /// A retry waits until then.
    pub not_before: Option<Timestamp>,
}

impl From<&Target> for Slot {
    fn from(t: &Target) -> Self {
        Slot {
            state: t.state,
            not_before: None,
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start these targets (indices), possibly none; wake again at `wake_at` if set (a retry
    /// becomes due).
    Run {
        start: Vec<usize>,
        wake_at: Option<Timestamp>,
    },
    /// Stop starting targets; the reason is shown to the operator.
    Pause(String),
    /// Every target has reached an end state.
    Complete,
}

/// Decides the next step. Targets are in rollout order; the first `strategy.canary` of those
/// that deploy (not skipped) form the canary wave. `acknowledged` failures (those present when
/// the operator resumed a paused rollout) no longer count toward pausing.
pub fn decide(
    targets: &[Slot],
    strategy: &Strategy,
    acknowledged: usize,
    now: Timestamp,
) -> Decision {
    if targets.iter().all(|t| t.state.is_final()) {
        return Decision::Complete;
    }

    let deployable: Vec<usize> = (0..targets.len())
        .filter(|&i| targets[i].state != TargetState::Skipped)
        .collect();
    let canary: &[usize] = &deployable[..(strategy.canary as usize).min(deployable.len())];

    // A canary that ended badly stops everything else.
    let canary_failures = canary
        .iter()
        .filter(|&&i| targets[i].state.is_failure())
        .count();
    if canary_failures > acknowledged
        && let Some(&bad) = canary.iter().find(|&&i| targets[i].state.is_failure())
    {
        return Decision::Pause(format!(
            "a canary device ended {}: the rest of the fleet was not touched",
            targets[bad].state
        ));
    }

    let failures = targets.iter().filter(|t| t.state.is_failure()).count();
    if threshold_exceeded(
        failures.saturating_sub(acknowledged),
        deployable.len(),
        strategy.max_failure_pct,
    ) {
        return Decision::Pause(format!(
            "{failures} of {} devices failed, more than the allowed {}%",
            deployable.len(),
            strategy.max_failure_pct
        ));
    }

    let running = targets
        .iter()
        .filter(|t| t.state == TargetState::InProgress)
        .count();
    let mut free = (strategy.max_parallel as usize).saturating_sub(running);
    // Failed canaries have paused the rollout above unless the operator resumed it.
    let canary_done = canary.iter().all(|&i| targets[i].state.is_final());
    let eligible: &[usize] = if canary_done { &deployable } else { canary };

    let mut start = Vec::new();
    let mut wake_at: Option<Timestamp> = None;
    for &i in eligible {
        if free == 0 {
            break;
        }
        let t = targets[i];
        if t.state != TargetState::Pending {
            continue;
        }
        match t.not_before {
            Some(at) if at > now => {
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            _ => {
                start.push(i);
                free -= 1;
            }
        }
    }
    Decision::Run { start, wake_at }
}

/// More than `pct` percent of the deployable targets failed.
pub fn threshold_exceeded(failures: usize, deployable: usize, pct: u8) -> bool {
    deployable > 0 && failures * 100 > usize::from(pct) * deployable
}

/// Back-off before retry number `attempt` (1 = first retry): 5 s, 10 s, 20 s, ... capped at 2 min.
pub fn backoff(attempt: u32) -> std::time::Duration {
    let secs = 5u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(5));
    std::time::Duration::from_secs(secs.min(120))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetState::*;

    fn slots(states: &[TargetState]) -> Vec<Slot> {
        states
            .iter()
            .map(|&state| Slot {
                state,
                not_before: None,
            })
            .collect()
    }

    fn strategy(max_parallel: u32, canary: u32, pct: u8) -> Strategy {
        Strategy {
            max_parallel,
            canary,
            max_failure_pct: pct,
            ..Strategy::default()
        }
    }

    const NOW: Timestamp = Timestamp(1_000);

    #[test]
    fn canary_goes_first_and_alone() {
        let t = slots(&[Pending; 6]);
        assert_eq!(
            decide(&t, &strategy(4, 2, 50), 0, NOW),
            Decision::Run {
                start: vec![0, 1],
                wake_at: None
            }
        );
        // Canary running: nothing else starts.
        let t = slots(&[InProgress, Succeeded, Pending, Pending, Pending, Pending]);
        assert_eq!(
            decide(&t, &strategy(4, 2, 50), 0, NOW),
            Decision::Run {
                start: vec![],
                wake_at: None
            }
        );
        // Canary succeeded: fill up to max_parallel.
        let t = slots(&[Succeeded, Succeeded, Pending, Pending, Pending, Pending]);
        assert_eq!(
            decide(&t, &strategy(3, 2, 50), 0, NOW),
            Decision::Run {
                start: vec![2, 3, 4],
                wake_at: None
            }
        );
    }

    #[test]
    fn skipped_devices_are_not_canaries() {
        let t = slots(&[Skipped, Pending, Pending]);
        assert_eq!(
            decide(&t, &strategy(5, 1, 50), 0, NOW),
            Decision::Run {
                start: vec![1],
                wake_at: None
            }
        );
    }

    #[test]
    fn failed_canary_pauses() {
        let t = slots(&[RolledBack, Pending, Pending]);
        match decide(&t, &strategy(5, 1, 100), 0, NOW) {
            Decision::Pause(reason) => assert!(reason.contains("rolled_back"), "{reason}"),
            other => panic!("expected a pause, got {other:?}"),
        }
    }

    #[test]
    fn parallelism_is_respected() {
        let t = slots(&[InProgress, InProgress, Pending, Pending]);
        assert_eq!(
            decide(&t, &strategy(3, 0, 100), 0, NOW),
            Decision::Run {
                start: vec![2],
                wake_at: None
            }
        );
    }

    #[test]
    fn threshold_pauses_only_when_exceeded() {
        // 1 of 10 failed = 10%: allowed at 10%, not at 9%.
        let mut states = vec![Pending; 10];
        states[0] = Failed;
        let t = slots(&states);
        assert!(matches!(
            decide(&t, &strategy(2, 0, 10), 0, NOW),
            Decision::Run { .. }
        ));
        assert!(matches!(
            decide(&t, &strategy(2, 0, 9), 0, NOW),
            Decision::Pause(_)
        ));
        assert!(threshold_exceeded(3, 10, 20));
        assert!(!threshold_exceeded(2, 10, 20));
        assert!(!threshold_exceeded(0, 0, 0));
    }

    #[test]
    fn retries_wait_for_their_time() {
        let mut t = slots(&[Pending, Pending]);
        t[0].not_before = Some(Timestamp(5_000));
        assert_eq!(
            decide(&t, &strategy(2, 0, 100), 0, NOW),
            Decision::Run {
                start: vec![1],
                wake_at: Some(Timestamp(5_000))
            }
        );
        assert_eq!(
            decide(&t, &strategy(2, 0, 100), 0, Timestamp(5_000)),
            Decision::Run {
                start: vec![0, 1],
                wake_at: None
            }
        );
    }

    #[test]
    fn resume_acknowledges_existing_failures() {
        let t = slots(&[RolledBack, Pending, Pending]);
        assert_eq!(
            decide(&t, &strategy(5, 1, 0), 1, NOW),
            Decision::Run {
                start: vec![1, 2],
                wake_at: None
            }
        );
        // A new failure after resuming pauses again.
        let t = slots(&[RolledBack, Failed, Pending]);
        assert!(matches!(
            decide(&t, &strategy(5, 1, 0), 1, NOW),
            Decision::Pause(_)
        ));
    }

    #[test]
    fn all_final_is_complete() {
        let t = slots(&[Succeeded, Skipped, Failed, Cancelled, TimedOut]);
        assert_eq!(decide(&t, &strategy(1, 1, 0), 0, NOW), Decision::Complete);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1).as_secs(), 5);
        assert_eq!(backoff(2).as_secs(), 10);
        assert_eq!(backoff(3).as_secs(), 20);
        assert_eq!(backoff(30).as_secs(), 120);
    }
}
