//! The server's one entry point: [`serve`] takes a [`ServerConfig`], two pre-bound listeners
//! (operator and device; tests bind port 0) and a shutdown token, starts every part in order —
//! store, keys, audit writer, firmware library, discovery and registry, rollout engine, both
//! HTTP servers — and returns once a shutdown has stopped them all and flushed the audit log.
//!
//! Shutdown, when the token is cancelled: both listeners stop accepting, SSE streams end, idle
//! connections close, requests in flight get [`ServerConfig::shutdown_grace`] to finish, after
//! which every remaining connection (a stalled download, say) is cut; then the rollout engine
//! has stopped its drivers (targets keep their states and are re-confirmed on the next start)
//! and the audit log is flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, NewRecord};
use crate::devices::{HttpProber, PresenceConfig, Registry};
use crate::discovery::DiscoveryConfig;
use crate::events::EventBus;
use crate::firmware::{
    DEFAULT_MAX_UPLOAD, DEFAULT_STALL_TIMEOUT, DownloadService, DownloadTracker, FirmwareLibrary,
    device_listener,
};
use crate::keys;
use crate::rollout::RolloutEngine;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::time::{SharedClock, SystemClock};
use crate::web::shutdown::CutOnCancel;
use crate::web::{self, AppState, TokenPolicy, token_required};
use crate::{Error, Result};

/// The shutdown signal [`serve`] takes (re-exported for the binary).
pub use tokio_util::sync::CancellationToken as ShutdownToken;

/// Everything [`serve`] needs besides its listeners.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Database, firmware files, keys.
    pub data_dir: PathBuf,
    /// Base URL devices use to reach the device listener (`--public-url`); by default its
    /// bound address, or the local address on the route to each device.
    pub public_url: Option<String>,
    /// Limit mDNS discovery to this interface.
    pub mdns_interface: Option<String>,
    /// Run mDNS discovery (tests of the web layer alone switch it off).
    pub discovery: bool,
    /// When the operator listener requires the token.
    pub token_policy: TokenPolicy,
    /// Largest accepted firmware upload, bytes.
    pub upload_limit: usize,
    /// Device connections making no progress for this long are cut.
    pub stall_timeout: Duration,
    /// How long requests in flight may take to finish after shutdown begins (wall time).
    pub shutdown_grace: Duration,
    pub clock: SharedClock,
}

impl ServerConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            public_url: None,
            mdns_interface: None,
            discovery: true,
            token_policy: TokenPolicy::Auto,
            upload_limit: DEFAULT_MAX_UPLOAD,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            shutdown_grace: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "aegis.db";

/// Runs the server until `shutdown` is cancelled (see the module docs for what shutdown does).
pub async fn serve(
    config: ServerConfig,
    operator: TcpListener,
    device: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let operator_addr = operator.local_addr()?;
    let device_addr = device.local_addr()?;
    let clock = config.clock.clone();
    let data_dir = config.data_dir.clone();

    // --- storage and secrets ---
    let dir = data_dir.clone();
    web::blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::internal(format!(
                "cannot create the data directory {}: {e}; pick another with --data-dir",
                dir.display()
            ))
        })
    })
    .await?;
    let db = data_dir.join(DATABASE_FILE);
    let store: Arc<dyn Store> = Arc::new(web::blocking(move || SqliteStore::open(db)).await?);
    let dir = data_dir.clone();
    let key = web::blocking(move || keys::load_or_create_signing_key(&dir)).await?;
    if key.created {
        tracing::info!(path = %key.path.display(), "created the server's signing key");
    }
    let public_key = key.value.public_key();
    tracing::info!(
        fingerprint = %public_key.fingerprint(),
        "signing key loaded; devices trust key id {} (print it for firmware with `aegis keys export`)",
        public_key.key_id()
    );
    let token = if token_required(config.token_policy, operator_addr) {
        let dir = data_dir.clone();
        let token = web::blocking(move || keys::load_or_create_token(&dir)).await?;
        if token.created {
            tracing::warn!(
                "created the operator token (shown only this once; it is kept in {}): {}",
                token.path.display(),
                token.value
            );
        } else {
            tracing::info!(
                "the operator listener requires the token in {}",
                token.path.display()
            );
        }
        Some(Arc::<str>::from(token.value))
    } else {
        None
    };

    // --- domains ---
    let events = EventBus::new();
    let (audit, audit_writer) = AuditLog::start(store.clone(), clock.clone(), events.clone());
    audit
        .record(NewRecord {
            detail: serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "operator": operator_addr.to_string(),
                "device": device_addr.to_string(),
            }),
            ..NewRecord::new("server_started")
        })
        .await;
    let library =
        FirmwareLibrary::open(&data_dir, store.clone(), clock.clone(), events.clone()).await?;
    let tracker = DownloadTracker::new();
    let stop_work = shutdown.child_token();

    // --- discovery + registry ---
    let registry = Registry::open(store.clone(), events.clone(), clock.clone()).await?;
    let mut background = Vec::new();
    let discovery = if config.discovery {
        let (discovery, sightings) = crate::discovery::start(
            DiscoveryConfig {
                interface: config.mdns_interface.clone(),
                ..DiscoveryConfig::default()
            },
            clock.clone(),
        )?;
        background.push(registry.follow(sightings, stop_work.clone()));
        let prober = HttpProber::new(Duration::from_secs(3))?;
        background.push(registry.spawn_presence(
            Arc::new(prober),
            PresenceConfig::default(),
            stop_work.clone(),
        ));
        Some(discovery)
    } else {
        None
    };

    // ===== LEAD: rollout engine wiring =====
    let engine = {
        use crate::rollout::{DeviceUrls, EngineDeps, HttpDeviceClient};
        let client = HttpDeviceClient::new(Duration::from_secs(5))
            .map_err(|e| Error::internal(e.to_string()))?;
        let engine = RolloutEngine::new(EngineDeps {
            store: store.clone(),
            clock: clock.clone(),
            bus: events.clone(),
            audit: audit.clone(),
            key: Arc::new(key.value.clone()),
            client: Arc::new(client),
            tracker: tracker.clone(),
            urls: DeviceUrls::new(config.public_url.clone(), device_addr),
            poll_every: Duration::from_secs(2),
            shutdown: stop_work.clone(),
        });
        let recovered = engine.recover().await?;
        if recovered > 0 {
            tracing::info!(recovered, "resumed unfinished rollouts");
        }
        engine
    };
    // ===== end of rollout engine wiring =====

    // --- HTTP ---
    let state = Arc::new(AppState {
        store: store.clone(),
        registry,
        library: library.clone(),
        engine,
        audit: audit.clone(),
        events: events.clone(),
        clock: clock.clone(),
        upload_limit: config.upload_limit,
        shutdown: shutdown.clone(),
    });
    let operator_app = web::operator_router(state.clone(), token);
    let device_app = web::device::device_router(
        state.clone(),
        DownloadService::new(library.cache().clone(), tracker.clone()),
    );

    // Connections still open `shutdown_grace` after shutdown begins are cut.
    let cut = CancellationToken::new();
    let grace = config.shutdown_grace;
    let cutter = {
        let (shutdown, cut) = (shutdown.clone(), cut.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::select! {
                () = tokio::time::sleep(grace) => cut.cancel(),
                () = cut.cancelled() => {}
            }
        })
    };
    let operator_listener = CutOnCancel::new(operator, cut.clone()).tap_io(|_| {});
    let device_listener = CutOnCancel::new(
        device_listener(device, config.stall_timeout, clock.clone()),
        cut.clone(),
    )
    .tap_io(|_| {});
    let operator_server = axum::serve(
        operator_listener,
        operator_app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let device_server = axum::serve(
        device_listener,
        device_app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tracing::info!(
        "serving the dashboard and API on http://{operator_addr}/ and devices on {device_addr}"
    );
    let (operator_result, device_result) = tokio::join!(async { operator_server.await }, async {
        device_server.await
    });

    // --- stop ---
    cut.cancel();
    let _ = cutter.await;
    stop_work.cancel();
    for task in background {
        let _ = task.await;
    }
    if let Some(discovery) = discovery {
        discovery.stop().await;
    }
    let flushed = audit.shutdown().await;
    audit_writer.await;
    tracing::info!("server stopped");
    operator_result.map_err(|e| Error::internal(format!("the operator listener failed: {e}")))?;
    device_result.map_err(|e| Error::internal(format!("the device listener failed: {e}")))?;
    flushed
}
