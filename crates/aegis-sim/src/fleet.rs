//! The fleet runner: many simulated devices in one process (`aegis sim`).
//!
//! A [`FleetConfig`] describes groups of identical devices (count, project, version, chip, a
//! few knobs) plus fleet-wide settings. [`plan`] turns it into one [`DevicePlan`] per device,
//! deterministically: device `n` (1-based, in group order) is `esp-sim-00n`, has the id
//! `240ac4` + `n` in 6 hex digits (an Espressif MAC prefix), the address `ip_base + n - 1`
//! and the port `port_base + n - 1` (or `port_base` for all, with `same_port`), and the faults
//! the spec assigns it. [`Fleet::start`] builds each group's factory image once (so the blob
//! store holds one copy per group), starts one mDNS responder, and spawns every device with
//! [`node::spawn_node`]; [`Fleet::shutdown`] stops them, sends the goodbyes and removes a
//! temporary state directory. [`run`] is the blocking entry point of the `aegis sim` command:
//! start, print a summary, run until Ctrl-C (or a set duration), shut down cleanly.
//!
//! State lives under the state directory: `blobs/` (the shared image store) and
//! `devices/<id>/` (each device's flash). With a persistent `--state-dir`, a restart is a
//! power cycle: every device comes back running what it had, whatever the flags say now.

mod file;
mod stats;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_protocol::PublicKey;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::announce::{AnnounceError, AnnounceOptions, Announcer, Interfaces};
use crate::faults::{DeviceRef, FaultPlan, FaultSpec};
use crate::model::{BlobStore, DEFAULT_SLOT_SIZE};
use crate::node::{self, FactoryImage, NodeConfig, NodeError, NodeHandle};
use crate::timing::Timing;

pub use file::{FleetFile, parse_bandwidth, parse_duration, parse_slot_size};
pub use stats::Sample;

/// 127.255.255.255, the broadcast address of 127.0.0.0/8: not a device address.
const LAST_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

/// The most devices one simulator runs (ids and hostnames stay unique far beyond this; memory
/// and file descriptors do not).
pub const MAX_DEVICES: usize = 100_000;

/// How many devices start at the same time (each provisions its flash and binds a socket).
const START_CONCURRENCY: usize = 16;

/// Devices of one kind.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// How many devices.
    pub count: u32,
    /// `esp_app_desc_t.project_name` of the factory image.
    pub project: String,
    /// `esp_app_desc_t.version` of the factory image.
    pub version: String,
    /// The chip (the factory image is built for it; images for others are rejected).
    pub chip: Chip,
    /// `esp_app_desc_t.secure_version` of the factory image.
    pub secure_version: u32,
    /// Fault rules within the group (`dev=1` is the group's first device).
    pub faults: FaultSpec,
    /// Download bandwidth of the group's devices, overriding the fleet's timing;
    /// `Some(None)` is unlimited.
    pub bandwidth: Option<Option<u64>>,
    /// Size of each OTA slot in bytes.
    pub slot_size: u64,
}

impl GroupConfig {
    /// `count` devices running `demo` 1.0.0 on an ESP32 with 1.5 MiB slots, no faults.
    pub fn new(count: u32) -> Self {
        Self {
            count,
            project: "demo".into(),
            version: "1.0.0".into(),
            chip: Chip::Esp32,
            secure_version: 0,
            faults: FaultSpec::default(),
            bandwidth: None,
            slot_size: DEFAULT_SLOT_SIZE,
        }
    }
}

/// Where device state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDir {
    /// A fresh directory under the system temp dir, removed on shutdown.
    Temporary,
    /// This directory, kept: a restart finds every device as it was.
    Persistent(PathBuf),
}

/// Everything `aegis sim` needs to run a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The groups; device numbers follow their order.
    pub groups: Vec<GroupConfig>,
    /// Address of device 1; the others follow consecutively.
    pub ip_base: Ipv4Addr,
    /// Control port of device 1; the others follow consecutively unless `same_port`.
    pub port_base: u16,
    /// Every device on `port_base` (as real ESP32s all use port 80).
    pub same_port: bool,
    /// Where device state lives.
    pub state_dir: StateDir,
    /// Delays of every device (a group's `bandwidth` overrides the bandwidth).
    pub timing: Timing,
    /// Fault rules over the whole fleet (`dev=N` counts fleet-wide), applied after each
    /// group's own rules.
    pub faults: FaultSpec,
    /// Seed of the fault assignment (`frac=`).
    pub seed: u64,
    /// The server public key every device trusts; `None`: devices accept unsigned triggers.
    pub trusted_key: Option<PublicKey>,
    /// The mDNS responder; `None` picks IPv4 loopback when every address is a loopback one,
    /// else every interface.
    pub announce: Option<AnnounceOptions>,
}

impl FleetConfig {
    /// One group of `count` default devices from 127.0.1.1, ports from 8080, realistic
    /// timing, a temporary state dir.
    pub fn new(count: u32) -> Self {
        Self {
            groups: vec![GroupConfig::new(count)],
            ip_base: Ipv4Addr::new(127, 0, 1, 1),
            port_base: 8080,
            same_port: false,
            state_dir: StateDir::Temporary,
            timing: Timing::realistic(),
            faults: FaultSpec::default(),
            seed: 0,
            trusted_key: None,
            announce: None,
        }
    }

    /// Number of devices over all groups.
    pub fn device_count(&self) -> usize {
        self.groups.iter().map(|g| g.count as usize).sum()
    }
}

/// Why the fleet cannot run.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the fleet has no devices: give --count 1 or more, or a fleet file with groups")]
    Empty,
    #[error(
        "{count} devices are more than one simulator runs ({MAX_DEVICES}): start several with \
         different --ip-base values"
    )]
    TooMany { count: usize },
    #[error(
        "{count} devices from {base} run past the last address {last}: use a lower --ip-base \
         or fewer devices"
    )]
    AddressRange {
        count: usize,
        base: Ipv4Addr,
        last: &'static str,
    },
    #[error(
        "{count} devices from port {base} run past port 65535: use a lower --port-base, \
         fewer devices, or --same-port"
    )]
    PortRange { count: usize, base: u16 },
    #[error("the fleet file {file} is invalid: {reason}")]
    FleetFile { file: String, reason: String },
    #[error("the state directory {path} cannot be used: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the factory image for group {group} ({what}): {reason}")]
    FactoryImage {
        group: usize,
        what: String,
        reason: String,
    },
    #[error("could not start the mDNS responder: {0}")]
    Announce(#[from] AnnounceError),
    #[error("device {hostname} ({ip}:{port}) could not start: {source}")]
    Node {
        hostname: String,
        ip: Ipv4Addr,
        port: u16,
        #[source]
        source: NodeError,
    },
    #[error("could not start the async runtime or the signal handler: {0}")]
    Runtime(#[source] std::io::Error),
}

/// One device as the fleet plans it.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    /// Position in the fleet, 0-based.
    pub index: usize,
    /// Device id (12 hex digits).
    pub id: String,
    /// Hostname and mDNS instance name.
    pub hostname: String,
    /// Its own address.
    pub ip: Ipv4Addr,
    /// Control port.
    pub port: u16,
    /// Index of its group in [`FleetConfig::groups`].
    pub group: usize,
    /// Its faults.
    pub faults: FaultPlan,
    /// Its delays.
    pub timing: Timing,
}

/// The id of device `index` (0-based): `240ac4` and the 1-based number in 6 hex digits.
pub fn device_id(index: usize) -> String {
    format!("240ac4{:06x}", (index + 1) & 0xFF_FFFF)
}

/// The hostname of device `index` (0-based) in a fleet of `count`: `esp-sim-001`, with as
/// many digits as the largest number needs (at least 3).
pub fn hostname(index: usize, count: usize) -> String {
    let width = count.to_string().len().max(3);
    format!("esp-sim-{:0width$}", index + 1)
}

/// Lays the fleet out: ids, hostnames, addresses, ports, faults. Pure and deterministic.
pub fn plan(cfg: &FleetConfig) -> Result<Vec<DevicePlan>, FleetError> {
    let count = cfg.device_count();
    if count == 0 {
        return Err(FleetError::Empty);
    }
    if count > MAX_DEVICES {
        return Err(FleetError::TooMany { count });
    }
    let base = u32::from(cfg.ip_base);
    let last_ip = u32::try_from(count - 1)
        .ok()
        .and_then(|n| base.checked_add(n))
        .map(Ipv4Addr::from);
    let in_range = last_ip.is_some_and(|last| {
        !cfg.ip_base.is_loopback() || (last.is_loopback() && last != LAST_LOOPBACK)
    });
    if !in_range {
        return Err(FleetError::AddressRange {
            count,
            base: cfg.ip_base,
            last: if cfg.ip_base.is_loopback() {
                "127.255.255.254"
            } else {
                "255.255.255.255"
            },
        });
    }
    if !cfg.same_port && usize::from(cfg.port_base) + count - 1 > usize::from(u16::MAX) {
        return Err(FleetError::PortRange {
            count,
            base: cfg.port_base,
        });
    }

    let ids: Vec<String> = (0..count).map(device_id).collect();
    let hosts: Vec<String> = (0..count).map(|i| hostname(i, count)).collect();
    let refs: Vec<DeviceRef<'_>> = (0..count)
        .map(|index| DeviceRef {
            index,
            id: &ids[index],
            hostname: &hosts[index],
        })
        .collect();

    // Each group's rules see the group alone (dev=1 is its first device), then the
    // fleet-wide rules see everyone; a later rule of a kind replaces an earlier one.
    let mut group_plans: Vec<FaultPlan> = Vec::with_capacity(count);
    let mut group_of = Vec::with_capacity(count);
    let mut start = 0;
    for (g, group) in cfg.groups.iter().enumerate() {
        let n = group.count as usize;
        let local: Vec<DeviceRef<'_>> = refs[start..start + n]
            .iter()
            .enumerate()
            .map(|(i, r)| DeviceRef { index: i, ..*r })
            .collect();
        let group_seed = cfg.seed ^ (g as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        group_plans.extend(group.faults.assign(&local, group_seed));
        group_of.extend(std::iter::repeat_n(g, n));
        start += n;
    }
    let fleet_plans = cfg.faults.assign(&refs, cfg.seed);

    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let group = &cfg.groups[group_of[index]];
        let mut timing = cfg.timing.clone();
        if let Some(bw) = group.bandwidth {
            timing.bandwidth = bw;
        }
        let n = u32::try_from(index).unwrap_or(u32::MAX);
        let faults = group_plans[index].merged(&fleet_plans[index]);
        out.push(DevicePlan {
            index,
            id: ids[index].clone(),
            hostname: hosts[index].clone(),
            ip: Ipv4Addr::from(base.wrapping_add(n)),
            port: if cfg.same_port {
                cfg.port_base
            } else {
                cfg.port_base
                    .wrapping_add(u16::try_from(index).unwrap_or(0))
            },
            group: group_of[index],
            faults,
            timing,
        });
    }
    Ok(out)
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    devices: Vec<FleetDevice>,
    announcer: Announcer,
    shutdown: CancellationToken,
    state: StateGuard,
    summary: String,
}

/// One running device of a fleet.
#[derive(Debug)]
pub struct FleetDevice {
    /// How it was planned.
    pub plan: DevicePlan,
    /// Its runtime.
    pub node: NodeHandle,
}

impl Fleet {
    /// Starts every device of `cfg`; when it returns, all are listening and announced.
    pub async fn start(cfg: FleetConfig) -> Result<Self, FleetError> {
        let plans = plan(&cfg)?;
        let state = StateGuard::open(&cfg.state_dir)?;
        let blobs = Arc::new(
            BlobStore::open(state.path()).map_err(|e| FleetError::StateDir {
                path: state.path().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?,
        );

        // One factory image per group, shared by its devices (and deduplicated on disk).
        let mut images = Vec::with_capacity(cfg.groups.len());
        for (g, group) in cfg.groups.iter().enumerate() {
            let bytes = ImageBuilder::new(group.chip)
                .version(group.version.clone())
                .project(group.project.clone())
                .secure_version(group.secure_version)
                .behavior(SimBehavior::Boots)
                .build()
                .map_err(|e| FleetError::FactoryImage {
                    group: g + 1,
                    what: format!(
                        "{} {} on {}",
                        group.project,
                        group.version,
                        group.chip.name()
                    ),
                    reason: e.to_string(),
                })?;
            images.push(FactoryImage::Bytes(bytes.into()));
        }

        let announce = cfg.announce.clone().unwrap_or_else(|| AnnounceOptions {
            interfaces: if plans.iter().all(|p| p.ip.is_loopback()) {
                Interfaces::Loopback
            } else {
                Interfaces::All
            },
            ..AnnounceOptions::default()
        });
        let announcer = Announcer::new(announce)?;
        let shutdown = CancellationToken::new();

        let devices_dir = state.path().join("devices");
        let started: Vec<Result<FleetDevice, FleetError>> = futures_util::stream::iter(plans)
            .map(|p| {
                let group = &cfg.groups[p.group];
                let node_cfg = NodeConfig {
                    id: p.id.clone(),
                    hostname: p.hostname.clone(),
                    ip: p.ip,
                    port: p.port,
                    chip: group.chip,
                    slot_size: group.slot_size,
                    trusted_key: cfg.trusted_key,
                    timing: p.timing.clone(),
                    faults: p.faults.clone(),
                    dir: devices_dir.join(&p.id),
                    factory_image: images[p.group].clone(),
                };
                let (blobs, announcer, token) =
                    (Arc::clone(&blobs), announcer.clone(), shutdown.clone());
                async move {
                    match node::spawn_node(node_cfg, blobs, announcer, token).await {
                        Ok(node) => Ok(FleetDevice { plan: p, node }),
                        Err(source) => Err(FleetError::Node {
                            hostname: p.hostname,
                            ip: p.ip,
                            port: p.port,
                            source,
                        }),
                    }
                }
            })
            .buffered(START_CONCURRENCY)
            .collect()
            .await;

        let mut devices = Vec::with_capacity(started.len());
        let mut first_error = None;
        for r in started {
            match r {
                Ok(d) => devices.push(d),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let summary = summarize(&cfg, &devices, &state);
        let fleet = Self {
            devices,
            announcer,
            shutdown,
            state,
            summary,
        };
        if let Some(e) = first_error {
            fleet.shutdown().await;
            return Err(e);
        }
        Ok(fleet)
    }

    /// The running devices, in fleet order.
    pub fn devices(&self) -> &[FleetDevice] {
        &self.devices
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// What runs where, for people: device count, addresses, ports, images, faults, state.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Stops every device (each says goodbye), stops the responder, and removes a temporary
    /// state directory.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for d in &self.devices {
            d.node.join().await;
        }
        let announcer = self.announcer;
        // The responder waits for its goodbyes to go out: off the async threads.
        let _ = tokio::task::spawn_blocking(move || announcer.shutdown()).await;
        drop(self.state);
    }
}

/// Options of [`run`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print memory and CPU use at this interval.
    pub report_stats: Option<Duration>,
    /// Stop by itself after this long (for measurements); `None` runs until Ctrl-C.
    pub stop_after: Option<Duration>,
}

/// Runs the fleet until Ctrl-C / SIGTERM (or `stop_after`): the `aegis sim` command. Prints
/// the summary to stdout when every device is up, and a line when it stops.
pub fn run(cfg: FleetConfig, opts: RunOptions) -> Result<(), FleetError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(FleetError::Runtime)?;
    runtime.block_on(async move {
        let before = Sample::now();
        let fleet = Fleet::start(cfg).await?;
        let started = Sample::now();
        println!("{}", fleet.summary());
        println!(
            "Started in {:.1} s. Press Ctrl-C to stop (every device says goodbye).",
            started.at.duration_since(before.at).as_secs_f64()
        );
        let stop = stop_signal(opts.stop_after)?;
        tokio::pin!(stop);
        let mut last = started;
        let mut ticker = opts.report_stats.map(|d| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = async {
                    match ticker.as_mut() {
                        Some(t) => t.tick().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Sample::now();
                    println!("stats: {} devices, {}", fleet.devices().len(), now.describe_since(&last));
                    last = now;
                }
            }
        }
        let end = Sample::now();
        if opts.report_stats.is_some() {
            println!(
                "stats: {} devices, since start: {}",
                fleet.devices().len(),
                end.describe_since(&started)
            );
        }
        println!("Stopping {} devices...", fleet.devices().len());
        fleet.shutdown().await;
        println!("Stopped.");
        Ok(())
    })
}

/// Resolves on Ctrl-C, SIGTERM, or after `after`.
fn stop_signal(
    after: Option<Duration>,
) -> Result<impl std::future::Future<Output = ()>, FleetError> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(FleetError::Runtime)?;
    Ok(async move {
        let timer = async {
            match after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        let term = term.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            () = timer => {}
        }
    })
}

fn summarize(cfg: &FleetConfig, devices: &[FleetDevice], state: &StateGuard) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let n = devices.len();
    let (Some(first), Some(last)) = (devices.first(), devices.last()) else {
        return "aegis sim: no devices".into();
    };
    let (f, l) = (&first.plan, &last.plan);
    let _ = writeln!(
        s,
        "aegis sim: {n} simulated ESP32 device{} ({} .. {})",
        if n == 1 { "" } else { "s" },
        f.hostname,
        l.hostname
    );
    let _ = writeln!(s, "  addresses  {} .. {}", f.ip, l.ip);
    let _ = if cfg.same_port {
        writeln!(s, "  port       {} on every device", f.port)
    } else {
        writeln!(s, "  ports      {} .. {}", f.port, l.port)
    };
    for (g, group) in cfg.groups.iter().enumerate() {
        let _ = writeln!(
            s,
            "  firmware   {} x {} {} on {}{}",
            group.count,
            group.project,
            group.version,
            group.chip.name(),
            if cfg.groups.len() > 1 {
                format!(" (group {})", g + 1)
            } else {
                String::new()
            }
        );
    }
    let key = match &cfg.trusted_key {
        Some(k) => format!("trust key {} (signed triggers only)", k.key_id()),
        None => "no trusted key: unsigned triggers accepted".to_string(),
    };
    let _ = writeln!(s, "  security   {key}");
    let bw = |t: &Timing| match t.bandwidth {
        Some(b) => format!("{} KiB/s", b / 1024),
        None => "unlimited".to_string(),
    };
    let _ = writeln!(
        s,
        "  timing     download {}, boot {:?}",
        bw(&cfg.timing),
        cfg.timing.boot_time
    );
    let faulty: Vec<&FleetDevice> = devices
        .iter()
        .filter(|d| !d.plan.faults.is_empty())
        .collect();
    if faulty.is_empty() {
        let _ = writeln!(s, "  faults     none");
    } else {
        let _ = writeln!(
            s,
            "  faults     {} device(s) (seed {}):",
            faulty.len(),
            cfg.seed
        );
        for d in faulty.iter().take(20) {
            let _ = writeln!(s, "               {}: {}", d.plan.hostname, d.plan.faults);
        }
        if faulty.len() > 20 {
            let _ = writeln!(s, "               ... and {} more", faulty.len() - 20);
        }
    }
    let _ = writeln!(
        s,
        "  mDNS       {} on {}",
        crate::announce::SERVICE_TYPE,
        if f.ip.is_loopback() {
            "loopback"
        } else {
            "all interfaces"
        }
    );
    let _ = match state {
        StateGuard::Temporary(p) => write!(
            s,
            "  state      {} (temporary: removed on exit; --state-dir DIR keeps devices across restarts)",
            p.display()
        ),
        StateGuard::Persistent(p) => write!(s, "  state      {} (kept)", p.display()),
    };
    s
}

/// The state directory, removed on drop when temporary.
#[derive(Debug)]
enum StateGuard {
    Temporary(PathBuf),
    Persistent(PathBuf),
}

impl StateGuard {
    fn open(dir: &StateDir) -> Result<Self, FleetError> {
        let (guard, path) = match dir {
            StateDir::Persistent(p) => (Self::Persistent(p.clone()), p.clone()),
            StateDir::Temporary => {
                let p = std::env::temp_dir().join(format!(
                    "aegis-sim-{}-{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                ));
                (Self::Temporary(p.clone()), p)
            }
        };
        std::fs::create_dir_all(path.join("devices"))
            .map_err(|source| FleetError::StateDir { path, source })?;
        Ok(guard)
    }

    fn path(&self) -> &Path {
        match self {
            Self::Temporary(p) | Self::Persistent(p) => p,
        }
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        if let Self::Temporary(p) = self {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
