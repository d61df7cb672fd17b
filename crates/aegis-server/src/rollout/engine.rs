//! The rollout engine: owns every running rollout, answers the API's rollout calls, and routes
//! what devices say (reports, announcements, bytes served) to the attempts they belong to.
//!
//! Each running rollout has one driver task that owns its targets: it asks the scheduler what
//! to start, runs attempts (see [`attempt`](super::attempt)), applies their outcomes (retry with
//! back-off, end states), pauses on thresholds and obeys pause/resume/abort/retry commands.
//! Every state change is persisted, published on the event bus and written to the audit log.
//! After a restart, [`RolloutEngine::recover`] re-confirms in-flight targets against what the
//! devices actually run.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_protocol::{Report, SigningKey};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::attempt::{self, AttemptEnv, AttemptSpec, Outcome, Progress, Signal};
use super::client::DeviceClient;
use super::plan::{self, PlanContext};
use super::schedule::{self, Slot};
use super::types::{
    CreateRollout, Phase, Plan, Rollout, RolloutState, RolloutSummary, Target, TargetState,
};
use super::urls::DeviceUrls;
use crate::audit::{AuditLog, NewRecord};
use crate::events::{Event, EventBus};
use crate::firmware::{DownloadTracker, FirmwareEntry};
use crate::store::Store;
use crate::time::{SharedClock, Timestamp};
use crate::{Error, Result};

/// What the engine needs from the rest of the server.
#[derive(Debug, Clone)]
pub struct EngineDeps {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub bus: EventBus,
    pub audit: AuditLog,
    pub key: Arc<SigningKey>,
    pub client: Arc<dyn DeviceClient>,
    pub tracker: DownloadTracker,
    pub urls: DeviceUrls,
    /// How often an attempt asks the device's `/info` while waiting for it.
    pub poll_every: Duration,
    /// Cancelled when the server shuts down: drivers stop without touching target states, so
    /// in-flight targets are re-confirmed by `recover` on the next start.
    pub shutdown: CancellationToken,
}

/// Handle to the rollout engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct RolloutEngine {
    inner: Arc<Inner>,
}

/// What `create` did: started a rollout, or (dry run) only planned one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Created {
    Started(Rollout),
    DryRun(Plan),
}

#[derive(Debug)]
struct Inner {
    deps: EngineDeps,
    running: Mutex<HashMap<String, Arc<Cell>>>,
    /// In-flight attempts by deployment id (reports) and by device id (announcements).
    routes: Mutex<Routes>,
}

#[derive(Debug, Default)]
struct Routes {
    by_deployment: HashMap<String, Route>,
    by_device: HashMap<String, mpsc::Sender<Signal>>,
}

#[derive(Debug, Clone)]
struct Route {
    device: String,
    ip: IpAddr,
    tx: mpsc::Sender<Signal>,
}

/// A running rollout: its current picture and its driver's command queue.
#[derive(Debug)]
struct Cell {
    snapshot: Mutex<Rollout>,
    commands: mpsc::Sender<Command>,
}

#[derive(Debug)]
enum Command {
    Pause(oneshot::Sender<Result<RolloutSummary>>),
    Resume(oneshot::Sender<Result<RolloutSummary>>),
    Abort(oneshot::Sender<Result<RolloutSummary>>),
    RetryFailed(oneshot::Sender<Result<RolloutSummary>>),
}

/// Message from an attempt task to its driver.
#[derive(Debug)]
enum AttemptMsg {
    Progress(usize, Progress),
    Done(usize, Outcome),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a storage task failed: {e}")))?
}

fn counts(targets: &[Target]) -> std::collections::BTreeMap<String, u32> {
    let mut c = std::collections::BTreeMap::new();
    for t in targets {
        *c.entry(t.state.as_str().to_string()).or_insert(0) += 1;
    }
    c
}

fn new_rollout_id() -> String {
    format!("r-{:08x}", rand::random::<u32>())
}

fn not_running(id: &str) -> Error {
    Error::conflict(
        "rollout_not_running",
        format!("rollout {id} has finished: create a new rollout to deploy again"),
    )
}

impl RolloutEngine {
    pub fn new(deps: EngineDeps) -> Self {
        let inner = Arc::new(Inner {
            deps,
            running: Mutex::new(HashMap::new()),
            routes: Mutex::new(Routes::default()),
        });
        tokio::spawn(route_device_updates(inner.clone()));
        Self { inner }
    }

    /// Plans (and unless `dry_run`, starts) a rollout.
    pub async fn create(&self, req: CreateRollout) -> Result<Created> {
        let d = &self.inner.deps;
        if !crate::firmware::is_sha256(&req.firmware) {
            return Err(Error::bad_request(
                "bad_sha256",
                format!(
                    "`{}` is not a firmware id: use the 64-hex-digit sha256 from the library",
                    req.firmware
                ),
            ));
        }
        let store = d.store.clone();
        let sha = req.firmware.clone();
        let (firmware, devices) =
            blocking(move || Ok((store.firmware(&sha)?, store.devices()?))).await?;
        let firmware = firmware.ok_or_else(|| {
            Error::not_found(
                "unknown_firmware",
                format!(
                    "no firmware with sha256 {} is in the library: upload it first",
                    req.firmware
                ),
            )
        })?;
        let ctx = PlanContext {
            server_key_id: Some(d.key.public_key().key_id().to_string()),
        };
        let plan = plan::plan(&req.targets, &firmware, &req.strategy, &devices, &ctx)?;
        if req.dry_run {
            return Ok(Created::DryRun(plan));
        }

        let now = d.clock.now();
        let targets: Vec<Target> = plan
            .targets
            .iter()
            .map(|p| Target {
                device: p.device.clone(),
                state: match p.decision {
                    super::Decision::Deploy => TargetState::Pending,
                    super::Decision::Skip => TargetState::Skipped,
                },
                phase: Phase::Queued,
                bytes: 0,
                total: firmware.size,
                error: p.reason.clone(),
                from_version: Some(p.from_version.clone()),
                to_version: Some(p.to_version.clone()),
                attempts: 0,
                started_at: None,
                finished_at: None,
            })
            .collect();
        let summary = RolloutSummary {
            id: new_rollout_id(),
            state: RolloutState::Running,
            firmware: firmware.sha256.clone(),
            strategy: req.strategy.clone(),
            reason: None,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            counts: counts(&targets),
        };
        let rollout = Rollout {
            summary: summary.clone(),
            targets,
        };
        {
            let store = d.store.clone();
            let r = rollout.clone();
            blocking(move || {
                store.put_rollout(&r.summary)?;
                store.put_targets(&r.summary.id, &r.targets)
            })
            .await?;
        }
        d.audit
            .record(NewRecord {
                kind: "rollout_created".into(),
                rollout: Some(summary.id.clone()),
                firmware: Some(firmware.sha256.clone()),
                to_version: Some(firmware.version.clone()),
                detail: serde_json::json!({
                    "strategy": req.strategy,
                    "targets": req.targets,
                    "deploy": plan.deploy,
                    "skip": plan.skip,
                }),
                ..NewRecord::default()
            })
            .await;
        for t in rollout
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Skipped)
        {
            d.audit
                .record(NewRecord {
                    kind: "transition".into(),
                    rollout: Some(summary.id.clone()),
                    device: Some(t.device.clone()),
                    firmware: Some(firmware.sha256.clone()),
                    from_version: t.from_version.clone(),
                    to_version: t.to_version.clone(),
                    outcome: Some("skipped".into()),
                    error: t.error.clone(),
                    ..NewRecord::default()
                })
                .await;
        }
        d.bus.publish(Event::RolloutUpdated(summary));
        self.launch(rollout.clone(), firmware, Vec::new());
        Ok(Created::Started(rollout))
    }

    /// Starts the driver of a rollout. `resume` lists targets (indices) whose attempt was in
    /// flight before a restart and must be re-confirmed.
    fn launch(&self, rollout: Rollout, firmware: FirmwareEntry, resume: Vec<usize>) {
        let (tx, rx) = mpsc::channel(16);
        let id = rollout.summary.id.clone();
        let cell = Arc::new(Cell {
            snapshot: Mutex::new(rollout),
            commands: tx,
        });
        lock(&self.inner.running).insert(id, cell.clone());
        let driver = Driver::new(self.inner.clone(), cell, firmware);
        tokio::spawn(driver.run(rx, resume));
    }

    pub async fn get(&self, id: &str) -> Result<Rollout> {
        if let Some(cell) = lock(&self.inner.running).get(id).cloned() {
            return Ok(lock(&cell.snapshot).clone());
        }
        let store = self.inner.deps.store.clone();
        let key = id.to_string();
        let found = blocking(move || store.rollout(&key)).await?;
        match found {
            Some((summary, targets)) => Ok(Rollout { summary, targets }),
            None => Err(Error::not_found(
                "unknown_rollout",
                format!("no rollout {id}: list them with GET /api/v1/rollouts"),
            )),
        }
    }

    /// All rollouts, newest first, with live counts for running ones.
    pub async fn list(&self) -> Result<Vec<RolloutSummary>> {
        let store = self.inner.deps.store.clone();
        let mut all = blocking(move || store.rollouts()).await?;
        let running = lock(&self.inner.running).clone();
        for r in &mut all {
            if let Some(cell) = running.get(&r.id) {
                *r = lock(&cell.snapshot).summary.clone();
            }
        }
        Ok(all)
    }

    pub async fn pause(&self, id: &str) -> Result<RolloutSummary> {
        self.command(id, Command::Pause).await
    }

    pub async fn resume(&self, id: &str) -> Result<RolloutSummary> {
        self.command(id, Command::Resume).await
    }

    pub async fn abort(&self, id: &str) -> Result<RolloutSummary> {
        self.command(id, Command::Abort).await
    }

    /// Puts failed, rolled-back and timed-out targets back in the queue. Works on finished
    /// rollouts too (they start running again).
    pub async fn retry_failed(&self, id: &str) -> Result<RolloutSummary> {
        if !lock(&self.inner.running).contains_key(id) {
            // Finished: bring it back to life if it has failures to retry.
            let r = self.get(id).await?;
            if !r.targets.iter().any(|t| t.state.is_failure()) {
                return Err(Error::conflict(
                    "nothing_to_retry",
                    format!("rollout {id} has no failed, rolled-back or timed-out devices"),
                ));
            }
            let store = self.inner.deps.store.clone();
            let sha = r.summary.firmware.clone();
            let fw = blocking(move || store.firmware(&sha)).await?.ok_or_else(|| {
                Error::conflict(
                    "firmware_gone",
                    "the rollout's firmware was deleted from the library: upload it again and create a new rollout",
                )
            })?;
            self.launch(r, fw, Vec::new());
        }
        self.command(id, Command::RetryFailed).await
    }

    async fn command(
        &self,
        id: &str,
        make: impl FnOnce(oneshot::Sender<Result<RolloutSummary>>) -> Command,
    ) -> Result<RolloutSummary> {
        let cell = lock(&self.inner.running).get(id).cloned();
        let Some(cell) = cell else {
            // Unknown id → 404; known but finished → 409.
            self.get(id).await?;
            return Err(not_running(id));
        };
        let (tx, rx) = oneshot::channel();
        cell.commands
            .send(make(tx))
            .await
            .map_err(|_| not_running(id))?;
        rx.await.map_err(|_| not_running(id))?
    }

    /// A device's progress report (`POST /api/v1/report` on the device listener). Refused
    /// unless the deployment is in flight on a target whose device sent it from its own address.
    pub async fn report(&self, report: Report, peer: IpAddr) -> Result<()> {
        let route = lock(&self.inner.routes)
            .by_deployment
            .get(&report.deployment)
            .cloned();
        let Some(route) = route else {
            return Err(Error::not_found(
                "unknown_deployment",
                format!(
                    "deployment `{}` is not in flight on this server",
                    report.deployment
                ),
            ));
        };
        if route.device != report.id.as_str() || !same_host(route.ip, peer) {
            return Err(Error::conflict(
                "report_mismatch",
                "this report does not come from the device the deployment was sent to",
            ));
        }
        let _ = route.tx.try_send(Signal::Report(report));
        Ok(())
    }

    /// After a restart: picks up rollouts that were running or paused, re-confirming targets
    /// that were in flight against what their devices actually run.
    pub async fn recover(&self) -> Result<usize> {
        let store = self.inner.deps.store.clone();
        let summaries = blocking(move || store.rollouts()).await?;
        let mut recovered = 0;
        for s in summaries {
            if !matches!(s.state, RolloutState::Running | RolloutState::Paused) {
                continue;
            }
            let store = self.inner.deps.store.clone();
            let (id, sha) = (s.id.clone(), s.firmware.clone());
            let (found, fw) =
                blocking(move || Ok((store.rollout(&id)?, store.firmware(&sha)?))).await?;
            let (Some((summary, targets)), Some(fw)) = (found, fw) else {
                continue;
            };
            let resume: Vec<usize> = targets
                .iter()
                .enumerate()
                .filter(|(_, t)| t.state == TargetState::InProgress)
                .map(|(i, _)| i)
                .collect();
            self.inner
                .deps
                .audit
                .record(NewRecord {
                    kind: "rollout_recovered".into(),
                    rollout: Some(summary.id.clone()),
                    firmware: Some(summary.firmware.clone()),
                    detail: serde_json::json!({ "in_flight": resume.len() }),
                    ..NewRecord::default()
                })
                .await;
            self.launch(Rollout { summary, targets }, fw, resume);
            recovered += 1;
        }
        Ok(recovered)
    }
}

/// Reports must come from the device's own address (an IPv4-mapped IPv6 peer counts).
fn same_host(expected: IpAddr, peer: IpAddr) -> bool {
    match (expected, peer) {
        (IpAddr::V4(a), IpAddr::V6(b)) => b.to_ipv4_mapped() == Some(a),
        (a, b) => a == b,
    }
}

/// Forwards registry changes to the attempt running on that device, if any.
async fn route_device_updates(inner: Arc<Inner>) {
    let mut rx = inner.deps.bus.subscribe();
    loop {
        let ev = tokio::select! {
            () = inner.deps.shutdown.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(Event::DeviceUpdated(d)) => {
                let tx = lock(&inner.routes).by_device.get(&d.id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.try_send(Signal::Device(d));
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Per-target bookkeeping the driver keeps beside the public `Target`.
#[derive(Debug, Default)]
struct Extra {
    not_before: Option<Timestamp>,
    cancel: Option<CancellationToken>,
    deployment: Option<String>,
    /// When the last progress event was published (throttling).
    last_publish: Option<Timestamp>,
    /// A progress change not yet published because of the throttle; sent when it is due.
    unpublished: bool,
}

/// Minimum time between two progress events for one target.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often bytes served by the firmware endpoint are sampled for progress.
const SERVED_SAMPLE: Duration = Duration::from_millis(500);

struct Driver {
    inner: Arc<Inner>,
    cell: Arc<Cell>,
    firmware: FirmwareEntry,
    extra: Vec<Extra>,
    /// Failures present when the operator last resumed (they no longer pause the rollout).
    acknowledged: usize,
    in_flight: usize,
    msgs_tx: mpsc::Sender<AttemptMsg>,
    msgs_rx: mpsc::Receiver<AttemptMsg>,
}

impl Driver {
    fn new(inner: Arc<Inner>, cell: Arc<Cell>, firmware: FirmwareEntry) -> Self {
        let n = lock(&cell.snapshot).targets.len();
        let (msgs_tx, msgs_rx) = mpsc::channel(256);
        Self {
            inner,
            cell,
            firmware,
            extra: (0..n).map(|_| Extra::default()).collect(),
            acknowledged: 0,
            in_flight: 0,
            msgs_tx,
            msgs_rx,
        }
    }

    fn deps(&self) -> &EngineDeps {
        &self.inner.deps
    }

    fn id(&self) -> String {
        lock(&self.cell.snapshot).summary.id.clone()
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, resume: Vec<usize>) {
        for i in resume {
            self.start(i, true).await;
        }
        loop {
            let state = lock(&self.cell.snapshot).summary.state;
            let mut wake_at = None;
            if state == RolloutState::Running {
                match self.decide() {
                    schedule::Decision::Run { start, wake_at: w } => {
                        wake_at = w;
                        for i in start {
                            self.start(i, false).await;
                        }
                    }
                    schedule::Decision::Pause(reason) => {
                        self.set_state(RolloutState::Paused, Some(reason)).await;
                    }
                    schedule::Decision::Complete => {
                        self.set_state(RolloutState::Completed, None).await;
                    }
                }
            }
            let state = lock(&self.cell.snapshot).summary.state;
            if matches!(state, RolloutState::Completed | RolloutState::Aborted)
                && self.in_flight == 0
            {
                break;
            }
            let clock = self.deps().clock.clone();
            let shutdown = self.deps().shutdown.clone();
            let flush_at = self.flush_progress();
            let wake_at = match (wake_at, flush_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake_at {
                    Some(at) => {
                        let now = clock.now();
                        clock.sleep(at.since(now)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {
                    // Leave targets as they are: `recover` re-confirms them on the next start.
                    for e in &self.extra {
                        if let Some(c) = &e.cancel { c.cancel(); }
                    }
                    return;
                }
                Some(msg) = self.msgs_rx.recv() => self.on_attempt(msg).await,
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
                () = sleep => {}
            }
        }
        let id = self.id();
        lock(&self.inner.running).remove(&id);
    }

    /// Publishes held-back progress that is now due; returns when the next one will be.
    fn flush_progress(&mut self) -> Option<Timestamp> {
        let now = self.deps().clock.now();
        let mut next: Option<Timestamp> = None;
        for i in 0..self.extra.len() {
            if !self.extra[i].unpublished {
                continue;
            }
            let due_at = self.extra[i]
                .last_publish
                .map_or(now, |at| at.saturating_add(PROGRESS_EVERY));
            if due_at <= now {
                self.extra[i].unpublished = false;
                self.extra[i].last_publish = Some(now);
                self.publish_target(i);
            } else {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
            }
        }
        next
    }

    fn decide(&self) -> schedule::Decision {
        let snap = lock(&self.cell.snapshot);
        let slots: Vec<Slot> = snap
            .targets
            .iter()
            .zip(&self.extra)
            .map(|(t, e)| Slot {
                state: t.state,
                not_before: e.not_before,
            })
            .collect();
        schedule::decide(
            &slots,
            &snap.summary.strategy,
            self.acknowledged,
            self.deps().clock.now(),
        )
    }

    fn failures(&self) -> usize {
        lock(&self.cell.snapshot)
            .targets
            .iter()
            .filter(|t| t.state.is_failure())
            .count()
    }

    /// Starts (or, after a restart, resumes) the attempt of target `i`.
    async fn start(&mut self, i: usize, resume: bool) {
        let now = self.deps().clock.now();
        let (device_id, strategy, attempts, started_at) = {
            let snap = lock(&self.cell.snapshot);
            let t = &snap.targets[i];
            (
                t.device.clone(),
                snap.summary.strategy.clone(),
                t.attempts,
                t.started_at,
            )
        };
        let store = self.deps().store.clone();
        let key = device_id.clone();
        let device = match blocking(move || store.device(&key)).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.finish(
                    i,
                    TargetState::Failed,
                    Some("the device is no longer in the registry".into()),
                )
                .await;
                return;
            }
            Err(e) => {
                self.finish(i, TargetState::Failed, Some(e.message)).await;
                return;
            }
        };
        let Ok(ip) = device.ip.parse::<IpAddr>() else {
            self.finish(
                i,
                TargetState::Failed,
                Some(format!("the device's address `{}` is not valid", device.ip)),
            )
            .await;
            return;
        };
        let attempt_no = if resume {
            attempts.max(1)
        } else {
            attempts + 1
        };
        let deployment = format!("{}/{}/{attempt_no}", self.id(), device.id);
        let timeout = Duration::from_secs(strategy.timeout_s);
        let deadline = if resume {
            started_at.unwrap_or(now).saturating_add(timeout)
        } else {
            now.saturating_add(timeout)
        };
        let spec = AttemptSpec {
            url: self.deps().urls.firmware_url(ip, &self.firmware.sha256),
            report_url: Some(self.deps().urls.report_url(ip)),
            device: device.clone(),
            firmware: self.firmware.clone(),
            deployment: deployment.clone(),
            allow_downgrade: strategy.allow_downgrade,
            deadline,
            resume,
        };
        let env = AttemptEnv {
            client: self.deps().client.clone(),
            clock: self.deps().clock.clone(),
            key: self.deps().key.clone(),
            poll_every: self.deps().poll_every,
        };

        let (sig_tx, sig_rx) = mpsc::channel(64);
        {
            let mut routes = lock(&self.inner.routes);
            routes.by_deployment.insert(
                deployment.clone(),
                Route {
                    device: device.id.clone(),
                    ip,
                    tx: sig_tx.clone(),
                },
            );
            routes.by_device.insert(device.id.clone(), sig_tx.clone());
        }
        let cancel = CancellationToken::new();
        self.extra[i] = Extra {
            not_before: None,
            cancel: Some(cancel.clone()),
            deployment: Some(deployment),
            last_publish: None,
            unpublished: false,
        };
        self.in_flight += 1;

        if !resume {
            self.update(i, |t| {
                t.state = TargetState::InProgress;
                t.phase = Phase::Preflight;
                t.attempts = attempt_no;
                t.bytes = 0;
                t.error = None;
                t.started_at = Some(now);
                t.finished_at = None;
            })
            .await;
        }

        // Bytes the firmware endpoint sends to this device feed the progress bar.
        let handle = self.deps().tracker.expect(&self.firmware.sha256, ip);
        let clock = self.deps().clock.clone();
        let sample_cancel = cancel.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::select! {
                    () = sample_cancel.cancelled() => return,
                    () = clock.sleep(SERVED_SAMPLE) => {}
                }
                let pos = handle.position();
                if pos != last {
                    last = pos;
                    if sig_tx.try_send(Signal::Served(pos)).is_err() && sig_tx.is_closed() {
                        return;
                    }
                }
            }
        });

        let msgs = self.msgs_tx.clone();
        let progress_tx = self.msgs_tx.clone();
        tokio::spawn(async move {
            let outcome = attempt::run(spec, env, sig_rx, cancel.clone(), move |p| {
                let _ = progress_tx.try_send(AttemptMsg::Progress(i, p));
            })
            .await;
            cancel.cancel();
            let _ = msgs.send(AttemptMsg::Done(i, outcome)).await;
        });
    }

    async fn on_attempt(&mut self, msg: AttemptMsg) {
        match msg {
            AttemptMsg::Progress(i, p) => {
                let now = self.deps().clock.now();
                let publish = {
                    let mut snap = lock(&self.cell.snapshot);
                    let t = &mut snap.targets[i];
                    if t.state != TargetState::InProgress {
                        return;
                    }
                    let changed_phase = t.phase != p.phase;
                    t.phase = p.phase;
                    t.bytes = t.bytes.max(p.bytes);
                    let due = self.extra[i]
                        .last_publish
                        .is_none_or(|at| now.since(at) >= PROGRESS_EVERY);
                    changed_phase || due
                };
                if publish {
                    self.extra[i].last_publish = Some(now);
                    self.extra[i].unpublished = false;
                    self.publish_target(i);
                } else {
                    // Held back by the throttle: `flush_progress` sends it when due, so the
                    // last bytes before a quiet spell are never lost.
                    self.extra[i].unpublished = true;
                }
            }
            AttemptMsg::Done(i, outcome) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.unroute(i);
                self.apply_outcome(i, outcome).await;
            }
        }
    }

    fn unroute(&mut self, i: usize) {
        let e = &mut self.extra[i];
        if let Some(c) = e.cancel.take() {
            c.cancel();
        }
        if let Some(dep) = e.deployment.take() {
            let mut routes = lock(&self.inner.routes);
            if let Some(r) = routes.by_deployment.remove(&dep)
                && routes
                    .by_device
                    .get(&r.device)
                    .is_some_and(|tx| tx.same_channel(&r.tx))
            {
                routes.by_device.remove(&r.device);
            }
        }
    }

    async fn apply_outcome(&mut self, i: usize, outcome: Outcome) {
        let (attempts, retries, rollout_state) = {
            let snap = lock(&self.cell.snapshot);
            (
                snap.targets[i].attempts,
                snap.summary.strategy.retries,
                snap.summary.state,
            )
        };
        let (state, error) = match outcome {
            Outcome::NotStarted => {
                self.update(i, |t| {
                    t.state = TargetState::Pending;
                    t.phase = Phase::Queued;
                    t.attempts = t.attempts.saturating_sub(1);
                    t.error = None;
                })
                .await;
                return;
            }
            Outcome::Succeeded => (TargetState::Succeeded, None),
            Outcome::AlreadyCurrent => (
                TargetState::Skipped,
                Some("the device already runs this image".to_string()),
            ),
            Outcome::Failed { error, retryable }
                if retryable && attempts <= retries && rollout_state != RolloutState::Aborted =>
            {
                let wait = schedule::backoff(attempts);
                let at = self.deps().clock.now().saturating_add(wait);
                self.extra[i].not_before = Some(at);
                self.audit_attempt(i, "failed", Some(&error)).await;
                self.update(i, |t| {
                    t.state = TargetState::Pending;
                    t.phase = Phase::Queued;
                    t.error = Some(format!(
                        "attempt {attempts} failed ({error}); retrying in {} s",
                        wait.as_secs()
                    ));
                })
                .await;
                return;
            }
            Outcome::Failed { error, .. } => (TargetState::Failed, Some(error)),
            Outcome::RolledBack { error } => (TargetState::RolledBack, Some(error)),
            Outcome::TimedOut { error } => (TargetState::TimedOut, Some(error)),
            Outcome::Cancelled => (
                TargetState::Cancelled,
                Some(
                    "aborted by the operator; the device may still finish an update it had \
                     already received"
                        .to_string(),
                ),
            ),
        };
        self.audit_attempt(i, state.as_str(), error.as_deref())
            .await;
        self.finish(i, state, error).await;
    }

    async fn audit_attempt(&self, i: usize, outcome: &str, error: Option<&str>) {
        let t = lock(&self.cell.snapshot).targets[i].clone();
        let d = self.deps();
        d.audit
            .record(NewRecord {
                kind: "attempt".into(),
                rollout: Some(self.id()),
                device: Some(t.device.clone()),
                firmware: Some(self.firmware.sha256.clone()),
                from_version: t.from_version.clone(),
                to_version: t.to_version.clone(),
                outcome: Some(outcome.to_string()),
                bytes: Some(t.bytes),
                error: error.map(str::to_string),
                started_at: t.started_at,
                ended_at: Some(d.clock.now()),
                detail: serde_json::json!({ "attempt": t.attempts }),
            })
            .await;
    }

    async fn finish(&mut self, i: usize, state: TargetState, error: Option<String>) {
        let now = self.deps().clock.now();
        self.update(i, |t| {
            t.state = state;
            t.phase = Phase::Done;
            t.error = error;
            t.finished_at = Some(now);
        })
        .await;
    }

    /// Changes target `i`, then persists, publishes and audits the change if its state moved.
    async fn update(&mut self, i: usize, f: impl FnOnce(&mut Target)) {
        let (before, after, summary) = {
            let mut snap = lock(&self.cell.snapshot);
            let before = snap.targets[i].state;
            f(&mut snap.targets[i]);
            let after = snap.targets[i].clone();
            snap.summary.counts = counts(&snap.targets);
            (before, after, snap.summary.clone())
        };
        let store = self.deps().store.clone();
        let id = summary.id.clone();
        let t = after.clone();
        if let Err(e) = blocking(move || store.put_target(&id, &t)).await {
            tracing::error!(rollout = %summary.id, device = %after.device, "could not persist a target: {e}");
        }
        if before != after.state {
            self.deps()
                .audit
                .record(NewRecord {
                    kind: "transition".into(),
                    rollout: Some(summary.id.clone()),
                    device: Some(after.device.clone()),
                    firmware: Some(self.firmware.sha256.clone()),
                    from_version: after.from_version.clone(),
                    to_version: after.to_version.clone(),
                    outcome: Some(after.state.as_str().to_string()),
                    error: after.error.clone(),
                    detail: serde_json::json!({ "from": before.as_str(), "attempt": after.attempts }),
                    ..NewRecord::default()
                })
                .await;
            self.deps().bus.publish(Event::RolloutUpdated(summary));
        }
        self.publish_target(i);
    }

    fn publish_target(&self, i: usize) {
        let (id, target) = {
            let snap = lock(&self.cell.snapshot);
            (snap.summary.id.clone(), snap.targets[i].clone())
        };
        self.deps().bus.publish(Event::TargetUpdated {
            rollout: id,
            target,
        });
    }

    async fn set_state(&mut self, state: RolloutState, reason: Option<String>) {
        let now = self.deps().clock.now();
        let (before, summary) = {
            let mut snap = lock(&self.cell.snapshot);
            let before = snap.summary.state;
            snap.summary.state = state;
            snap.summary.reason = reason.clone();
            snap.summary.finished_at = match state {
                RolloutState::Completed | RolloutState::Aborted => Some(now),
                _ => None,
            };
            snap.summary.counts = counts(&snap.targets);
            (before, snap.summary.clone())
        };
        let store = self.deps().store.clone();
        let s = summary.clone();
        if let Err(e) = blocking(move || store.put_rollout(&s)).await {
            tracing::error!(rollout = %summary.id, "could not persist the rollout: {e}");
        }
        if before != state {
            self.deps()
                .audit
                .record(NewRecord {
                    kind: "rollout_transition".into(),
                    rollout: Some(summary.id.clone()),
                    firmware: Some(summary.firmware.clone()),
                    outcome: Some(rollout_state_name(state).into()),
                    error: reason,
                    detail: serde_json::json!({
                        "from": rollout_state_name(before),
                        "counts": summary.counts,
                    }),
                    ..NewRecord::default()
                })
                .await;
        }
        self.deps().bus.publish(Event::RolloutUpdated(summary));
    }

    async fn on_command(&mut self, cmd: Command) {
        let state = lock(&self.cell.snapshot).summary.state;
        let id = self.id();
        match cmd {
            Command::Pause(reply) => {
                let r = match state {
                    RolloutState::Running => {
                        self.set_state(RolloutState::Paused, Some("paused by the operator".into()))
                            .await;
                        Ok(self.summary())
                    }
                    RolloutState::Paused => Ok(self.summary()),
                    _ => Err(not_running(&id)),
                };
                let _ = reply.send(r);
            }
            Command::Resume(reply) => {
                let r = match state {
                    RolloutState::Paused => {
                        self.acknowledged = self.failures();
                        self.set_state(RolloutState::Running, None).await;
                        Ok(self.summary())
                    }
                    RolloutState::Running => Ok(self.summary()),
                    _ => Err(not_running(&id)),
                };
                let _ = reply.send(r);
            }
            Command::Abort(reply) => {
                let r = if matches!(state, RolloutState::Running | RolloutState::Paused) {
                    let n = lock(&self.cell.snapshot).targets.len();
                    for i in 0..n {
                        let st = lock(&self.cell.snapshot).targets[i].state;
                        match st {
                            TargetState::Pending => {
                                self.finish(
                                    i,
                                    TargetState::Cancelled,
                                    Some(
                                        "the rollout was aborted before this device started".into(),
                                    ),
                                )
                                .await;
                            }
                            TargetState::InProgress => {
                                if let Some(c) = &self.extra[i].cancel {
                                    c.cancel();
                                }
                            }
                            _ => {}
                        }
                    }
                    self.set_state(
                        RolloutState::Aborted,
                        Some("aborted by the operator".into()),
                    )
                    .await;
                    Ok(self.summary())
                } else {
                    Err(not_running(&id))
                };
                let _ = reply.send(r);
            }
            Command::RetryFailed(reply) => {
                let n = lock(&self.cell.snapshot).targets.len();
                let mut retried = 0;
                for i in 0..n {
                    let st = lock(&self.cell.snapshot).targets[i].state;
                    if st.is_failure() {
                        retried += 1;
                        self.extra[i].not_before = None;
                        self.update(i, |t| {
                            t.state = TargetState::Pending;
                            t.phase = Phase::Queued;
                            t.error = None;
                            t.finished_at = None;
                        })
                        .await;
                    }
                }
                let r = if retried == 0 && state != RolloutState::Aborted {
                    Err(Error::conflict(
                        "nothing_to_retry",
                        format!("rollout {id} has no failed, rolled-back or timed-out devices"),
                    ))
                } else {
                    self.acknowledged = self.failures();
                    self.set_state(RolloutState::Running, None).await;
                    Ok(self.summary())
                };
                let _ = reply.send(r);
            }
        }
    }

    fn summary(&self) -> RolloutSummary {
        lock(&self.cell.snapshot).summary.clone()
    }
}

fn rollout_state_name(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Planned => "planned",
        RolloutState::Running => "running",
        RolloutState::Paused => "paused",
        RolloutState::Completed => "completed",
        RolloutState::Aborted => "aborted",
    }
}
