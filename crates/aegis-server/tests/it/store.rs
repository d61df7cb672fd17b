//! Store conformance: every behaviour of the `Store` contract, written against `&dyn Store` so
//! that any backend runs the same suite (`conformance_suite!(name, factory)`), plus the
//! SQLite-specific checks (reopening from disk, migrations, newer schema refused).

use std::collections::BTreeMap;

use aegis_server::audit::{AuditRecord, chain};
use aegis_server::devices::{Device, RejectedSighting};
use aegis_server::firmware::FirmwareEntry;
use aegis_server::rollout::{Phase, RolloutState, RolloutSummary, Strategy, Target, TargetState};
use aegis_server::store::sqlite::{SCHEMA_VERSION, SqliteStore};
use aegis_server::store::{AuditQuery, Store};
use aegis_server::time::Timestamp;

pub fn device(id: &str, hostname: &str) -> Device {
    Device {
        id: id.into(),
        hostname: hostname.into(),
        ip: "10.0.0.7".into(),
        port: 8032,
        version: "1.0.0".into(),
        project: Some("demo".into()),
        chip: Some("esp32s3".into()),
        sha: Some("0123456789abcdef".into()),
        slot: Some("ota_0".into()),
        state: Some("idle".into()),
        proto: 1,
        key: None,
        online: true,
        first_seen: Timestamp(1_000),
        last_seen: Timestamp(2_000),
        duplicate: None,
    }
}

pub fn firmware(sha: &str, uploaded_at: i64) -> FirmwareEntry {
    FirmwareEntry {
        sha256: sha.into(),
        size: 1_234_567,
        chip: "esp32".into(),
        project: "demo".into(),
        version: "1.2.3".into(),
        idf_version: "v5.2".into(),
        secure_version: 2,
        filename: Some("demo.bin".into()),
        notes: None,
        uploaded_at: Timestamp(uploaded_at),
    }
}

pub fn rollout(id: &str, firmware: &str, state: RolloutState, created_at: i64) -> RolloutSummary {
    RolloutSummary {
        id: id.into(),
        state,
        firmware: firmware.into(),
        strategy: Strategy {
            max_parallel: 3,
            canary: 0,
            ..Strategy::default()
        },
        reason: None,
        created_at: Timestamp(created_at),
        started_at: Some(Timestamp(created_at + 1)),
        finished_at: None,
        counts: BTreeMap::new(),
    }
}

pub fn target(device: &str, state: TargetState) -> Target {
    Target {
        device: device.into(),
        state,
        phase: Phase::Queued,
        bytes: 0,
        total: 1_234_567,
        error: None,
        from_version: Some("1.0.0".into()),
        to_version: Some("1.2.3".into()),
        attempts: 0,
        started_at: None,
        finished_at: None,
    }
}

/// `n` chained records after `prev` (seq `first..`), with a few varied fields.
pub fn chained(first: u64, n: u64, mut prev: String) -> Vec<AuditRecord> {
    (first..first + n)
        .map(|seq| {
            let mut r = AuditRecord {
                seq,
                at: Timestamp(1_000 * seq as i64),
                kind: if seq % 2 == 0 {
                    "attempt"
                } else {
                    "transition"
                }
                .into(),
                rollout: Some(format!("r{}", seq % 3)),
                device: Some(format!("dev{}", seq % 4)),
                firmware: Some("ab".repeat(32)),
                from_version: Some("1.0".into()),
                to_version: Some("1.1".into()),
                outcome: Some(if seq % 5 == 0 { "failed" } else { "succeeded" }.into()),
                bytes: Some(seq * 10),
                error: None,
                started_at: Some(Timestamp(1_000 * seq as i64 - 500)),
                ended_at: None,
                detail: serde_json::json!({ "n": seq }),
                hash: String::new(),
            };
            r.hash = chain::record_hash(&prev, &r);
            prev = r.hash.clone();
            r
        })
        .collect()
}

fn seqs(records: &[AuditRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

// ---------------------------------------------------------------- the conformance suite

pub fn devices_upsert_get_and_order(store: &dyn Store) {
    assert_eq!(store.device("aabbccddeeff").unwrap(), None);
    let b = device("bbbbbbbbbbbb", "beta");
    let a2 = device("a2a2a2a2a2a2", "alpha");
    let a1 = device("a1a1a1a1a1a1", "alpha");
    for d in [&b, &a2, &a1] {
        store.put_device(d).unwrap();
    }
    assert_eq!(store.device(&b.id).unwrap().as_ref(), Some(&b));
    let ids: Vec<_> = store.devices().unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, [a1.id.clone(), a2.id.clone(), b.id.clone()]);

    let mut moved = b.clone();
    moved.ip = "10.0.0.99".into();
    moved.online = false;
    moved.key = Some("fp01".into());
    moved.duplicate = Some("10.0.0.8:8032".into());
    moved.project = None;
    store.put_device(&moved).unwrap();
    assert_eq!(store.device(&b.id).unwrap(), Some(moved));
    assert_eq!(store.devices().unwrap().len(), 3);
}

pub fn rejected_newest_first_with_limit(store: &dyn Store) {
    assert!(store.rejected(10).unwrap().is_empty());
    for (i, at) in [5, 1, 9, 3].into_iter().enumerate() {
        store
            .put_rejected(&RejectedSighting {
                at: Timestamp(at),
                instance: format!("bad-{i}"),
                addr: (i % 2 == 0).then(|| "10.0.0.1".to_string()),
                reason: "the TXT record has no id; flash firmware that announces one".into(),
                txt: vec![("ver".into(), "1.0".into()), ("x".into(), String::new())],
            })
            .unwrap();
    }
    let got = store.rejected(3).unwrap();
    let ats: Vec<_> = got.iter().map(|s| s.at.0).collect();
    assert_eq!(ats, [9, 5, 3]);
    assert_eq!(got[0].instance, "bad-2");
    assert_eq!(got[0].txt[1], ("x".to_string(), String::new()));
    assert_eq!(store.rejected(100).unwrap().len(), 4);
}

pub fn firmware_insert_duplicate_delete(store: &dyn Store) {
    let old = firmware(&"11".repeat(32), 100);
    let new = firmware(&"22".repeat(32), 200);
    assert!(store.put_firmware(&old).unwrap());
    assert!(store.put_firmware(&new).unwrap());
    let mut changed = old.clone();
    changed.notes = Some("should not replace".into());
    assert!(
        !store.put_firmware(&changed).unwrap(),
        "duplicate must return false"
    );
    assert_eq!(store.firmware(&old.sha256).unwrap(), Some(old.clone()));
    assert_eq!(store.firmware_list().unwrap(), [new.clone(), old.clone()]);
    assert!(store.delete_firmware(&old.sha256).unwrap());
    assert!(!store.delete_firmware(&old.sha256).unwrap());
    assert_eq!(store.firmware(&old.sha256).unwrap(), None);
    assert_eq!(store.firmware_list().unwrap(), [new]);
}

pub fn rollouts_and_targets_round_trip_with_counts(store: &dyn Store) {
    let fw = "33".repeat(32);
    let mut r1 = rollout("r1", &fw, RolloutState::Running, 1_000);
    let r2 = rollout("r2", &fw, RolloutState::Completed, 2_000);
    store.put_rollout(&r1).unwrap();
    store.put_rollout(&r2).unwrap();
    let targets = vec![
        target("dev-c", TargetState::Pending),
        target("dev-a", TargetState::Pending),
        target("dev-b", TargetState::Succeeded),
    ];
    store.put_targets("r1", &targets).unwrap();

    // One target moves on; the others keep their place.
    let mut a = target("dev-a", TargetState::InProgress);
    a.phase = Phase::Downloading;
    a.bytes = 4096;
    a.attempts = 1;
    a.error = Some("first try timed out".into());
    a.started_at = Some(Timestamp(1_500));
    store.put_target("r1", &a).unwrap();

    let (summary, got) = store.rollout("r1").unwrap().unwrap();
    assert_eq!(
        got,
        [targets[0].clone(), a, targets[2].clone()],
        "plan order kept"
    );
    let counts: BTreeMap<String, u32> = [("in_progress", 1), ("pending", 1), ("succeeded", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(summary.counts, counts);
    r1.counts = counts.clone();
    assert_eq!(summary, r1);

    // Replacing the rollout row keeps its targets.
    r1.state = RolloutState::Paused;
    r1.reason = Some("failure threshold".into());
    store.put_rollout(&r1).unwrap();
    let (summary, got) = store.rollout("r1").unwrap().unwrap();
    assert_eq!(summary, r1);
    assert_eq!(got.len(), 3);

    let list = store.rollouts().unwrap();
    assert_eq!(
        list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    assert_eq!(list[1].counts, counts);
    assert!(list[0].counts.is_empty());
    assert_eq!(store.rollout("nope").unwrap(), None);
}

pub fn targets_in_states_only_unfinished_rollouts(store: &dyn Store) {
    let fw = "44".repeat(32);
    store
        .put_rollout(&rollout("live", &fw, RolloutState::Running, 1))
        .unwrap();
    store
        .put_rollout(&rollout("held", &fw, RolloutState::Paused, 2))
        .unwrap();
    store
        .put_rollout(&rollout("done", &fw, RolloutState::Aborted, 3))
        .unwrap();
    store
        .put_targets(
            "live",
            &[
                target("d1", TargetState::InProgress),
                target("d2", TargetState::Succeeded),
                target("d3", TargetState::Pending),
            ],
        )
        .unwrap();
    store
        .put_targets("held", &[target("d4", TargetState::InProgress)])
        .unwrap();
    store
        .put_targets("done", &[target("d5", TargetState::InProgress)])
        .unwrap();

    let found: Vec<(String, String)> = store
        .targets_in_states(&[TargetState::InProgress, TargetState::Pending])
        .unwrap()
        .into_iter()
        .map(|(r, t)| (r, t.device))
        .collect();
    let expect = [("live", "d1"), ("live", "d3"), ("held", "d4")];
    assert_eq!(
        found,
        expect.map(|(r, d)| (r.to_string(), d.to_string())).to_vec()
    );
    assert!(store.targets_in_states(&[]).unwrap().is_empty());
    let (_, t) = &store.targets_in_states(&[TargetState::Succeeded]).unwrap()[0];
    assert_eq!(t, &target("d2", TargetState::Succeeded));
}

pub fn active_rollouts_using_firmware(store: &dyn Store) {
    let fw = "55".repeat(32);
    let other = "66".repeat(32);
    for (id, state, f) in [
        ("a", RolloutState::Planned, &fw),
        ("b", RolloutState::Running, &fw),
        ("c", RolloutState::Paused, &fw),
        ("d", RolloutState::Completed, &fw),
        ("e", RolloutState::Aborted, &fw),
        ("f", RolloutState::Running, &other),
    ] {
        store.put_rollout(&rollout(id, f, state, 10)).unwrap();
    }
    assert_eq!(store.active_rollouts_using(&fw).unwrap(), ["a", "b", "c"]);
    assert!(
        store
            .active_rollouts_using(&"77".repeat(32))
            .unwrap()
            .is_empty()
    );
}

pub fn audit_append_and_query_filters(store: &dyn Store) {
    assert_eq!(store.last_audit().unwrap(), None);
    let all = chained(1, 30, chain::GENESIS.to_string());
    store.append_audit(&all[..10]).unwrap();
    store.append_audit(&all[10..]).unwrap();
    assert_eq!(store.last_audit().unwrap().as_ref(), all.last());
    assert_eq!(store.audit(&AuditQuery::default()).unwrap(), all);

    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        seqs(&store.audit(&q).unwrap())
    };
    let want = |p: &dyn Fn(&AuditRecord) -> bool| {
        seqs(&all.iter().filter(|r| p(r)).cloned().collect::<Vec<_>>())
    };
    assert_eq!(
        q(&|q| q.device = Some("dev1".into())),
        want(&|r| r.device.as_deref() == Some("dev1"))
    );
    assert_eq!(
        q(&|q| q.rollout = Some("r2".into())),
        want(&|r| r.rollout.as_deref() == Some("r2"))
    );
    assert_eq!(
        q(&|q| q.outcome = Some("failed".into())),
        [5, 10, 15, 20, 25, 30]
    );
    assert_eq!(
        q(&|q| q.kind = Some("attempt".into())),
        want(&|r| r.kind == "attempt")
    );
    // since is inclusive, until exclusive.
    assert_eq!(
        q(&|q| {
            q.since = Some(Timestamp(5_000));
            q.until = Some(Timestamp(9_000));
        }),
        [5, 6, 7, 8]
    );
    // The newest `limit` matches, oldest first.
    assert_eq!(q(&|q| q.limit = Some(3)), [28, 29, 30]);
    assert_eq!(
        q(&|q| {
            q.outcome = Some("failed".into());
            q.device = Some("dev1".into());
            q.limit = Some(1);
        }),
        [25]
    );
    assert!(q(&|q| q.device = Some("nobody".into())).is_empty());
}

pub fn audit_append_refuses_a_broken_sequence(store: &dyn Store) {
    let all = chained(1, 5, chain::GENESIS.to_string());
    store.append_audit(&all[..2]).unwrap();
    // A gap, a repeat, a non-consecutive batch: each refused, nothing written.
    assert!(store.append_audit(&all[3..]).is_err());
    assert!(store.append_audit(&all[1..3]).is_err());
    assert!(
        store
            .append_audit(&[all[2].clone(), all[4].clone()])
            .is_err()
    );
    assert_eq!(store.last_audit().unwrap().map(|r| r.seq), Some(2));
    store.append_audit(&all[2..]).unwrap();
    store.append_audit(&[]).unwrap();
    assert_eq!(store.last_audit().unwrap().map(|r| r.seq), Some(5));
}

pub fn audit_range_pages(store: &dyn Store) {
    let all = chained(1, 25, chain::GENESIS.to_string());
    store.append_audit(&all).unwrap();
    assert_eq!(store.audit_range(1, 10).unwrap(), all[..10]);
    assert_eq!(
        seqs(&store.audit_range(21, 10).unwrap()),
        [21, 22, 23, 24, 25]
    );
    assert!(store.audit_range(26, 10).unwrap().is_empty());
    assert!(store.audit_range(5, 0).unwrap().is_empty());
    assert_eq!(
        seqs(&store.audit_range(u64::MAX - 1, 10).unwrap()),
        Vec::<u64>::new()
    );
}

pub fn settings_round_trip(store: &dyn Store) {
    assert_eq!(store.setting("operator_token").unwrap(), None);
    store.put_setting("operator_token", "one").unwrap();
    store.put_setting("operator_token", "two").unwrap();
    assert_eq!(
        store.setting("operator_token").unwrap().as_deref(),
        Some("two")
    );
}

/// Runs every conformance check against fresh stores from `$factory`, one test each.
macro_rules! conformance_suite {
    ($module:ident, $factory:expr) => {
        mod $module {
            use super::*;
            conformance_suite!(@tests $factory;
                devices_upsert_get_and_order,
                rejected_newest_first_with_limit,
                firmware_insert_duplicate_delete,
                rollouts_and_targets_round_trip_with_counts,
                targets_in_states_only_unfinished_rollouts,
                active_rollouts_using_firmware,
                audit_append_and_query_filters,
                audit_append_refuses_a_broken_sequence,
                audit_range_pages,
                settings_round_trip,
            );
        }
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (store, _guard) = $factory;
                super::$name(&store);
            }
        )*
    };
}

conformance_suite!(
    sqlite_in_memory,
    (SqliteStore::open_in_memory().unwrap(), ())
);
conformance_suite!(sqlite_file, {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(dir.path().join("aegis.db")).unwrap(), dir)
});

// ---------------------------------------------------------------- SQLite specifics

fn fill(store: &dyn Store) {
    devices_upsert_get_and_order(store);
    firmware_insert_duplicate_delete(store);
    rollouts_and_targets_round_trip_with_counts(store);
    rejected_newest_first_with_limit(store);
    store
        .append_audit(&chained(1, 40, chain::GENESIS.to_string()))
        .unwrap();
    store.put_setting("instance", "x1").unwrap();
}

fn snapshot(store: &dyn Store) -> String {
    format!(
        "{:?}",
        (
            store.devices().unwrap(),
            store.firmware_list().unwrap(),
            store.rollouts().unwrap(),
            store.rollout("r1").unwrap(),
            store.rejected(100).unwrap(),
            store.audit(&AuditQuery::default()).unwrap(),
            store.setting("instance").unwrap(),
        )
    )
}

#[test]
fn reopening_from_disk_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("aegis.db");
    let before = {
        let store = SqliteStore::open(&path).unwrap();
        fill(&store);
        snapshot(&store)
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(snapshot(&store), before);
    assert!(before.contains("x1") && before.contains("beta"));
    // The chain continues where it stopped.
    let last = store.last_audit().unwrap().unwrap();
    store.append_audit(&chained(41, 1, last.hash)).unwrap();
}

#[test]
fn wal_and_durability_settings_are_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = SqliteStore::open(&path).unwrap();
    store.put_setting("k", "v").unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(dir.path().join("aegis.db-wal").exists());
}

#[test]
fn migrations_are_idempotent_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.setting("schema_version").unwrap(),
            Some(SCHEMA_VERSION.to_string())
        );
        store
            .put_setting(&format!("k{}", store.devices().unwrap().len()), "v")
            .unwrap();
        store
            .put_device(&device(
                &format!("{:012}", store.devices().unwrap().len()),
                "h",
            ))
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.devices().unwrap().len(), 3);
}

#[test]
fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let newer = (SCHEMA_VERSION + 1).to_string();
    SqliteStore::open(&path)
        .unwrap()
        .put_setting("schema_version", &newer)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.code, "schema_too_new");
    assert!(
        err.message.contains(&format!("schema version {newer}")),
        "{err}"
    );
    assert!(err.message.contains("upgrade aegis"), "{err}");
    // Nothing was changed by the refusal.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: String = conn
        .query_row(
            "SELECT value FROM settings WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, newer);
}

#[test]
fn a_target_needs_its_rollout() {
    let store = SqliteStore::open_in_memory().unwrap();
    let err = store
        .put_target("ghost", &target("d1", TargetState::Pending))
        .unwrap_err();
    assert_eq!(err.code, "rollout_not_found");
}

#[test]
fn rejected_sightings_are_bounded() {
    let store = SqliteStore::open_in_memory().unwrap();
    let kept = aegis_server::store::sqlite::REJECTED_KEPT;
    for i in 0..kept + 5 {
        store
            .put_rejected(&RejectedSighting {
                at: Timestamp(i),
                instance: format!("i{i}"),
                addr: None,
                reason: "bad".into(),
                txt: Vec::new(),
            })
            .unwrap();
    }
    let all = store.rejected(usize::MAX).unwrap();
    assert_eq!(all.len() as i64, kept);
    assert_eq!(all[0].instance, format!("i{}", kept + 4));
}
