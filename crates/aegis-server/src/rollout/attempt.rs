//! One deployment attempt on one device, from `/info` to confirmation:
//!
//! 1. `GET /info` for a fresh nonce (and a last look: right device? fits? idle?);
//! 2. sign and `POST` the trigger;
//! 3. follow the device — its reports, its announcements (via the registry) and a periodic
//!    `GET /info` — until it is seen running the deployed image (succeeded), back on its old one
//!    (rolled back), reports a failure, or the deadline passes (timed out).
//!
//! A resumed attempt (after a server restart) skips steps 1-2 and only re-confirms. Nothing here
//! reads the wall clock: deadlines and polls go through the injected [`Clock`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aegis_protocol::report::Phase as ReportPhase;
use aegis_protocol::{DeviceId, Info, Report, Sha256Hex, SigningKey, Trigger};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{DeviceClient, TriggerReply};
use super::types::Phase;
use crate::devices::Device;
use crate::firmware::FirmwareEntry;
use crate::time::{Clock, SharedClock, Timestamp};

/// Something the engine learned about the device of this attempt.
#[derive(Debug, Clone)]
pub enum Signal {
    /// The device POSTed a report for this deployment.
    Report(Report),
    /// The registry's record of the device changed (announcement, goodbye, presence check).
    Device(Device),
    /// The firmware endpoint has sent this many bytes of the image to the device.
    Served(u64),
}

/// How the attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Seen running the deployed image, confirmed (not pending verification).
    Succeeded,
    /// The device already ran the image when asked.
    AlreadyCurrent,
    Failed {
        error: String,
        retryable: bool,
    },
    RolledBack {
        error: String,
    },
    TimedOut {
        error: String,
    },
    Cancelled,
    /// After a restart: the device never received the trigger; the target goes back to the
    /// queue without using up an attempt.
    NotStarted,
}

/// Progress the engine shows while the attempt runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub bytes: u64,
}

/// What to deploy where.
#[derive(Debug, Clone)]
pub struct AttemptSpec {
    pub device: Device,
    pub firmware: FirmwareEntry,
    /// Opaque id the device echoes in reports and `/info`'s `last`.
    pub deployment: String,
    /// Where the device downloads the image.
    pub url: String,
    pub report_url: Option<String>,
    pub allow_downgrade: bool,
    /// Confirmation must come before this.
    pub deadline: Timestamp,
    /// Re-confirm only (the trigger was sent before a restart).
    pub resume: bool,
}

/// The attempt's collaborators.
#[derive(Debug, Clone)]
pub struct AttemptEnv {
    pub client: Arc<dyn DeviceClient>,
    pub clock: SharedClock,
    pub key: Arc<SigningKey>,
    /// How often to ask `/info` while waiting.
    pub poll_every: Duration,
}

/// Runs one attempt to its end. `progress` is called on every phase or byte-count change.
pub async fn run(
    spec: AttemptSpec,
    env: AttemptEnv,
    mut signals: mpsc::Receiver<Signal>,
    cancel: CancellationToken,
    mut progress: impl FnMut(Progress) + Send,
) -> Outcome {
    let mut a = Attempt {
        addr: match spec.device.ip.parse() {
            Ok(ip) => SocketAddr::new(ip, spec.device.port),
            Err(_) => {
                return Outcome::Failed {
                    error: format!(
                        "the device's address {} is not an IPv4 address",
                        spec.device.ip
                    ),
                    retryable: false,
                };
            }
        },
        fw_sha: spec.firmware.sha256.clone(),
        phase: Phase::Preflight,
        bytes: 0,
        spec,
        env,
    };
    if !a.spec.resume {
        progress(a.progress());
        let clock = a.env.clock.clone();
        let deadline = a.spec.deadline;
        let started = tokio::select! {
            r = a.trigger() => r,
            () = cancel.cancelled() => return Outcome::Cancelled,
            () = sleep_until(&*clock, deadline) => {
                return Outcome::TimedOut { error: "the device did not accept the update before the deadline".into() };
            }
        };
        if let Err(outcome) = started {
            return outcome;
        }
        a.phase = Phase::Triggered;
        progress(a.progress());
    } else {
        a.phase = Phase::Confirming;
        progress(a.progress());
        // Look once right away: it may have finished while the server was down, or never
        // have received the trigger.
        if let Some(end) = a.first_look_after_restart().await {
            return end;
        }
    }

    loop {
        let before = a.progress();
        let clock = a.env.clock.clone();
        let deadline = a.spec.deadline;
        let poll_every = a.env.poll_every;
        let ended = tokio::select! {
            () = cancel.cancelled() => return Outcome::Cancelled,
            () = sleep_until(&*clock, deadline) => {
                // One last look before giving up, so a device that made it is not called late.
                match a.poll().await {
                    Some(end) => Some(end),
                    None => Some(Outcome::TimedOut { error: format!(
                        "the device was not seen running the new image before the timeout \
                         (last phase: {})",
                        phase_name(a.phase)
                    ) }),
                }
            }
            () = clock.sleep(poll_every) => a.poll().await,
            signal = signals.recv() => match signal {
                Some(s) => a.on_signal(s).await,
                // The engine dropped us: treat as cancellation.
                None => return Outcome::Cancelled,
            },
        };
        if a.progress() != before {
            progress(a.progress());
        }
        if let Some(end) = ended {
            return end;
        }
    }
}

struct Attempt {
    spec: AttemptSpec,
    env: AttemptEnv,
    addr: SocketAddr,
    fw_sha: String,
    phase: Phase,
    bytes: u64,
}

async fn sleep_until(clock: &dyn Clock, at: Timestamp) {
    let now = clock.now();
    if at > now {
        clock.sleep(at.since(now)).await;
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Queued => "queued",
        Phase::Preflight => "preflight",
        Phase::Triggered => "triggered",
        Phase::Downloading => "downloading",
        Phase::Verifying => "verifying",
        Phase::Rebooting => "rebooting",
        Phase::Confirming => "confirming",
        Phase::Done => "done",
    }
}

impl Attempt {
    fn progress(&self) -> Progress {
        Progress {
            phase: self.phase,
            bytes: self.bytes,
        }
    }

    /// Steps 1-2: nonce, last checks, signed trigger.
    async fn trigger(&mut self) -> Result<(), Outcome> {
        let fail = |error: String, retryable: bool| Outcome::Failed { error, retryable };
        let info = self
            .env
            .client
            .info(self.addr)
            .await
            .map_err(|e| fail(format!("the device did not answer: {e}"), true))?;
        if info.id.as_str() != self.spec.device.id {
            return Err(fail(
                format!(
                    "a different device (id {}) answers at {}: the registry is out of date",
                    info.id, self.addr
                ),
                false,
            ));
        }
        if info.sha256.as_str() == self.fw_sha {
            return Err(Outcome::AlreadyCurrent);
        }
        if info.slot_size < self.spec.firmware.size {
            return Err(fail(
                format!(
                    "the image ({} bytes) does not fit the device's inactive slot ({} bytes)",
                    self.spec.firmware.size, info.slot_size
                ),
                false,
            ));
        }
        let state = info.state.as_str();
        if state != "idle" {
            return Err(fail(
                format!("the device is busy ({state}); it will be retried"),
                true,
            ));
        }
        let device_id = info.id.clone();
        let trigger = self
            .build_trigger(&info, &device_id)
            .map_err(|e| fail(e, false))?;
        match self.env.client.trigger(self.addr, &trigger).await {
            Ok(TriggerReply::Accepted) => Ok(()),
            Ok(TriggerReply::Refused {
                status,
                code,
                message,
            }) => Err(fail(
                format!("the device refused the update ({status} {code}): {message}"),
                matches!(status, 409 | 412),
            )),
            Err(e) => Err(fail(format!("sending the trigger failed: {e}"), true)),
        }
    }

    fn build_trigger(&self, info: &Info, device_id: &DeviceId) -> Result<Trigger, String> {
        let hash = Sha256Hex::parse(&self.fw_sha)
            .map_err(|e| format!("the firmware's sha256 is malformed: {e}"))?;
        let mut trigger = Trigger {
            url: self.spec.url.clone(),
            hash,
            version: self.spec.firmware.version.clone(),
            size: self.spec.firmware.size,
            deployment: self.spec.deployment.clone(),
            report: self.spec.report_url.clone(),
            nonce: Some(info.nonce.clone()),
            allow_downgrade: self.spec.allow_downgrade,
            sig: None,
        };
        trigger
            .sign(device_id, &self.env.key)
            .map_err(|e| format!("could not sign the trigger: {e}"))?;
        Ok(trigger)
    }

    fn advance(&mut self, phase: Phase) {
        if phase_rank(phase) > phase_rank(self.phase) {
            self.phase = phase;
        }
    }

    async fn on_signal(&mut self, s: Signal) -> Option<Outcome> {
        match s {
            Signal::Served(n) => {
                self.bytes = self.bytes.max(n);
                self.advance(Phase::Downloading);
                None
            }
            Signal::Report(r) => self.on_report(&r),
            Signal::Device(d) => {
                let runs_new = d
                    .sha
                    .as_deref()
                    .is_some_and(|s| !s.is_empty() && self.fw_sha.starts_with(s));
                if !d.online {
                    if phase_rank(self.phase) >= phase_rank(Phase::Verifying) {
                        self.advance(Phase::Rebooting);
                    }
                    return None;
                }
                if runs_new {
                    if d.state.as_deref() == Some("pending_verify") {
                        self.advance(Phase::Confirming);
                        return None;
                    }
                    return Some(Outcome::Succeeded);
                }
                // Back online on another image after a reboot: ask the device what happened.
                if phase_rank(self.phase) >= phase_rank(Phase::Rebooting) {
                    return self.poll().await;
                }
                None
            }
        }
    }

    fn on_report(&mut self, r: &Report) -> Option<Outcome> {
        if r.deployment != self.spec.deployment {
            return None;
        }
        match r.phase {
            ReportPhase::Downloading => {
                self.bytes = self.bytes.max(r.bytes);
                self.advance(Phase::Downloading);
                None
            }
            ReportPhase::Verifying => {
                self.bytes = self.bytes.max(r.bytes);
                self.advance(Phase::Verifying);
                None
            }
            ReportPhase::Rebooting => {
                self.advance(Phase::Rebooting);
                None
            }
            ReportPhase::Booted => match &r.sha256 {
                Some(sha) if sha.as_str() == self.fw_sha => Some(Outcome::Succeeded),
                other => Some(Outcome::RolledBack {
                    error: format!(
                        "the device came back running another image ({})",
                        other.as_ref().map_or("unknown", |s| s.as_str())
                    ),
                }),
            },
            ReportPhase::Failed => Some(Outcome::Failed {
                error: r
                    .error
                    .clone()
                    .unwrap_or_else(|| "the device reported a failure without a reason".into()),
                retryable: true,
            }),
            ReportPhase::RolledBack => Some(Outcome::RolledBack {
                error: r.error.clone().unwrap_or_else(|| {
                    format!(
                        "the new image did not confirm itself; the device went back to {}",
                        r.ver.as_deref().unwrap_or("its previous image")
                    )
                }),
            }),
        }
    }

    /// Asks `/info` what the device runs and what became of our deployment.
    async fn poll(&mut self) -> Option<Outcome> {
        let info = self.env.client.info(self.addr).await.ok()?;
        self.judge(&info)
    }

    /// The first look after a restart: like [`poll`](Self::poll), but a device that is idle on
    /// another image and has never heard of this deployment did not get the trigger (the
    /// server stopped between marking the target and sending it): start over.
    async fn first_look_after_restart(&mut self) -> Option<Outcome> {
        let info = self.env.client.info(self.addr).await.ok()?;
        if let Some(end) = self.judge(&info) {
            return Some(end);
        }
        let knows_ours = info
            .last
            .as_ref()
            .is_some_and(|l| l.deployment == self.spec.deployment);
        (!knows_ours && info.state.as_str() == "idle").then_some(Outcome::NotStarted)
    }

    /// What `/info` says about this attempt, if it has ended.
    fn judge(&mut self, info: &Info) -> Option<Outcome> {
        if info.sha256.as_str() == self.fw_sha {
            if info.state.as_str() == "pending_verify" {
                self.advance(Phase::Confirming);
                return None;
            }
            return Some(Outcome::Succeeded);
        }
        if let Some(last) = &info.last
            && last.deployment == self.spec.deployment
        {
            let why = last.error.clone();
            return match last.result {
                ReportPhase::RolledBack => Some(Outcome::RolledBack {
                    error: why.unwrap_or_else(|| {
                        format!(
                            "the new image did not confirm itself; the device went back to {}",
                            info.ver
                        )
                    }),
                }),
                ReportPhase::Failed => Some(Outcome::Failed {
                    error: why.unwrap_or_else(|| "the device reported a failure".into()),
                    retryable: true,
                }),
                ReportPhase::Booted => Some(Outcome::RolledBack {
                    error: format!(
                        "the device runs {} ({}), not the deployed image",
                        info.ver, info.sha256
                    ),
                }),
                ReportPhase::Downloading => {
                    self.advance(Phase::Downloading);
                    None
                }
                ReportPhase::Verifying => {
                    self.advance(Phase::Verifying);
                    None
                }
                ReportPhase::Rebooting => {
                    self.advance(Phase::Rebooting);
                    None
                }
            };
        }
        if info.state.as_str() == "updating" {
            self.advance(Phase::Downloading);
        }
        None
    }
}

fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Queued => 0,
        Phase::Preflight => 1,
        Phase::Triggered => 2,
        Phase::Downloading => 3,
        Phase::Verifying => 4,
        Phase::Rebooting => 5,
        Phase::Confirming => 6,
        Phase::Done => 7,
    }
}
