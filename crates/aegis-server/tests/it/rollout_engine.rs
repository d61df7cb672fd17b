//! The rollout engine against scripted devices and a manual clock: exact outcomes for every
//! rule (canary, parallelism, threshold, retries, timeouts, abort, retry-failed, restart
//! recovery) without real time or sockets.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_protocol::{
    DeviceId, DeviceState, Info, LastAttempt, Nonce, Report, Sha256Hex, SigningKey, Slot, Trigger,
    report::Phase as ReportPhase,
};
use aegis_server::audit::AuditLog;
use aegis_server::devices::Device;
use aegis_server::events::EventBus;
use aegis_server::firmware::{DownloadTracker, FirmwareEntry};
use aegis_server::rollout::{
    CreateRollout, Created, DeviceClient, DeviceUrls, EngineDeps, Rollout, RolloutEngine,
    RolloutState, Selector, Strategy, TargetSpec, TargetState, TriggerReply, Unreachable,
};
use aegis_server::store::Store;
use aegis_server::store::sqlite::SqliteStore;
use aegis_server::time::{Clock, ManualClock, SharedClock, Timestamp};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

const FW_SHA: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const OLD_SHA: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// What a scripted device does when triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Updates: "updating" for `polls` /info calls, then runs the new image.
    Good { polls: u32 },
    /// Updates, then comes back on the old image (the new one crashed at boot).
    Crash,
    /// Answers 409 busy to the first `n` triggers, then behaves as Good.
    Busy { n: u32 },
    /// Accepts the trigger and is never heard from again.
    Vanish,
    /// Reports `failed` (e.g. hash mismatch) via /info's `last`.
    Fail,
}

#[derive(Debug)]
struct FakeDevice {
    id: DeviceId,
    script: Script,
    sha: String,
    ver: String,
    state: DeviceState,
    polls_left: u32,
    busy_left: u32,
    last: Option<LastAttempt>,
    gone: bool,
    triggers: u32,
}

#[derive(Debug, Default)]
struct Fleet {
    devices: HashMap<SocketAddr, FakeDevice>,
    /// Most devices updating at the same time.
    peak_updating: usize,
}

#[derive(Debug, Clone, Default)]
struct FakeClient(Arc<Mutex<Fleet>>);

impl FakeClient {
    fn fleet(&self) -> std::sync::MutexGuard<'_, Fleet> {
        self.0.lock().unwrap()
    }
}

fn info_of(d: &FakeDevice, addr: SocketAddr) -> Info {
    Info {
        id: d.id.clone(),
        ver: d.ver.clone(),
        proj: "demo".into(),
        chip: aegis_protocol::Chip::Esp32,
        host: format!("dev-{}", d.id),
        ip: match addr.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => unreachable!(),
        },
        sha256: Sha256Hex::parse(&d.sha).unwrap(),
        slot: Slot::Ota(0),
        state: d.state,
        secure_version: 0,
        slot_size: 1_572_864,
        nonce: Nonce::random(),
        last: d.last.clone(),
    }
}

impl DeviceClient for FakeClient {
    fn info(&self, addr: SocketAddr) -> BoxFuture<'_, Result<Info, Unreachable>> {
        Box::pin(async move {
            let mut fleet = self.fleet();
            let d = fleet
                .devices
                .get_mut(&addr)
                .ok_or_else(|| Unreachable("no such device".into()))?;
            if d.gone {
                return Err(Unreachable("no answer".into()));
            }
            if d.state == DeviceState::Updating {
                if d.polls_left > 0 {
                    d.polls_left -= 1;
                } else {
                    let deployment = d.last.as_ref().map(|l| l.deployment.clone()).unwrap();
                    d.state = DeviceState::Idle;
                    match d.script {
                        Script::Good { .. } | Script::Busy { .. } => {
                            d.sha = FW_SHA.into();
                            d.ver = "2.0.0".into();
                            d.last = Some(LastAttempt {
                                deployment,
                                result: ReportPhase::Booted,
                                error: None,
                            });
                        }
                        Script::Crash => {
                            d.last = Some(LastAttempt {
                                deployment,
                                result: ReportPhase::RolledBack,
                                error: Some("the new image crashed at boot".into()),
                            });
                        }
                        Script::Fail => {
                            d.last = Some(LastAttempt {
                                deployment,
                                result: ReportPhase::Failed,
                                error: Some("SHA-256 mismatch".into()),
                            });
                        }
                        Script::Vanish => unreachable!(),
                    }
                }
            }
            Ok(info_of(d, addr))
        })
    }

    fn trigger<'a>(
        &'a self,
        addr: SocketAddr,
        trigger: &'a Trigger,
    ) -> BoxFuture<'a, Result<TriggerReply, Unreachable>> {
        Box::pin(async move {
            let mut fleet = self.fleet();
            let d = fleet.devices.get_mut(&addr).unwrap();
            d.triggers += 1;
            if d.busy_left > 0 {
                d.busy_left -= 1;
                return Ok(TriggerReply::Refused {
                    status: 409,
                    code: "busy".into(),
                    message: "an update is in progress".into(),
                });
            }
            assert!(trigger.sig.is_some(), "triggers are always signed");
            d.state = DeviceState::Updating;
            d.last = Some(LastAttempt {
                deployment: trigger.deployment.clone(),
                result: ReportPhase::Downloading,
                error: None,
            });
            if d.script == Script::Vanish {
                d.gone = true;
            }
            let updating = fleet
                .devices
                .values()
                .filter(|d| d.state == DeviceState::Updating && !d.gone)
                .count();
            fleet.peak_updating = fleet.peak_updating.max(updating);
            Ok(TriggerReply::Accepted)
        })
    }
}

struct Kit {
    engine: RolloutEngine,
    clock: ManualClock,
    client: FakeClient,
    store: Arc<dyn Store>,
    bus: EventBus,
    audit: AuditLog,
    shutdown: CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

fn device_record(i: usize, addr: SocketAddr) -> Device {
    Device {
        id: format!("{i:012x}"),
        hostname: format!("dev-{i:03}"),
        ip: addr.ip().to_string(),
        port: addr.port(),
        version: "1.0.0".into(),
        project: Some("demo".into()),
        chip: Some("esp32".into()),
        sha: Some(OLD_SHA[..16].into()),
        slot: Some("ota_0".into()),
        state: Some("idle".into()),
        proto: 1,
        key: None,
        online: true,
        first_seen: Timestamp(0),
        last_seen: Timestamp(0),
        duplicate: None,
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(std::net::Ipv4Addr::new(
            127,
            0,
            1,
            u8::try_from(i + 1).unwrap(),
        )),
        8080,
    )
}

async fn kit_with(
    db: &std::path::Path,
    dir: Option<tempfile::TempDir>,
    scripts: &[Script],
    clock: ManualClock,
) -> Kit {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    let client = FakeClient::default();
    for (i, s) in scripts.iter().enumerate() {
        store.put_device(&device_record(i, addr(i))).unwrap();
        client.fleet().devices.insert(
            addr(i),
            FakeDevice {
                id: DeviceId::parse(&format!("{i:012x}")).unwrap(),
                script: *s,
                sha: OLD_SHA.into(),
                ver: "1.0.0".into(),
                state: DeviceState::Idle,
                polls_left: match s {
                    Script::Good { polls } => *polls,
                    _ => 1,
                },
                busy_left: match s {
                    Script::Busy { n } => *n,
                    _ => 0,
                },
                last: None,
                gone: false,
                triggers: 0,
            },
        );
    }
    store
        .put_firmware(&FirmwareEntry {
            sha256: FW_SHA.into(),
            size: 1024 * 1024,
            chip: "esp32".into(),
            project: "demo".into(),
            version: "2.0.0".into(),
            idf_version: "v5.2.2".into(),
            secure_version: 0,
            filename: Some("demo.bin".into()),
            notes: None,
            uploaded_at: Timestamp(0),
        })
        .unwrap();
    let shared: SharedClock = Arc::new(clock.clone());
    let bus = EventBus::new();
    let (audit, _writer) = AuditLog::start(store.clone(), shared.clone(), bus.clone());
    let shutdown = CancellationToken::new();
    let engine = RolloutEngine::new(EngineDeps {
        store: store.clone(),
        clock: shared,
        bus: bus.clone(),
        audit: audit.clone(),
        key: Arc::new(SigningKey::generate()),
        client: Arc::new(client.clone()),
        tracker: DownloadTracker::new(),
        urls: DeviceUrls::new(None, "127.0.0.1:3001".parse().unwrap()),
        poll_every: Duration::from_secs(2),
        shutdown: shutdown.clone(),
    });
    Kit {
        engine,
        clock,
        client,
        store,
        bus,
        audit,
        shutdown,
        _dir: dir,
    }
}

async fn kit(scripts: &[Script]) -> Kit {
    let dir = tempfile::tempdir().unwrap();
    kit_with(
        &dir.path().join("aegis.db"),
        Some(dir),
        scripts,
        ManualClock::new(Timestamp(1_700_000_000_000)),
    )
    .await
}

fn strategy(max_parallel: u32, canary: u32, pct: u8, retries: u32) -> Strategy {
    Strategy {
        max_parallel,
        canary,
        max_failure_pct: pct,
        retries,
        timeout_s: 120,
        allow_downgrade: false,
    }
}

async fn start(k: &Kit, s: Strategy) -> String {
    let created = k
        .engine
        .create(CreateRollout {
            firmware: FW_SHA.into(),
            targets: TargetSpec::Selector(Selector::All),
            strategy: s,
            dry_run: false,
        })
        .await
        .unwrap();
    match created {
        Created::Started(r) => r.summary.id,
        Created::DryRun(_) => panic!("not a dry run"),
    }
}

/// Advances the manual clock a second at a time until the rollout leaves `Running` (or
/// `max_secs` of simulated time pass). Between steps it waits for the engine to publish
/// something (bounded), so spawn_blocking storage work can complete.
async fn run_until_settled(k: &Kit, id: &str, max_secs: u64) -> Rollout {
    let mut events = k.bus.subscribe();
    for _ in 0..max_secs {
        let r = k.engine.get(id).await.unwrap();
        let idle = r.targets.iter().all(|t| t.state != TargetState::InProgress);
        if r.summary.state != RolloutState::Running && idle {
            return r;
        }
        k.clock.advance(Duration::from_secs(1));
        // Let the engine react: wait for its next event, but never long.
        let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
    }
    k.engine.get(id).await.unwrap()
}

fn states(r: &Rollout) -> Vec<TargetState> {
    r.targets.iter().map(|t| t.state).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_good_devices_succeed_within_the_parallel_limit() {
    let k = kit(&[Script::Good { polls: 3 }; 20]).await;
    let id = start(&k, strategy(5, 2, 20, 0)).await;
    let r = run_until_settled(&k, &id, 600).await;
    assert_eq!(r.summary.state, RolloutState::Completed);
    assert_eq!(states(&r), vec![TargetState::Succeeded; 20]);
    assert_eq!(r.summary.counts.get("succeeded"), Some(&20));
    let peak = k.client.fleet().peak_updating;
    assert!(peak <= 5, "at most 5 devices updated at once, saw {peak}");
    assert!(peak >= 2, "the fleet was updated in parallel, saw {peak}");
    k.audit.flush().await.unwrap();
    let attempts = k
        .store
        .audit(&aegis_server::store::AuditQuery {
            rollout: Some(id.clone()),
            kind: Some("attempt".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(attempts.len(), 20);
    assert!(
        attempts
            .iter()
            .all(|a| a.outcome.as_deref() == Some("succeeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_canary_pauses_the_rollout_and_nothing_else_is_touched() {
    let k = kit(&[
        Script::Crash,
        Script::Good { polls: 1 },
        Script::Good { polls: 1 },
    ])
    .await;
    let id = start(&k, strategy(3, 1, 50, 2)).await;
    let r = run_until_settled(&k, &id, 300).await;
    assert_eq!(r.summary.state, RolloutState::Paused);
    assert!(
        r.summary.reason.as_deref().unwrap().contains("canary"),
        "{:?}",
        r.summary.reason
    );
    assert_eq!(
        states(&r),
        vec![
            TargetState::RolledBack,
            TargetState::Pending,
            TargetState::Pending
        ]
    );
    assert!(
        r.targets[0]
            .error
            .as_deref()
            .unwrap()
            .contains("crashed at boot")
    );
    // Rolled back is not retried automatically, and the other devices were never triggered.
    {
        let fleet = k.client.fleet();
        assert_eq!(fleet.devices[&addr(0)].triggers, 1);
        assert_eq!(fleet.devices[&addr(1)].triggers, 0);
    }

    // Resuming acknowledges the failure and deploys the rest.
    k.engine.resume(&id).await.unwrap();
    let r = run_until_settled(&k, &id, 300).await;
    assert_eq!(r.summary.state, RolloutState::Completed);
    assert_eq!(
        states(&r),
        vec![
            TargetState::RolledBack,
            TargetState::Succeeded,
            TargetState::Succeeded
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failure_threshold_pauses_and_retry_failed_reruns_only_failures() {
    let mut scripts = vec![Script::Good { polls: 0 }; 10];
    scripts[0] = Script::Fail;
    scripts[1] = Script::Fail;
    scripts[2] = Script::Fail;
    let k = kit(&scripts).await;
    // One at a time, no canary, no retries: the third failure crosses 20% of 10.
    let id = start(&k, strategy(1, 0, 20, 0)).await;
    let r = run_until_settled(&k, &id, 300).await;
    assert_eq!(r.summary.state, RolloutState::Paused);
    assert!(
        r.summary.reason.as_deref().unwrap().contains("3 of 10"),
        "{:?}",
        r.summary.reason
    );
    assert_eq!(
        &states(&r)[..4],
        &[
            TargetState::Failed,
            TargetState::Failed,
            TargetState::Failed,
            TargetState::Pending
        ]
    );
    assert!(
        r.targets[0]
            .error
            .as_deref()
            .unwrap()
            .contains("SHA-256 mismatch")
    );

    // Fix the devices, retry the failed ones: only those three get a new trigger.
    for i in 0..3 {
        let mut fleet = k.client.fleet();
        let d = fleet.devices.get_mut(&addr(i)).unwrap();
        d.script = Script::Good { polls: 0 };
    }
    k.engine.retry_failed(&id).await.unwrap();
    let r = run_until_settled(&k, &id, 300).await;
    assert_eq!(r.summary.state, RolloutState::Completed);
    assert_eq!(states(&r), vec![TargetState::Succeeded; 10]);
    let fleet = k.client.fleet();
    assert_eq!(fleet.devices[&addr(0)].triggers, 2);
    assert_eq!(fleet.devices[&addr(9)].triggers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_devices_are_retried_with_back_off() {
    let k = kit(&[Script::Busy { n: 2 }]).await;
    let id = start(&k, strategy(1, 0, 100, 2)).await;
    let r = run_until_settled(&k, &id, 300).await;
    assert_eq!(states(&r), vec![TargetState::Succeeded]);
    assert_eq!(r.targets[0].attempts, 3);
    assert_eq!(k.client.fleet().devices[&addr(0)].triggers, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_returns_times_out_at_the_deadline() {
    let k = kit(&[Script::Vanish]).await;
    let t0 = k.clock.now();
    let id = start(&k, strategy(1, 0, 100, 0)).await;
    let r = run_until_settled(&k, &id, 600).await;
    assert_eq!(states(&r), vec![TargetState::TimedOut]);
    let ended = r.targets[0].finished_at.unwrap();
    let took = ended.since(t0).as_secs();
    assert!(
        (120..=122).contains(&took),
        "timed out after {took} s, timeout is 120 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_cancels_pending_targets() {
    let k = kit(&[Script::Good { polls: 30 }; 4]).await;
    let id = start(&k, strategy(1, 0, 100, 0)).await;
    let s = k.engine.abort(&id).await.unwrap();
    assert_eq!(s.state, RolloutState::Aborted);
    let r = run_until_settled(&k, &id, 60).await;
    assert_eq!(r.summary.state, RolloutState::Aborted);
    assert!(
        r.targets.iter().all(|t| t.state == TargetState::Cancelled),
        "{:?}",
        states(&r)
    );
    // Finished rollouts refuse further control with a clear error.
    let err = k.engine.pause(&id).await.unwrap_err();
    assert_eq!(err.code, "rollout_not_running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_explains_skips() {
    let k = kit(&[Script::Good { polls: 0 }, Script::Good { polls: 0 }]).await;
    let mut current = device_record(1, addr(1));
    current.sha = Some(FW_SHA[..16].into());
    k.store.put_device(&current).unwrap();
    let created = k
        .engine
        .create(CreateRollout {
            firmware: FW_SHA.into(),
            targets: TargetSpec::Selector(Selector::All),
            strategy: Strategy::default(),
            dry_run: true,
        })
        .await
        .unwrap();
    let Created::DryRun(plan) = created else {
        panic!("expected a plan");
    };
    assert_eq!((plan.deploy, plan.skip), (1, 1));
    assert_eq!(
        plan.targets[1].reason.as_deref(),
        Some("the device already runs this image")
    );
    assert!(k.engine.list().await.unwrap().is_empty());
    assert_eq!(k.client.fleet().devices[&addr(0)].triggers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_accepted_only_for_in_flight_deployments_from_their_device() {
    let k = kit(&[Script::Good { polls: 1000 }]).await;
    let id = start(&k, strategy(1, 0, 100, 0)).await;
    // Wait until the attempt is in flight.
    let mut events = k.bus.subscribe();
    while k.client.fleet().devices[&addr(0)].triggers == 0 {
        let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
    }
    let deployment = format!("{id}/000000000000/1");
    let report = |dep: &str| Report {
        id: DeviceId::parse("000000000000").unwrap(),
        deployment: dep.into(),
        phase: ReportPhase::Downloading,
        bytes: 4096,
        total: 1024 * 1024,
        ver: None,
        sha256: None,
        error: None,
    };
    let err = k
        .engine
        .report(report("nope"), addr(0).ip())
        .await
        .unwrap_err();
    assert_eq!(err.code, "unknown_deployment");
    let err = k
        .engine
        .report(report(&deployment), "127.9.9.9".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code, "report_mismatch");
    k.engine
        .report(report(&deployment), addr(0).ip())
        .await
        .unwrap();
    k.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_in_flight_targets_are_reconfirmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let k = kit_with(
        &path.join("aegis.db"),
        None,
        &[Script::Good { polls: 5 }; 3],
        clock.clone(),
    )
    .await;
    let id = start(&k, strategy(3, 0, 100, 0)).await;
    // Let all three get triggered, then "crash" the server.
    let mut events = k.bus.subscribe();
    while k
        .client
        .fleet()
        .devices
        .values()
        .filter(|d| d.triggers > 0)
        .count()
        < 3
    {
        let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
    }
    k.audit.flush().await.unwrap();
    k.shutdown.cancel();
    let client = k.client.clone();
    drop(k);

    // A new engine over the same database and the same devices.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path.join("aegis.db")).unwrap());
    let shared: SharedClock = Arc::new(clock.clone());
    let bus = EventBus::new();
    let (audit, _w) = AuditLog::start(store.clone(), shared.clone(), bus.clone());
    let engine = RolloutEngine::new(EngineDeps {
        store: store.clone(),
        clock: shared,
        bus: bus.clone(),
        audit,
        key: Arc::new(SigningKey::generate()),
        client: Arc::new(client.clone()),
        tracker: DownloadTracker::new(),
        urls: DeviceUrls::new(None, "127.0.0.1:3001".parse().unwrap()),
        poll_every: Duration::from_secs(2),
        shutdown: CancellationToken::new(),
    });
    assert_eq!(engine.recover().await.unwrap(), 1);
    let mut events = bus.subscribe();
    let mut r = engine.get(&id).await.unwrap();
    for _ in 0..300 {
        if r.summary.state == RolloutState::Completed {
            break;
        }
        clock.advance(Duration::from_secs(1));
        let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        r = engine.get(&id).await.unwrap();
    }
    assert_eq!(r.summary.state, RolloutState::Completed);
    assert_eq!(states(&r), vec![TargetState::Succeeded; 3]);
    // Re-confirmed, not re-triggered.
    assert!(client.fleet().devices.values().all(|d| d.triggers == 1));
}

#[tokio::test]
async fn unknown_firmware_and_bad_ids_are_clear_errors() {
    let k = kit(&[Script::Good { polls: 0 }]).await;
    let req = |fw: &str, targets: TargetSpec| CreateRollout {
        firmware: fw.into(),
        targets,
        strategy: Strategy::default(),
        dry_run: false,
    };
    let err = k
        .engine
        .create(req(&"3".repeat(64), TargetSpec::Selector(Selector::All)))
        .await
        .unwrap_err();
    assert_eq!(err.code, "unknown_firmware");
    let err = k
        .engine
        .create(req("xyz", TargetSpec::Selector(Selector::All)))
        .await
        .unwrap_err();
    assert_eq!(err.code, "bad_sha256");
    let err = k
        .engine
        .create(req(FW_SHA, TargetSpec::Ids(vec!["ffffffffffff".into()])))
        .await
        .unwrap_err();
    assert_eq!(err.code, "unknown_device");
}
