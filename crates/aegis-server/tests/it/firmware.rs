//! The firmware library: upload checks, duplicates, crash safety, reconciliation, delete rules,
//! the upload size limit. Runs against a small in-memory `Store` double (firmware methods only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_image::{Chip, Corruption, ImageBuilder};
use aegis_server::audit::AuditRecord;
use aegis_server::devices::{Device, RejectedSighting};
use aegis_server::error::ErrorKind;
use aegis_server::events::{Event, EventBus};
use aegis_server::firmware::{FirmwareEntry, FirmwareLibrary, ImageDir, read_body_limited};
use aegis_server::rollout::{RolloutSummary, Target, TargetState};
use aegis_server::store::{AuditQuery, Store};
use aegis_server::time::{Clock, ManualClock, Timestamp};
use aegis_server::{Error, Result};
use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A `Store` that keeps firmware entries in memory; everything else is unsupported.
#[derive(Debug, Default)]
pub struct MemStore {
    firmware: Mutex<HashMap<String, FirmwareEntry>>,
    /// sha256 -> ids of unfinished rollouts using it.
    pub in_use: Mutex<HashMap<String, Vec<String>>>,
}

fn unsupported<T>() -> Result<T> {
    Err(Error::internal(
        "not supported by the firmware tests' store double",
    ))
}

impl Store for MemStore {
    fn put_device(&self, _: &Device) -> Result<()> {
        unsupported()
    }
    fn device(&self, _: &str) -> Result<Option<Device>> {
        unsupported()
    }
    fn devices(&self) -> Result<Vec<Device>> {
        unsupported()
    }
    fn put_rejected(&self, _: &RejectedSighting) -> Result<()> {
        unsupported()
    }
    fn rejected(&self, _: usize) -> Result<Vec<RejectedSighting>> {
        unsupported()
    }
    fn put_firmware(&self, entry: &FirmwareEntry) -> Result<bool> {
        let mut map = self.firmware.lock().unwrap();
        if map.contains_key(&entry.sha256) {
            return Ok(false);
        }
        map.insert(entry.sha256.clone(), entry.clone());
        Ok(true)
    }
    fn firmware(&self, sha256: &str) -> Result<Option<FirmwareEntry>> {
        Ok(self.firmware.lock().unwrap().get(sha256).cloned())
    }
    fn firmware_list(&self) -> Result<Vec<FirmwareEntry>> {
        let mut all: Vec<_> = self.firmware.lock().unwrap().values().cloned().collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.uploaded_at));
        Ok(all)
    }
    fn delete_firmware(&self, sha256: &str) -> Result<bool> {
        Ok(self.firmware.lock().unwrap().remove(sha256).is_some())
    }
    fn put_rollout(&self, _: &RolloutSummary) -> Result<()> {
        unsupported()
    }
    fn put_target(&self, _: &str, _: &Target) -> Result<()> {
        unsupported()
    }
    fn put_targets(&self, _: &str, _: &[Target]) -> Result<()> {
        unsupported()
    }
    fn rollout(&self, _: &str) -> Result<Option<(RolloutSummary, Vec<Target>)>> {
        unsupported()
    }
    fn rollouts(&self) -> Result<Vec<RolloutSummary>> {
        unsupported()
    }
    fn active_rollouts_using(&self, sha256: &str) -> Result<Vec<String>> {
        Ok(self
            .in_use
            .lock()
            .unwrap()
            .get(sha256)
            .cloned()
            .unwrap_or_default())
    }
    fn targets_in_states(&self, _: &[TargetState]) -> Result<Vec<(String, Target)>> {
        unsupported()
    }
    fn append_audit(&self, _: &[AuditRecord]) -> Result<()> {
        unsupported()
    }
    fn last_audit(&self) -> Result<Option<AuditRecord>> {
        unsupported()
    }
    fn audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>> {
        unsupported()
    }
    fn audit_range(&self, _: u64, _: usize) -> Result<Vec<AuditRecord>> {
        unsupported()
    }
    fn setting(&self, _: &str) -> Result<Option<String>> {
        unsupported()
    }
    fn put_setting(&self, _: &str, _: &str) -> Result<()> {
        unsupported()
    }
}

/// A library in a temp dir over a fresh `MemStore`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<MemStore>,
    pub clock: ManualClock,
    pub events: EventBus,
    pub library: FirmwareLibrary,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemStore::default());
        Self::open(dir, store).await
    }

    async fn open(dir: tempfile::TempDir, store: Arc<MemStore>) -> Fixture {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let events = EventBus::new();
        let library = FirmwareLibrary::open(
            dir.path(),
            store.clone(),
            Arc::new(clock.clone()),
            events.clone(),
        )
        .await
        .unwrap();
        Fixture {
            dir,
            store,
            clock,
            events,
            library,
        }
    }

    /// Opens the same data dir and store again (a restart).
    async fn reopen(self) -> Fixture {
        Self::open(self.dir, self.store).await
    }
}

pub fn image(version: &str, size: u64) -> Vec<u8> {
    ImageBuilder::new(Chip::Esp32s3)
        .version(version)
        .project("thermostat")
        .idf_version("v5.1.4")
        .secure_version(3)
        .size(size)
        .build()
        .unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_valid_image_becomes_an_entry_with_its_descriptor_fields() {
    let fx = Fixture::new().await;
    let mut events = fx.events.subscribe();
    let bytes = image("2.1.0", 300_000);
    let (entry, created) = fx
        .library
        .add(
            Bytes::from(bytes.clone()),
            Some("C:\\builds\\thermo.bin".into()),
            Some("fixes the relay".into()),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(entry.sha256, sha(&bytes));
    assert_eq!(entry.size, bytes.len() as u64);
    assert_eq!(
        (
            entry.chip.as_str(),
            entry.project.as_str(),
            entry.version.as_str()
        ),
        ("esp32s3", "thermostat", "2.1.0")
    );
    assert_eq!(
        (entry.idf_version.as_str(), entry.secure_version),
        ("v5.1.4", 3)
    );
    assert_eq!(entry.filename.as_deref(), Some("thermo.bin"));
    assert_eq!(entry.notes.as_deref(), Some("fixes the relay"));
    assert_eq!(entry.uploaded_at, fx.clock.now());

    let on_disk = std::fs::read(fx.library.dir().path(&entry.sha256)).unwrap();
    assert_eq!(on_disk, bytes);
    assert_eq!(fx.library.list().await.unwrap(), vec![entry.clone()]);
    match events.try_recv().unwrap() {
        Event::FirmwareAdded(e) => assert_eq!(e, entry),
        other => panic!("expected firmware_added, got {other:?}"),
    }
}

#[tokio::test]
async fn a_real_esp_idf_build_is_accepted_with_the_validators_metadata() {
    let fx = Fixture::new().await;
    let path = aegis_testkit::paths::real_firmware_dir()
        .join("esp-serial-flasher-esp32c3-espidf-5.2.2.bin");
    let bytes = std::fs::read(path).unwrap();
    let ins = aegis_image::inspect(&bytes);
    assert!(
        ins.valid,
        "corpus file should be a valid app: {:?}",
        ins.reason
    );
    let (entry, _) = fx.library.add(bytes.into(), None, None).await.unwrap();
    let app = ins.app.unwrap();
    assert_eq!(entry.chip, "esp32c3");
    assert_eq!(entry.version, app.version);
    assert_eq!(entry.idf_version, app.idf_version);
    assert_eq!(entry.filename, None);
}

#[tokio::test]
async fn a_duplicate_upload_returns_the_existing_entry_unchanged() {
    let fx = Fixture::new().await;
    let bytes = Bytes::from(image("1.0.0", 64 * 1024));
    let (first, created) = fx
        .library
        .add(bytes.clone(), Some("a.bin".into()), None)
        .await
        .unwrap();
    assert!(created);
    fx.clock.advance(Duration::from_secs(60));
    let mut events = fx.events.subscribe();
    let (second, created) = fx
        .library
        .add(bytes, Some("b.bin".into()), Some("again".into()))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        second, first,
        "filename, notes and uploaded_at are the first upload's"
    );
    assert_eq!(fx.library.list().await.unwrap().len(), 1);
    assert!(events.try_recv().is_err(), "a duplicate publishes nothing");
}

async fn assert_refused(fx: &Fixture, bytes: Vec<u8>, what: &str) {
    let reason = aegis_image::inspect(&bytes)
        .reason
        .unwrap_or_else(|| panic!("{what} should be invalid"));
    let err = fx.library.add(bytes.into(), None, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unprocessable, "{what}");
    assert_eq!(err.status(), 422);
    assert_eq!(err.code, "not_an_app_image", "{what}");
    assert_eq!(
        err.message, reason,
        "{what}: the validator's reason, verbatim"
    );
}

#[tokio::test]
async fn non_app_files_are_refused_with_the_validators_reason() {
    let fx = Fixture::new().await;
    let real = aegis_testkit::paths::real_firmware_dir();
    for name in [
        "NEG-esp-serial-flasher-esp32-bootloader-5.2.2.bin",
        "NEG-esp-serial-flasher-partition-table.bin",
        "NEG-esphome-esp32-merged-2022.3.0.bin",
        "NEG-esp-serial-flasher-esp8266-rtos-sdk-3.4.bin",
    ] {
        assert_refused(&fx, std::fs::read(real.join(name)).unwrap(), name).await;
    }
    for c in Corruption::ALL {
        let bytes = ImageBuilder::new(Chip::Esp32c3)
            .size(64 * 1024)
            .corrupt(*c)
            .build()
            .unwrap();
        assert_refused(&fx, bytes, &format!("{c:?}")).await;
    }
    assert_refused(&fx, Vec::new(), "empty file").await;
    assert!(fx.library.list().await.unwrap().is_empty());
    assert!(
        fx.library.dir().list().unwrap().is_empty(),
        "nothing written"
    );
}

#[tokio::test]
async fn uploads_over_the_limit_are_too_large() {
    let limit = 1024 * 1024;
    let ok = read_body_limited(&HeaderMap::new(), Body::from(vec![7u8; limit]), limit)
        .await
        .unwrap();
    assert_eq!(ok.len(), limit);

    // No Content-Length: refused while streaming.
    let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 64 * 1024])));
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let err = read_body_limited(&HeaderMap::new(), body, limit)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.status(), err.code),
        (ErrorKind::TooLarge, 413, "upload_too_large")
    );
    assert!(err.message.contains("1 MiB limit"), "{}", err.message);

    // A declared Content-Length over the limit is refused before reading.
    let mut headers = HeaderMap::new();
    headers.insert("content-length", "1048577".parse().unwrap());
    let err = read_body_limited(&headers, Body::empty(), limit)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge);
}

#[tokio::test]
async fn a_crash_between_temp_write_and_rename_leaves_no_visible_file() {
    let fx = Fixture::new().await;
    let bytes = image("3.0.0", 64 * 1024);
    let sha = sha(&bytes);
    let dir = ImageDir::open(fx.dir.path().join("firmware")).unwrap();
    let pending = dir.write_temp(&sha, &bytes).unwrap();
    let temp = pending.temp_path().to_path_buf();
    std::mem::forget(pending); // the process dies here: no rename, no cleanup
    assert!(temp.is_file());
    assert!(!dir.path(&sha).exists(), "nothing under the final name");
    assert!(dir.list().unwrap().is_empty());
    assert!(fx.library.image(&sha).await.unwrap().is_none());

    let fx = fx.reopen().await;
    assert!(!temp.exists(), "the leftover temp file is removed at start");
    assert!(fx.library.list().await.unwrap().is_empty());
    // The upload can simply be repeated.
    let (entry, created) = fx.library.add(bytes.into(), None, None).await.unwrap();
    assert!(created);
    assert_eq!(entry.sha256, sha);
}

#[tokio::test]
async fn start_reconciles_files_and_metadata() {
    let fx = Fixture::new().await;
    let kept = image("1.0.0", 64 * 1024);
    let (kept_entry, _) = fx.library.add(kept.into(), None, None).await.unwrap();
    let orphan_meta = image("1.1.0", 64 * 1024);
    let (gone, _) = fx
        .library
        .add(orphan_meta.into(), None, None)
        .await
        .unwrap();
    std::fs::remove_file(fx.library.dir().path(&gone.sha256)).unwrap();
    // A valid file whose metadata was never written (crash after the rename) ...
    let orphan_file = image("1.2.0", 64 * 1024);
    let orphan_sha = sha(&orphan_file);
    fx.library.dir().write(&orphan_sha, &orphan_file).unwrap();
    // ... and a file whose content does not match its name.
    let bogus = "0".repeat(64);
    fx.library.dir().write(&bogus, &orphan_file).unwrap();

    let fx = fx.reopen().await;
    let mut shas: Vec<_> = fx
        .library
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.sha256)
        .collect();
    shas.sort();
    let mut expected = vec![kept_entry.sha256.clone(), orphan_sha.clone()];
    expected.sort();
    assert_eq!(shas, expected);
    let adopted = fx.library.get(&orphan_sha).await.unwrap().unwrap();
    assert_eq!(adopted.version, "1.2.0");
    assert_eq!(
        fx.library.dir().list().unwrap(),
        expected,
        "the bogus file is removed"
    );
}

#[tokio::test]
async fn delete_is_refused_while_an_unfinished_rollout_uses_the_image() {
    let fx = Fixture::new().await;
    let (entry, _) = fx
        .library
        .add(image("4.0.0", 64 * 1024).into(), None, None)
        .await
        .unwrap();
    fx.store
        .in_use
        .lock()
        .unwrap()
        .insert(entry.sha256.clone(), vec!["r-17".into()]);
    let err = fx.library.delete(&entry.sha256).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code),
        (ErrorKind::Conflict, "firmware_in_use")
    );
    assert!(err.message.contains("r-17"), "{}", err.message);
    assert!(fx.library.dir().exists(&entry.sha256));
    assert!(fx.library.get(&entry.sha256).await.unwrap().is_some());

    fx.store.in_use.lock().unwrap().clear();
    let mut events = fx.events.subscribe();
    fx.library.delete(&entry.sha256).await.unwrap();
    assert!(!fx.library.dir().exists(&entry.sha256));
    assert!(fx.library.get(&entry.sha256).await.unwrap().is_none());
    assert!(fx.library.image(&entry.sha256).await.unwrap().is_none());
    assert!(
        matches!(events.try_recv().unwrap(), Event::FirmwareDeleted { sha256 } if sha256 == entry.sha256)
    );
    let err = fx.library.delete(&entry.sha256).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn the_library_works_on_the_sqlite_store_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aegis.db");
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let open = |store| FirmwareLibrary::open(dir.path(), store, clock.clone(), EventBus::new());
    let store = aegis_server::store::sqlite::SqliteStore::open(&db).unwrap();
    let library = open(Arc::new(store)).await.unwrap();
    let bytes = Bytes::from(image("7.0.0", 64 * 1024));
    let (entry, created) = library
        .add(bytes.clone(), Some("x.bin".into()), Some("notes".into()))
        .await
        .unwrap();
    assert!(created);
    assert!(!library.add(bytes, None, None).await.unwrap().1);
    drop(library);

    let store = aegis_server::store::sqlite::SqliteStore::open(&db).unwrap();
    let library = open(Arc::new(store)).await.unwrap();
    assert_eq!(library.list().await.unwrap(), vec![entry.clone()]);
    library.delete(&entry.sha256).await.unwrap();
    assert!(library.list().await.unwrap().is_empty());
}
