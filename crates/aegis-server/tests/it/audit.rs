//! The audit trail end to end: the writer task batching into store transactions, flush and
//! shutdown semantics, the chain surviving a restart, verification catching edits, deletions
//! and reordering made directly in SQLite, and the CSV export.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use aegis_server::audit::{self, AuditLog, AuditRecord, CSV_COLUMNS, NewRecord, chain};
use aegis_server::devices::{Device, RejectedSighting};
use aegis_server::events::{Event, EventBus};
use aegis_server::firmware::FirmwareEntry;
use aegis_server::rollout::{RolloutSummary, Target, TargetState};
use aegis_server::store::sqlite::SqliteStore;
use aegis_server::store::{AuditQuery, Store};
use aegis_server::time::{ManualClock, Timestamp};
use aegis_server::{Error, Result};

/// A store that counts audit transactions, can fail the next few, and can hold them at a gate.
#[derive(Debug)]
struct Instrumented {
    inner: SqliteStore,
    appends: AtomicUsize,
    fail_next: AtomicUsize,
    gate: Gate,
}

/// Closed: `append_audit` waits (and says it is waiting) until opened.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(bool, usize)>, // (closed, waiting)
    changed: Condvar,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().unwrap().0 = closed;
        self.changed.notify_all();
    }
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 += 1;
        self.changed.notify_all();
        while s.0 {
            s = self.changed.wait(s).unwrap();
        }
        s.1 -= 1;
    }
    fn wait_for_waiter(&self) {
        let mut s = self.state.lock().unwrap();
        while s.1 == 0 {
            s = self.changed.wait(s).unwrap();
        }
    }
}

impl Instrumented {
    fn new(inner: SqliteStore) -> Arc<Self> {
        Arc::new(Self {
            inner,
            appends: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            gate: Gate::default(),
        })
    }
}

impl Store for Instrumented {
    fn put_device(&self, d: &Device) -> Result<()> {
        self.inner.put_device(d)
    }
    fn device(&self, id: &str) -> Result<Option<Device>> {
        self.inner.device(id)
    }
    fn devices(&self) -> Result<Vec<Device>> {
        self.inner.devices()
    }
    fn put_rejected(&self, s: &RejectedSighting) -> Result<()> {
        self.inner.put_rejected(s)
    }
    fn rejected(&self, limit: usize) -> Result<Vec<RejectedSighting>> {
        self.inner.rejected(limit)
    }
    fn put_firmware(&self, e: &FirmwareEntry) -> Result<bool> {
        self.inner.put_firmware(e)
    }
    fn firmware(&self, sha: &str) -> Result<Option<FirmwareEntry>> {
        self.inner.firmware(sha)
    }
    fn firmware_list(&self) -> Result<Vec<FirmwareEntry>> {
        self.inner.firmware_list()
    }
    fn delete_firmware(&self, sha: &str) -> Result<bool> {
        self.inner.delete_firmware(sha)
    }
    fn put_rollout(&self, r: &RolloutSummary) -> Result<()> {
        self.inner.put_rollout(r)
    }
    fn put_target(&self, r: &str, t: &Target) -> Result<()> {
        self.inner.put_target(r, t)
    }
    fn put_targets(&self, r: &str, t: &[Target]) -> Result<()> {
        self.inner.put_targets(r, t)
    }
    fn rollout(&self, id: &str) -> Result<Option<(RolloutSummary, Vec<Target>)>> {
        self.inner.rollout(id)
    }
    fn rollouts(&self) -> Result<Vec<RolloutSummary>> {
        self.inner.rollouts()
    }
    fn active_rollouts_using(&self, sha: &str) -> Result<Vec<String>> {
        self.inner.active_rollouts_using(sha)
    }
    fn targets_in_states(&self, s: &[TargetState]) -> Result<Vec<(String, Target)>> {
        self.inner.targets_in_states(s)
    }
    fn append_audit(&self, records: &[AuditRecord]) -> Result<()> {
        self.gate.pass();
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::internal("the disk is full (simulated)"));
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_audit(records)
    }
    fn last_audit(&self) -> Result<Option<AuditRecord>> {
        self.inner.last_audit()
    }
    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        self.inner.audit(q)
    }
    fn audit_range(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.inner.audit_range(from, limit)
    }
    fn setting(&self, k: &str) -> Result<Option<String>> {
        self.inner.setting(k)
    }
    fn put_setting(&self, k: &str, v: &str) -> Result<()> {
        self.inner.put_setting(k, v)
    }
}

fn clock() -> ManualClock {
    ManualClock::new(Timestamp(1_700_000_000_000))
}

fn attempt(i: usize) -> NewRecord {
    NewRecord {
        kind: "attempt".into(),
        rollout: Some(format!("r{}", i % 3)),
        device: Some(format!("{:012x}", i % 7)),
        firmware: Some("cd".repeat(32)),
        from_version: Some("1.0.0".into()),
        to_version: Some("1.1.0".into()),
        outcome: Some(if i % 10 == 3 { "failed" } else { "succeeded" }.into()),
        bytes: Some(1000 + i as u64),
        error: (i % 10 == 3).then(|| "the device rolled back, \"crash\" on boot".into()),
        started_at: Some(Timestamp(1_700_000_000_000 + i as i64)),
        ended_at: Some(Timestamp(1_700_000_001_000 + i as i64)),
        detail: serde_json::json!({ "attempt": i % 2 + 1, "notes": ["a,b", "c\nd"] }),
    }
}

async fn write(store: Arc<dyn Store>, clock: &ManualClock, n: usize) {
    let (log, task) = AuditLog::start(store, Arc::new(clock.clone()), EventBus::new());
    for i in 0..n {
        log.record(attempt(i)).await;
    }
    log.shutdown().await.unwrap();
    task.await;
}

async fn verify(store: Arc<dyn Store>) -> audit::VerifyReport {
    tokio::task::spawn_blocking(move || audit::verify(store.as_ref()))
        .await
        .unwrap()
        .unwrap()
}

fn on_disk() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    (dir, path)
}

fn sql(path: &std::path::Path, statement: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(statement).unwrap();
}

#[tokio::test]
async fn records_are_chained_published_after_commit_and_verify() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let clock = clock();
    let bus = EventBus::new();
    let mut events = bus.subscribe();
    let (log, task) = AuditLog::start(store.clone(), Arc::new(clock.clone()), bus);
    for i in 0..50 {
        log.record(attempt(i)).await;
        clock.advance(Duration::from_millis(10));
    }
    log.record(NewRecord::new("server_started")).await;
    log.flush().await.unwrap();

    let stored = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(stored.len(), 51);
    let mut prev = chain::GENESIS.to_string();
    for (i, r) in stored.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.hash, chain::record_hash(&prev, r));
        prev = r.hash.clone();
    }
    assert_eq!(
        stored[1].at,
        Timestamp(1_700_000_000_010),
        "stamped when recorded"
    );
    assert_eq!(
        stored[50].detail,
        serde_json::json!({}),
        "no detail is an empty object"
    );
    assert_eq!(stored[3].error.as_deref(), attempt(3).error.as_deref());

    // Every record is announced once, in order, and only after it is committed.
    for want in 1..=51u64 {
        match events.recv().await.unwrap() {
            Event::AuditAppended(r) => {
                assert_eq!(r.seq, want);
                assert_eq!(store.audit_range(want, 1).unwrap(), [r]);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    let report = verify(store.clone()).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 51);
    assert_eq!(report.head.as_deref(), Some(prev.as_str()));
    log.shutdown().await.unwrap();
    task.await;
}

#[tokio::test]
async fn an_edited_field_is_reported_at_its_record() {
    let (_dir, path) = on_disk();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    write(store.clone(), &clock(), 40).await;
    assert!(verify(store.clone()).await.is_intact());

    // Record 14 (i = 13) failed; someone makes it look like a success.
    sql(
        &path,
        "UPDATE audit SET outcome = 'succeeded', error = NULL WHERE seq = 14",
    );
    let report = verify(store.clone()).await;
    let bad = report.first_bad.unwrap();
    assert_eq!(bad.seq, 14);
    assert!(
        bad.reason.contains("does not match its hash"),
        "{}",
        bad.reason
    );
    assert_eq!(report.records, 13);

    // Re-hashing the edited record moves the break to the next one, which still links to the
    // original.
    let mut edited = store.audit_range(14, 1).unwrap().remove(0);
    let prev = store.audit_range(13, 1).unwrap().remove(0).hash;
    edited.hash = chain::record_hash(&prev, &edited);
    sql(
        &path,
        &format!("UPDATE audit SET hash = '{}' WHERE seq = 14", edited.hash),
    );
    assert_eq!(verify(store.clone()).await.first_bad.unwrap().seq, 15);

    // Detail that is no longer even JSON is reported, not a read failure.
    sql(&path, "UPDATE audit SET detail = 'not json' WHERE seq = 3");
    assert_eq!(verify(store).await.first_bad.unwrap().seq, 3);
}

#[tokio::test]
async fn deleted_and_reordered_records_are_reported() {
    let (_dir, path) = on_disk();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    write(store.clone(), &clock(), 3000).await;
    assert_eq!(verify(store.clone()).await.records, 3000);

    sql(&path, "DELETE FROM audit WHERE seq = 2500");
    let bad = verify(store.clone()).await.first_bad.unwrap();
    assert_eq!(bad.seq, 2500);
    assert!(bad.reason.contains("missing"), "{}", bad.reason);

    // A hole wider than a verification page.
    sql(&path, "DELETE FROM audit WHERE seq BETWEEN 700 AND 2200");
    assert_eq!(verify(store.clone()).await.first_bad.unwrap().seq, 700);

    // Two records swapped (their content moves, seq stays in order).
    sql(
        &path,
        "UPDATE audit SET seq = -1 WHERE seq = 11; \
         UPDATE audit SET seq = 11 WHERE seq = 12; \
         UPDATE audit SET seq = 12 WHERE seq = -1;",
    );
    assert_eq!(verify(store.clone()).await.first_bad.unwrap().seq, 11);

    // Records deleted from the very start.
    sql(&path, "DELETE FROM audit WHERE seq <= 2");
    assert_eq!(verify(store).await.first_bad.unwrap().seq, 1);
}

#[tokio::test]
async fn an_inserted_record_is_reported() {
    let (_dir, path) = on_disk();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    write(store.clone(), &clock(), 10).await;
    // Make room at 5 by shifting 5..=10 up, and forge a record 5 chained after record 4.
    sql(
        &path,
        "UPDATE audit SET seq = seq + 100 WHERE seq >= 5; UPDATE audit SET seq = seq - 99 WHERE seq >= 100;",
    );
    let mut forged = store.audit_range(4, 1).unwrap().remove(0);
    let prev = forged.hash.clone();
    forged.seq = 5;
    forged.outcome = Some("succeeded".into());
    forged.hash = chain::record_hash(&prev, &forged);
    sql(
        &path,
        &format!(
            "INSERT INTO audit (seq, at, kind, rollout, device, firmware, from_version, \
                 to_version, outcome, bytes, error, started_at, ended_at, detail, hash) \
             SELECT 5, at, kind, rollout, device, firmware, from_version, to_version, \
                 'succeeded', bytes, error, started_at, ended_at, detail, '{}' \
             FROM audit WHERE seq = 4",
            forged.hash
        ),
    );
    assert_eq!(store.audit_range(5, 1).unwrap(), [forged]);
    let report = verify(store).await;
    // The forgery links correctly after record 4, but the record it displaced does not.
    assert_eq!(report.first_bad.map(|b| b.seq), Some(6));
}

#[tokio::test]
async fn flush_returns_only_once_earlier_records_are_committed() {
    let store = Instrumented::new(SqliteStore::open_in_memory().unwrap());
    let (log, task) = AuditLog::start(store.clone(), Arc::new(clock()), EventBus::new());
    store.gate.set_closed(true);
    log.record(attempt(0)).await;
    log.record(attempt(1)).await;
    let flushing = tokio::spawn({
        let log = log.clone();
        async move { log.flush().await }
    });
    // The writer is inside the transaction, held at the gate.
    let gate_store = store.clone();
    tokio::task::spawn_blocking(move || gate_store.gate.wait_for_waiter())
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!flushing.is_finished(), "flush returned before the commit");
    assert!(store.last_audit().unwrap().is_none());

    store.gate.set_closed(false);
    flushing.await.unwrap().unwrap();
    assert_eq!(store.audit(&AuditQuery::default()).unwrap().len(), 2);

    // A flush with nothing pending returns at once; so does one after shutdown (as an error).
    log.flush().await.unwrap();
    log.shutdown().await.unwrap();
    task.await;
    assert!(log.flush().await.is_err());
    log.shutdown().await.unwrap();
    // A record after shutdown is not written (and is logged as an error).
    log.record(attempt(9)).await;
    assert_eq!(store.audit(&AuditQuery::default()).unwrap().len(), 2);
}

#[tokio::test]
async fn ten_thousand_records_are_written_in_few_transactions() {
    let (_dir, path) = on_disk();
    let store = Instrumented::new(SqliteStore::open(&path).unwrap());
    let (log, task) = AuditLog::start(store.clone(), Arc::new(clock()), EventBus::new());
    let started = std::time::Instant::now();
    let mut writers = Vec::new();
    for w in 0..4 {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..2500 {
                log.record(attempt(w * 2500 + i)).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    log.flush().await.unwrap();
    let elapsed = started.elapsed();
    let transactions = store.appends.load(Ordering::SeqCst);
    println!("10000 audit records in {transactions} transactions, {elapsed:?}");
    assert_eq!(store.last_audit().unwrap().map(|r| r.seq), Some(10_000));
    assert!(transactions >= 10, "batches are capped at 1000 records");
    assert!(
        transactions <= 500,
        "{transactions} transactions for 10000 records"
    );
    let report = verify(store.clone()).await;
    assert!(report.is_intact() && report.records == 10_000, "{report:?}");
    log.shutdown().await.unwrap();
    task.await;
}

#[tokio::test]
async fn restart_continues_the_chain() {
    let (_dir, path) = on_disk();
    let clock = clock();
    write(Arc::new(SqliteStore::open(&path).unwrap()), &clock, 5).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    write(store.clone(), &clock, 7).await;
    let all = store.audit(&AuditQuery::default()).unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    let report = verify(store).await;
    assert!(report.is_intact() && report.records == 12, "{report:?}");
}

#[tokio::test]
async fn a_failed_commit_is_retried_and_nothing_is_lost() {
    let store = Instrumented::new(SqliteStore::open_in_memory().unwrap());
    let clock = clock();
    let (log, task) = AuditLog::start(store.clone(), Arc::new(clock.clone()), EventBus::new());
    log.record(attempt(0)).await;
    log.flush().await.unwrap();
    store.fail_next.store(2, Ordering::SeqCst);
    log.record(attempt(1)).await;
    log.record(attempt(2)).await;
    let err = log.flush().await.unwrap_err();
    assert!(err.message.contains("disk is full"), "{err}");
    // The writer backs off on the injected clock, then tries again (and fails once more).
    for _ in 0..2 {
        while clock.sleepers() == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(60));
    }
    log.flush().await.unwrap();
    let report = verify(store.clone()).await;
    assert!(report.is_intact() && report.records == 3, "{report:?}");
    log.shutdown().await.unwrap();
    task.await;
}

#[tokio::test]
async fn csv_export_round_trips_and_matches_the_json() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let (log, task) = AuditLog::start(store.clone(), Arc::new(clock()), EventBus::new());
    for i in 0..12 {
        log.record(attempt(i)).await;
    }
    log.record(NewRecord {
        kind: "transition".into(),
        error: Some("quote \" comma , CR\r LF\n tab\t é 🚀".into()),
        detail: serde_json::json!({"from": "pending", "to": "in_progress"}),
        ..NewRecord::default()
    })
    .await;
    log.shutdown().await.unwrap();
    task.await;
    let records = store.audit(&AuditQuery::default()).unwrap();

    let text = audit::to_csv(&records);
    assert!(text.ends_with("\r\n"));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), records.len());
    for (row, record) in rows.iter().zip(&records) {
        let json = serde_json::to_value(record).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), CSV_COLUMNS.len(), "same fields as the JSON");
        for (column, field) in CSV_COLUMNS.iter().zip(row.iter()) {
            let expected = match &object[*column] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(field, expected, "column {column} of record {}", record.seq);
        }
    }
    assert_eq!(&rows[12][10], records[12].error.as_deref().unwrap());
    // The detail column parses back to the record's detail.
    let detail: serde_json::Value = serde_json::from_str(&rows[12][13]).unwrap();
    assert_eq!(detail, records[12].detail);
}
