//! One simulated ESP32 at run time: the device model plus the app that speaks PROTOCOL.md.
//!
//! [`spawn_node`] provisions (or re-opens) a device in its state directory, boots it, and runs
//! its app in a task until the shutdown token fires. The app is what a real ESP32 running an
//! Aegis-speaking firmware does:
//!
//! - while **online** it serves the control endpoint ([`crate::control`]) on its own IP and
//!   port and announces itself by mDNS with the TXT keys of PROTOCOL.md section 1, announcing
//!   again whenever `ver`, `sha`, `slot` or `state` changes;
//! - an accepted trigger hands the update to [`crate::updater`], which downloads, verifies,
//!   writes and reboots;
//! - across a **reboot** it sends an mDNS goodbye, closes its endpoint, stays away for
//!   [`Timing::boot_time`], lets the bootloader (the model) pick the slot, and comes back with
//!   a fresh nonce; a freshly booted image that is `pending_verify` runs its self-test (and
//!   marks itself valid), or hangs until the watchdog resets it, as its [`SimBehavior`] says.
//!
//! Everything the app knows lives in one [`Node`] behind an `Arc`; the status a caller sees is
//! a [`NodeStatus`] on a `watch` channel ([`NodeHandle::subscribe`]), so tests wait for events
//! rather than sleeping. All delays are `tokio::time`, so a paused clock runs them instantly.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_protocol::{
    DeviceId, DeviceState, LastAttempt, Nonce, Phase, PublicKey, Sha256Hex, Slot, TxtRecord,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::announce::{Announcement, Announcer};
use crate::control::Endpoint;
use crate::faults::FaultPlan;
use crate::model::{
    self, AppState, BlobStore, BootOutcome, Device, DeviceConfig, ModelError, Tear,
};
use crate::timing::Timing;
use crate::updater::{self, Pending};

/// Everything one simulated device is made of.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Device id: 12 lower-case hex digits (the Wi-Fi station MAC).
    pub id: String,
    /// Hostname, also the mDNS instance name.
    pub hostname: String,
    /// The device's own IPv4 address: the control endpoint binds it, downloads come from it.
    pub ip: Ipv4Addr,
    /// Control endpoint port (80 on a typical ESP32 app).
    pub port: u16,
    /// The chip the device is.
    pub chip: Chip,
    /// Size of each OTA slot in bytes (a multiple of 4096).
    pub slot_size: u64,
    /// The server public key the device was built with; `None` accepts unsigned triggers.
    pub trusted_key: Option<PublicKey>,
    /// How long things take.
    pub timing: Timing,
    /// What goes wrong on this device.
    pub faults: FaultPlan,
    /// State directory of this device (flash contents, otadata).
    pub dir: PathBuf,
    /// The image flashed at the factory, used when `dir` holds no device yet.
    pub factory_image: FactoryImage,
}

/// The image a device is provisioned with.
#[derive(Debug, Clone)]
pub enum FactoryImage {
    /// Build a valid image for the device's chip with this descriptor (it boots normally).
    Build {
        /// `esp_app_desc_t.version`.
        version: String,
        /// `esp_app_desc_t.project_name`.
        project: String,
        /// `esp_app_desc_t.secure_version`.
        secure_version: u32,
    },
    /// These exact image bytes.
    Bytes(Arc<[u8]>),
}

impl FactoryImage {
    /// A buildable factory image of this version and project.
    pub fn build(version: impl Into<String>, project: impl Into<String>) -> Self {
        FactoryImage::Build {
            version: version.into(),
            project: project.into(),
            secure_version: 0,
        }
    }

    fn bytes(&self, chip: Chip) -> Result<Arc<[u8]>, NodeError> {
        match self {
            FactoryImage::Bytes(b) => Ok(Arc::clone(b)),
            FactoryImage::Build {
                version,
                project,
                secure_version,
            } => ImageBuilder::new(chip)
                .version(version.clone())
                .project(project.clone())
                .secure_version(*secure_version)
                .behavior(SimBehavior::Boots)
                .build()
                .map(Into::into)
                .map_err(|e| NodeError::FactoryImage(e.to_string())),
        }
    }
}

/// Why a node could not be started.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configured id is not a device id.
    #[error("device id {id:?} is not valid: {reason}")]
    BadId {
        /// The configured id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The factory image could not be built.
    #[error("could not build the factory image: {0}")]
    FactoryImage(String),
    /// The device model refused.
    #[error("the device model failed: {0}")]
    Model(#[from] ModelError),
    /// The control endpoint could not listen.
    #[error(
        "could not listen on {addr}: {source}; is the address local (run inside a lab namespace) and the port free?"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddrV4,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A blocking model task died.
    #[error("a device task failed: {0}")]
    Task(String),
}

/// Whether the device can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Running an app: endpoint open, announced.
    Online,
    /// Rebooting or powered off: endpoint closed, not announced.
    Offline,
    /// Gone for good (the `never-return` fault, or shut down).
    Silent,
}

/// A snapshot of one device, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Online, rebooting, or gone.
    pub power: Power,
    /// Running app version.
    pub version: String,
    /// Running app project.
    pub project: String,
    /// SHA-256 of the running image.
    pub sha256: Sha256Hex,
    /// Running slot.
    pub slot: Slot,
    /// OTA state, as `/info` says it.
    pub state: DeviceState,
    /// The last update attempt.
    pub last: Option<LastAttempt>,
    /// How many times the device has booted since the node started (1 after start).
    pub boots: u64,
}

/// The owner's handle on a running node.
#[derive(Debug)]
pub struct NodeHandle {
    node: Arc<Node>,
    status: watch::Receiver<NodeStatus>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl NodeHandle {
    /// The current status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// The device id.
    pub fn id(&self) -> &DeviceId {
        &self.node.id
    }

    /// The control endpoint address.
    pub fn addr(&self) -> std::net::SocketAddrV4 {
        std::net::SocketAddrV4::new(self.node.ip, self.node.port)
    }

    /// Waits until the status satisfies `f` (checked at once and on every change); `false` if
    /// the status can no longer change. Bound it with a timeout: a silent node never changes.
    pub async fn wait_for(&self, f: impl FnMut(&NodeStatus) -> bool) -> bool {
        let mut rx = self.status.clone();
        rx.wait_for(f).await.is_ok()
    }

    /// Pulls the plug and plugs it back in: whatever the device was doing stops mid-way
    /// (a half-written slot stays half written), the device is offline for the boot time, and
    /// the bootloader boots whatever the flash holds.
    pub async fn power_cycle(&self) -> Result<(), NodeError> {
        let old = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.node.epoch().cancel();
        if let Some(task) = old {
            let _ = task.await;
        }
        if self.node.shutdown.is_cancelled() {
            return Ok(());
        }
        let task = self.node.start_epoch(Boot::PowerOn);
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    /// Stops this node (goodbye, endpoint closed) and waits for it; other nodes sharing the
    /// owner's shutdown token keep running.
    pub async fn shutdown(&self) {
        self.node.shutdown.cancel();
        self.join().await;
    }

    /// Waits until the node has stopped (its shutdown token fired).
    pub async fn join(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Provisions the device in `cfg.dir` with the factory image if none is there (else re-opens
/// it: the simulator was restarted, a power cycle), boots it and starts its app. When this
/// returns the endpoint is listening and the device is announced.
pub async fn spawn_node(
    cfg: NodeConfig,
    blobs: Arc<BlobStore>,
    announcer: Announcer,
    shutdown: CancellationToken,
) -> Result<NodeHandle, NodeError> {
    let id = DeviceId::parse(&cfg.id).map_err(|e| NodeError::BadId {
        id: cfg.id.clone(),
        reason: e.to_string(),
    })?;
    let proto_chip = aegis_protocol::Chip::parse(cfg.chip.name())
        .map_err(|e| NodeError::FactoryImage(e.to_string()))?;
    let factory = cfg.factory_image.bytes(cfg.chip)?;
    let dev_cfg = DeviceConfig {
        id: cfg.id.clone(),
        chip: cfg.chip,
        slot_size: cfg.slot_size,
    };
    let (device, outcome) = {
        let (dir, blobs) = (cfg.dir.clone(), Arc::clone(&blobs));
        blocking(move || Device::open_or_provision(&dir, dev_cfg, &factory, blobs)).await??
    };
    let initial = status_of(&device, Power::Offline, false, None, 1);
    let (status_tx, status_rx) = watch::channel(initial);
    let (tx, rx) = mpsc::channel(1);
    // The node's own token: the owner's token stops it, and so does `NodeHandle::shutdown`,
    // which must not stop the owner's other nodes.
    let shutdown = shutdown.child_token();
    let node = Arc::new_cyclic(|me| Node {
        me: me.clone(),
        id,
        hostname: cfg.hostname,
        ip: cfg.ip,
        port: cfg.port,
        chip: cfg.chip,
        proto_chip,
        trusted_key: cfg.trusted_key,
        timing: cfg.timing,
        faults: cfg.faults,
        announcer,
        status: status_tx,
        inner: Mutex::new(Inner {
            device,
            nonce: Nonce::random(),
            updating: false,
            last: None,
            pending: None,
            power: Power::Offline,
            boots: 1,
            epoch: shutdown.child_token(),
            triggers: Some(tx),
            quiet_until: None,
            announce_deferred: false,
        }),
        shutdown,
        endpoint: tokio::sync::Mutex::new(None),
    });
    // The first boot's endpoint opens here, so that a bind failure reaches the caller.
    node.come_online().await?;
    let task = tokio::spawn(Arc::clone(&node).app(Boot::Booted(outcome), rx));
    Ok(NodeHandle {
        node,
        status: status_rx,
        task: Mutex::new(Some(task)),
    })
}

/// Runs model work that reads or hashes whole images off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))
}

/// How an app run starts.
#[derive(Debug)]
pub(crate) enum Boot {
    /// The device has just booted with this outcome.
    Booted(BootOutcome),
    /// Power comes back after a cut: dark for the boot time, then the bootloader runs.
    PowerOn,
}

/// One device's shared state: configuration, the model, and the app's variables.
#[derive(Debug)]
pub(crate) struct Node {
    me: Weak<Node>,
    pub(crate) id: DeviceId,
    pub(crate) hostname: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) chip: Chip,
    pub(crate) proto_chip: aegis_protocol::Chip,
    pub(crate) trusted_key: Option<PublicKey>,
    pub(crate) timing: Timing,
    pub(crate) faults: FaultPlan,
    announcer: Announcer,
    pub(crate) shutdown: CancellationToken,
    status: watch::Sender<NodeStatus>,
    inner: Mutex<Inner>,
    endpoint: tokio::sync::Mutex<Option<Endpoint>>,
}

/// The app's variables (RAM, and the little a real app keeps in NVS), and the model.
#[derive(Debug)]
pub(crate) struct Inner {
    /// The device model (flash, otadata, bootloader).
    pub(crate) device: Device,
    /// The nonce `/info` hands out.
    pub(crate) nonce: Nonce,
    /// An update is in progress (state `updating`).
    pub(crate) updating: bool,
    /// The last attempt, for `/info` (NVS).
    pub(crate) last: Option<LastAttempt>,
    /// The attempt in flight, across reboots (NVS): how to end and report it.
    pub(crate) pending: Option<Pending>,
    power: Power,
    boots: u64,
    /// Cancelled by a power cut: every task of the current power-on ends.
    epoch: CancellationToken,
    /// Accepted triggers go to the app task through this.
    triggers: Option<mpsc::Sender<aegis_protocol::Trigger>>,
    /// No announcement before this instant: a goodbye was sent (see [`GOODBYE_HOLD`]).
    quiet_until: Option<Instant>,
    /// An announcement waits for `quiet_until`.
    announce_deferred: bool,
}

/// How long after a goodbye the device stays unannounced. A browser deletes records one
/// second after their goodbye (RFC 6762 section 10.1), and `mdns-sd` and python `zeroconf`
/// both drop a re-announcement that arrives inside that second; a real ESP32 takes longer
/// than this to reboot anyway, so only fast timing ever waits for it.
pub const GOODBYE_HOLD: Duration = Duration::from_millis(1200);

impl Inner {
    /// The state `/info` and the TXT record show.
    pub(crate) fn state(&self) -> DeviceState {
        state_of(&self.device, self.updating)
    }
}

fn state_of(device: &Device, updating: bool) -> DeviceState {
    if updating {
        DeviceState::Updating
    } else if device.running().state == AppState::PendingVerify {
        DeviceState::PendingVerify
    } else {
        DeviceState::Idle
    }
}

fn status_of(
    device: &Device,
    power: Power,
    updating: bool,
    last: Option<LastAttempt>,
    boots: u64,
) -> NodeStatus {
    let running = device.running();
    NodeStatus {
        power,
        version: running.version.clone(),
        project: running.project.clone(),
        sha256: Sha256Hex::from_bytes(&running.sha256),
        slot: proto_slot(running.slot),
        state: state_of(device, updating),
        last,
        boots,
    }
}

/// The protocol's name for a model slot.
pub(crate) fn proto_slot(slot: model::Slot) -> Slot {
    Slot::parse(slot.label()).unwrap_or(Slot::Factory)
}

impl Node {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic elsewhere mid-update; the values are still the best
        // knowledge there is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn epoch(&self) -> CancellationToken {
        self.lock().epoch.clone()
    }

    /// Starts a new power-on: a fresh epoch token and trigger channel, and the app task.
    fn start_epoch(self: &Arc<Self>, boot: Boot) -> JoinHandle<()> {
        let (tx, rx) = mpsc::channel(1);
        {
            let mut inner = self.lock();
            inner.epoch = self.shutdown.child_token();
            inner.triggers = Some(tx);
        }
        tokio::spawn(Arc::clone(self).app(boot, rx))
    }

    /// The app of one power-on, until the power is cut or the node shuts down.
    async fn app(
        self: Arc<Self>,
        boot: Boot,
        mut triggers: mpsc::Receiver<aegis_protocol::Trigger>,
    ) {
        let epoch = self.epoch();
        let this = Arc::clone(&self);
        let run = async move {
            let outcome = match boot {
                Boot::Booted(outcome) => outcome,
                Boot::PowerOn => this.power_loss(PowerCut::Plain).await?,
            };
            this.after_boot(outcome).await?;
            while let Some(trigger) = triggers.recv().await {
                if !updater::run(&this, trigger).await? {
                    // Gone for good (`never-return`): nothing answers any more.
                    std::future::pending::<()>().await;
                }
            }
            Ok::<(), NodeError>(())
        };
        if let Some(Err(e)) = epoch.run_until_cancelled(run).await {
            tracing::warn!(device = %self.id, "device stopped: {e}");
        }
        self.lock().triggers = None;
        if self.shutdown.is_cancelled() {
            self.go_offline().await;
            self.set_power(Power::Silent);
        } else {
            // A power cut: the endpoint just vanishes.
            self.go_offline().await;
            self.lock().updating = false;
            self.publish();
        }
    }

    /// What the app does once the bootloader has started it: come online with a fresh nonce;
    /// an image still `pending_verify` runs its self-test and marks itself valid, or hangs
    /// until the watchdog resets it (then the bootloader rolls back). Once settled on a valid
    /// image, the attempt in flight (if any) ends: `booted` when the running image is the one
    /// deployed, `rolled_back` when the device is back on another after selecting it, `failed`
    /// when the power failed before the new slot was selected.
    pub(crate) async fn after_boot(
        self: &Arc<Self>,
        outcome: BootOutcome,
    ) -> Result<(), NodeError> {
        let mut rollback_reason = outcome.reason;
        loop {
            self.come_online().await?;
            let (state, behavior) = {
                let inner = self.lock();
                let r = inner.device.running();
                (r.state, r.behavior)
            };
            if state == AppState::PendingVerify {
                if behavior == SimBehavior::Boots {
                    tokio::time::sleep(self.timing.self_test).await;
                    let marked = self.lock().device.self_test();
                    if let Err(e) = marked {
                        tracing::warn!(device = %self.id, "self-test could not confirm: {e}");
                    }
                    self.publish();
                    self.announce();
                } else {
                    // Hangs (or crashes late): the task watchdog resets it, and the bootloader
                    // aborts the unconfirmed image.
                    let wait = if behavior == SimBehavior::NeverConfirms {
                        self.timing.hang_reset
                    } else {
                        Duration::ZERO
                    };
                    tokio::time::sleep(wait).await;
                    tracing::info!(device = %self.id, "watchdog reset of an unconfirmed image");
                    self.go_offline().await;
                    let outcome = self.reboot().await?;
                    rollback_reason = outcome.reason.or(Some(format!(
                        "the new image did not confirm itself within {:?}; the watchdog reset it and the bootloader rolled back",
                        self.timing.hang_reset
                    )));
                    continue;
                }
            }
            break;
        }
        let (pending, running_sha, state) = {
            let inner = self.lock();
            let r = inner.device.running();
            (inner.pending.clone(), r.sha256, r.state)
        };
        let Some(pending) = pending else {
            return Ok(());
        };
        if !pending.committed {
            self.finish_attempt(
                Phase::Failed,
                Some(
                    "power_loss: the power failed during the update, before the new image was \
                     selected; the previous image is running"
                        .into(),
                ),
            )
            .await;
        } else if running_sha == pending.hash.to_bytes() && state == AppState::Valid {
            self.finish_attempt(Phase::Booted, None).await;
        } else {
            let reason = rollback_reason.unwrap_or_else(|| {
                "the new image did not boot to a confirmed state; the previous image is running"
                    .into()
            });
            self.finish_attempt(Phase::RolledBack, Some(format!("rolled_back: {reason}")))
                .await;
        }
        Ok(())
    }

    /// Cuts the power (a torn write stays torn), stays dark for the boot time, then powers on:
    /// the bootloader boots what the flash holds.
    pub(crate) async fn power_loss(
        self: &Arc<Self>,
        cut: PowerCut,
    ) -> Result<BootOutcome, NodeError> {
        self.go_offline().await;
        {
            let mut inner = self.lock();
            inner.updating = false;
            match cut {
                PowerCut::Plain => inner.device.power_loss(),
                PowerCut::SettingBootSlot => inner.device.set_boot_slot_torn(Tear::MidWrite)?,
                PowerCut::Booting => inner.device.reboot_torn(Tear::MidWrite)?,
            }
        }
        self.publish();
        tokio::time::sleep(self.timing.boot_time).await;
        let outcome = self.lock().device.power_on()?;
        self.booted();
        Ok(outcome)
    }

    /// A software reset: dark for the boot time, then the bootloader decides. The caller has
    /// already taken the device offline.
    pub(crate) async fn reboot(&self) -> Result<BootOutcome, NodeError> {
        tokio::time::sleep(self.timing.boot_time).await;
        let outcome = {
            let mut inner = self.lock();
            inner.updating = false;
            inner.device.reboot()?
        };
        self.booted();
        Ok(outcome)
    }

    /// A new boot: RAM is fresh, so is the nonce.
    fn booted(&self) {
        {
            let mut inner = self.lock();
            inner.nonce = Nonce::random();
            inner.boots += 1;
        }
        self.publish();
    }

    /// Records the end of the attempt in flight (`/info` `last`), re-announces, and sends the
    /// attempt's final report.
    pub(crate) async fn finish_attempt(&self, phase: Phase, error: Option<String>) {
        let pending = {
            let mut inner = self.lock();
            inner.updating = false;
            let pending = inner.pending.take();
            if let Some(p) = &pending {
                inner.last = Some(LastAttempt {
                    deployment: p.deployment.clone(),
                    result: phase,
                    error: error.clone(),
                });
            }
            pending
        };
        self.publish();
        self.announce();
        if let Some(p) = pending {
            updater::send_final_report(self, &p, phase, error).await;
        }
    }

    /// Notes how far the attempt in flight got (`/info` `last`).
    pub(crate) fn set_phase(&self, phase: Phase) {
        let mut inner = self.lock();
        if let Some(p) = &inner.pending {
            let deployment = p.deployment.clone();
            inner.last = Some(LastAttempt {
                deployment,
                result: phase,
                error: None,
            });
        }
    }

    /// Opens the endpoint, marks the node online and announces it.
    pub(crate) async fn come_online(self: &Arc<Self>) -> Result<(), NodeError> {
        let mut endpoint = self.endpoint.lock().await;
        if endpoint.is_none() {
            *endpoint = Some(Endpoint::start(Arc::clone(self)).await?);
        }
        drop(endpoint);
        self.set_power(Power::Online);
        self.announce();
        Ok(())
    }

    /// Withdraws the announcement (an mDNS goodbye), closes the endpoint, marks the node
    /// offline. A real device sends the goodbye only before a deliberate reboot and otherwise
    /// just stops answering until its records expire; the simulator always withdraws, so a
    /// browser never sees a device that cannot answer.
    pub(crate) async fn go_offline(&self) {
        let was_online = {
            let mut inner = self.lock();
            std::mem::replace(&mut inner.power, Power::Offline) == Power::Online
        };
        if was_online {
            self.announcer.goodbye(&self.hostname);
            self.lock().quiet_until = Some(Instant::now() + GOODBYE_HOLD);
        }
        self.publish();
        let endpoint = self.endpoint.lock().await.take();
        if let Some(endpoint) = endpoint {
            endpoint.stop().await;
        }
    }

    fn set_power(&self, power: Power) {
        self.lock().power = power;
        self.publish();
    }

    /// Marks the device gone for good (`never-return`).
    pub(crate) fn set_silent(&self) {
        self.set_power(Power::Silent);
    }

    /// Queues the trigger for the app task; false when the app is not taking any.
    pub(crate) fn start_update(&self, trigger: aegis_protocol::Trigger) -> bool {
        let inner = self.lock();
        match &inner.triggers {
            Some(tx) => tx.try_send(trigger).is_ok(),
            None => false,
        }
    }

    /// Sends the status to subscribers (only when it changed).
    pub(crate) fn publish(&self) {
        let status = {
            let inner = self.lock();
            status_of(
                &inner.device,
                inner.power,
                inner.updating,
                inner.last.clone(),
                inner.boots,
            )
        };
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }

    /// The TXT record for the running image.
    pub(crate) fn txt(&self) -> TxtRecord {
        let inner = self.lock();
        let running = inner.device.running();
        let mut txt = TxtRecord::new(
            self.id.clone(),
            running.version.clone(),
            self.hostname.clone(),
            self.ip,
        );
        txt.proj = Some(running.project.clone());
        txt.chip = Some(self.proto_chip.clone());
        txt.sha = Some(Sha256Hex::from_bytes(&running.sha256).prefix());
        txt.slot = Some(proto_slot(running.slot));
        txt.state = Some(inner.state());
        txt.key = self.trusted_key.as_ref().map(PublicKey::key_id);
        txt
    }

    /// Announces the current TXT record while online (a no-op otherwise). The responder
    /// replaces the previous record of the same hostname.
    pub(crate) fn announce(&self) {
        {
            let mut inner = self.lock();
            if inner.power != Power::Online {
                return;
            }
            if let Some(until) = inner.quiet_until.filter(|&t| t > Instant::now()) {
                if !std::mem::replace(&mut inner.announce_deferred, true) {
                    let me = self.me.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(until).await;
                        if let Some(node) = me.upgrade() {
                            node.lock().announce_deferred = false;
                            node.announce();
                        }
                    });
                }
                return;
            }
        }
        let pairs = match self.txt().to_pairs() {
            Ok(pairs) => pairs,
            Err(e) => {
                tracing::warn!(device = %self.id, "cannot announce: {e}");
                return;
            }
        };
        let announcement = Announcement {
            hostname: self.hostname.clone(),
            ip: self.ip,
            port: self.port,
            txt: pairs,
        };
        if let Err(e) = self.announcer.announce(&announcement) {
            tracing::warn!(device = %self.id, "cannot announce: {e}");
        }
    }
}

/// Where a power cut strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PowerCut {
    /// Anywhere no flash write of otadata is in progress (download, idle, a user's cycle).
    Plain,
    /// In the middle of the otadata write that selects the new slot.
    SettingBootSlot,
    /// In the middle of the bootloader's first otadata write after the reboot.
    Booting,
}
