//! Following one rollout to its end, shared by `aegis deploy --wait` and
//! `aegis rollouts ID --watch`: applies the server's events (`rollout_updated`,
//! `target_updated`) to a local copy, re-reads `GET rollouts/{id}` after a `resync`, a
//! reconnect or a quiet spell, shows progress (indicatif bars at a terminal, one line per
//! finished device elsewhere), and decides the exit code. Ctrl-C detaches; the rollout goes on.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aegis_server::rollout::{Rollout, RolloutState, RolloutSummary, Target, TargetState};
use futures_util::FutureExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::client::{Client, Events};
use crate::exit::{CodedError, Exit};
use crate::output::Ui;

/// Re-read the rollout when no event arrived for this long (a safety net, not the mechanism).
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Reconnection attempts after the event stream breaks before giving up.
const RECONNECTS: u32 = 5;

/// How following ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The rollout completed or was aborted.
    Finished,
    /// Paused by its failure threshold or a failed canary (waiting for the operator).
    Paused,
    /// Ctrl-C: the CLI let go; the rollout continues on the server.
    Detached,
}

/// The JSON summary `--wait --json` prints: the rollout as `GET rollouts/{id}` returns it,
/// plus how following ended and the exit code.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    #[serde(flatten)]
    pub rollout: &'a Rollout,
    /// `succeeded`, `failed`, `paused` or `detached`.
    pub result: &'static str,
    pub exit_code: u8,
}

/// The exit code for how a followed rollout ended.
pub fn exit_for(r: &Rollout, ending: Ending) -> Exit {
    match ending {
        Ending::Detached => Exit::Interrupted,
        Ending::Paused => Exit::Paused,
        Ending::Finished => {
            let all_good = r
                .targets
                .iter()
                .all(|t| matches!(t.state, TargetState::Succeeded | TargetState::Skipped));
            if all_good && r.summary.state == RolloutState::Completed {
                Exit::Success
            } else {
                Exit::Failure
            }
        }
    }
}

pub fn result_name(exit: Exit) -> &'static str {
    match exit {
        Exit::Success => "succeeded",
        Exit::Paused => "paused",
        Exit::Interrupted => "detached",
        _ => "failed",
    }
}

/// Paused by the threshold or a canary, not by a person (an operator pause is waited out).
fn paused_by_threshold(s: &RolloutSummary) -> bool {
    s.state == RolloutState::Paused
        && !s
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("by the operator"))
}

fn ending_of(s: &RolloutSummary) -> Option<Ending> {
    match s.state {
        RolloutState::Completed | RolloutState::Aborted => Some(Ending::Finished),
        RolloutState::Paused if paused_by_threshold(s) => Some(Ending::Paused),
        _ => None,
    }
}

/// Follows rollout `id` until it ends; `events` must have been opened before the rollout was
/// read or created, so no change is missed. Returns the final rollout as the server has it.
pub async fn follow(
    client: &Client,
    id: &str,
    mut events: Events,
    ui: Ui,
) -> anyhow::Result<(Rollout, Ending)> {
    // Polled once now, so the Ctrl-C handler is in place before we say Ctrl-C detaches.
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    if (&mut ctrl_c).now_or_never().is_some() {
        return Err(CodedError::new(
            Exit::Interrupted,
            "interrupted before following the rollout",
        )
        .into());
    }
    eprintln!("following rollout {id}; Ctrl-C detaches (the rollout goes on)");
    let path = format!("rollouts/{id}");
    let mut r: Rollout = client.get(&path).await?;
    let mut view = View::new(ui, &r);
    let mut operator_paused_told = false;
    loop {
        view.update(&r);
        if let Some(ending) = ending_of(&r.summary) {
            // The authoritative final state (counts included).
            r = client.get(&path).await?;
            view.finish(&r);
            return Ok((r, ending));
        }
        if r.summary.state == RolloutState::Paused && !operator_paused_told {
            operator_paused_told = true;
            view.say(&format!(
                "rollout {id} was paused by the operator; waiting (continue it with `aegis rollouts resume {id}`)"
            ));
        } else if r.summary.state != RolloutState::Paused {
            operator_paused_told = false;
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                view.finish(&r);
                eprintln!(
                    "detached from rollout {id}: it keeps running on the server; follow it with \
                     `aegis rollouts {id} --watch`, stop it with `aegis rollouts abort {id}`"
                );
                return Ok((r, Ending::Detached));
            }
            msg = events.next() => match msg {
                Ok(Some(m)) => match m.event.as_str() {
                    "target_updated" => {
                        if let Ok(u) = serde_json::from_str::<TargetUpdate>(&m.data)
                            && u.rollout == id
                        {
                            apply_target(&mut r, u.target);
                        }
                    }
                    "rollout_updated" => {
                        if let Ok(s) = serde_json::from_str::<RolloutSummary>(&m.data)
                            && s.id == id
                        {
                            r.summary = s;
                        }
                    }
                    "resync" => r = client.get(&path).await?,
                    _ => {}
                },
                Ok(None) | Err(_) => {
                    events = reconnect(client, &mut view).await?;
                    r = client.get(&path).await?;
                }
            },
            () = tokio::time::sleep(POLL_EVERY) => r = client.get(&path).await?,
        }
    }
}

#[derive(serde::Deserialize)]
struct TargetUpdate {
    rollout: String,
    target: Target,
}

fn apply_target(r: &mut Rollout, target: Target) {
    match r.targets.iter_mut().find(|t| t.device == target.device) {
        Some(t) => *t = target,
        None => r.targets.push(target),
    }
    let mut counts = BTreeMap::new();
    for t in &r.targets {
        *counts.entry(t.state.as_str().to_string()).or_insert(0) += 1;
    }
    r.summary.counts = counts;
}

async fn reconnect(client: &Client, view: &mut View) -> anyhow::Result<Events> {
    let mut last = None;
    for attempt in 1..=RECONNECTS {
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        match client.events().await {
            Ok(e) => return Ok(e),
            Err(e) => {
                if attempt == 1 {
                    view.say("lost the server's event stream; reconnecting");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        CodedError::new(Exit::Unreachable, "the server's event stream is gone").into()
    }))
}

/// Progress display: bars at a terminal, lines elsewhere.
enum View {
    Bars(Box<Bars>),
    Lines(Lines),
}

impl View {
    fn new(ui: Ui, r: &Rollout) -> View {
        if ui.live {
            View::Bars(Box::new(Bars::new(r)))
        } else {
            View::Lines(Lines::new())
        }
    }

    fn update(&mut self, r: &Rollout) {
        match self {
            View::Bars(b) => b.update(r),
            View::Lines(l) => l.update(r),
        }
    }

    fn say(&self, line: &str) {
        match self {
            View::Bars(b) => {
                let _ = b.multi.println(line);
            }
            View::Lines(_) => eprintln!("{line}"),
        }
    }

    fn finish(&mut self, r: &Rollout) {
        self.update(r);
        if let View::Bars(b) = self {
            b.finish();
        }
    }
}

/// A one-line account of a target that has just ended.
fn ended_line(t: &Target) -> String {
    let versions = match (&t.from_version, &t.to_version) {
        (Some(f), Some(to)) if !f.is_empty() => format!(" ({f} -> {to})"),
        (_, Some(to)) => format!(" (-> {to})"),
        _ => String::new(),
    };
    match &t.error {
        Some(e) if t.state != TargetState::Succeeded => {
            format!("{} {}{versions}: {e}", t.device, t.state)
        }
        _ => format!("{} {}{versions}", t.device, t.state),
    }
}

fn counts_line(r: &Rollout) -> String {
    let parts: Vec<String> = r
        .summary
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    parts.join(", ")
}

/// Plain progress: a line per target as it ends and per rollout state change (stderr).
struct Lines {
    ended: HashMap<String, TargetState>,
    state: Option<RolloutState>,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            ended: HashMap::new(),
            state: None,
        }
    }

    fn update(&mut self, r: &Rollout) {
        for t in &r.targets {
            if t.state.is_final() && self.ended.get(&t.device) != Some(&t.state) {
                self.ended.insert(t.device.clone(), t.state);
                eprintln!("{}", ended_line(t));
            }
        }
        if self.state != Some(r.summary.state) {
            self.state = Some(r.summary.state);
            let reason = r
                .summary
                .reason
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            eprintln!(
                "rollout {} {}{reason} [{}]",
                r.summary.id,
                crate::render::rollout_state(r.summary.state),
                counts_line(r)
            );
        }
    }
}

/// indicatif: one overall bar, one bar per in-flight device (phase and rate); finished devices
/// leave their bar and are counted in the overall line (failures are also printed above).
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    devices: HashMap<String, ProgressBar>,
    ended: HashMap<String, TargetState>,
    style: ProgressStyle,
}

impl Bars {
    fn new(r: &Rollout) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(r.targets.len() as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} done  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.set_prefix(r.summary.id.clone());
        overall.enable_steady_tick(Duration::from_millis(200));
        let style = ProgressStyle::with_template(
            "  {prefix:14} {bar:24.green/white} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        Bars {
            multi,
            overall,
            devices: HashMap::new(),
            ended: HashMap::new(),
            style,
        }
    }

    fn update(&mut self, r: &Rollout) {
        let done = r.targets.iter().filter(|t| t.state.is_final()).count();
        self.overall.set_length(r.targets.len() as u64);
        self.overall.set_position(done as u64);
        self.overall.set_message(format!(
            "{} · {}",
            crate::render::rollout_state(r.summary.state),
            counts_line(r)
        ));
        for t in &r.targets {
            if t.state.is_final() {
                if let Some(bar) = self.devices.remove(&t.device) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if self.ended.insert(t.device.clone(), t.state) != Some(t.state)
                    && t.state.is_failure()
                {
                    let _ = self.multi.println(ended_line(t));
                }
            } else if t.state == TargetState::InProgress {
                let bar = self.devices.entry(t.device.clone()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(t.total.max(1)));
                    b.set_style(self.style.clone());
                    b.set_prefix(t.device.clone());
                    b
                });
                bar.set_length(t.total.max(1));
                bar.set_position(t.bytes.min(t.total));
                bar.set_message(crate::render::phase(t.phase));
            }
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.devices.drain() {
            bar.finish_and_clear();
        }
        self.overall.finish();
    }
}
