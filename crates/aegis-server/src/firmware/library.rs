//! The firmware library: adds images after aegis-image says they are installable OTA app
//! images, stores each once under its SHA-256 ([`ImageDir`]) with its metadata in the
//! [`Store`], lists and deletes them (never one an unfinished rollout uses), and keeps files
//! and metadata consistent after a crash.
//!
//! Metadata of an image without an app descriptor: `project`, `version` and `idf_version` are
//! empty strings and `secure_version` is 0 — the same as a descriptor with empty fields
//! (Tasmota and MicroPython builds), and what such a device announces as `ver`, so "outdated"
//! comparisons stay consistent. `chip` is the chip's name (`esp32s3`); a valid image always
//! names a known chip, "unknown" is only a fallback.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::cache::{DEFAULT_WARM_BYTES, Image, ImageCache};
use super::files::{ImageDir, is_sha256};
use super::types::FirmwareEntry;
use crate::error::ErrorKind;
use crate::events::{Event, EventBus};
use crate::store::Store;
use crate::time::SharedClock;
use crate::{Error, Result};

/// Longest accepted file name (bytes) and release notes (bytes).
const MAX_FILENAME: usize = 255;
const MAX_NOTES: usize = 16 * 1024;

/// The firmware library; clones share it.
#[derive(Debug, Clone)]
pub struct FirmwareLibrary {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: ImageDir,
    store: Arc<dyn Store>,
    clock: SharedClock,
    events: EventBus,
    cache: ImageCache,
    /// Serializes adds and deletes, so two uploads of one image cannot race.
    write: tokio::sync::Mutex<()>,
}

impl FirmwareLibrary {
    /// Opens the library whose files live in `<data_dir>/firmware`, then reconciles files and
    /// metadata: a file without metadata (a crash after the rename) is adopted if it is a valid
    /// image named by its own hash and removed otherwise; metadata without a file is removed.
    pub async fn open(
        data_dir: &Path,
        store: Arc<dyn Store>,
        clock: SharedClock,
        events: EventBus,
    ) -> Result<Self> {
        let path = data_dir.join("firmware");
        let dir = blocking(move || Ok(ImageDir::open(path)?)).await?;
        let library = FirmwareLibrary {
            inner: Arc::new(Inner {
                cache: ImageCache::new(dir.clone(), DEFAULT_WARM_BYTES),
                dir,
                store,
                clock,
                events,
                write: tokio::sync::Mutex::new(()),
            }),
        };
        library.reconcile().await?;
        Ok(library)
    }

    /// The shared in-memory copies of images, for the download endpoint.
    pub fn cache(&self) -> &ImageCache {
        &self.inner.cache
    }

    pub fn dir(&self) -> &ImageDir {
        &self.inner.dir
    }

    /// Adds an image. Returns the entry and whether it was created (false: the same file was
    /// already in the library, and its existing entry is returned unchanged).
    /// A file that is not an installable app image fails with `Unprocessable`, code
    /// `not_an_app_image`, and aegis-image's reason as the message.
    pub async fn add(
        &self,
        bytes: Bytes,
        filename: Option<String>,
        notes: Option<String>,
    ) -> Result<(FirmwareEntry, bool)> {
        let filename = clean_filename(filename)?;
        let notes = clean_notes(notes)?;
        let inspected = bytes.clone();
        let inspection = blocking(move || Ok(aegis_image::inspect(&inspected))).await?;
        if !inspection.valid {
            let reason = inspection
                .reason
                .unwrap_or_else(|| "the file is not a valid OTA app image".into());
            return Err(Error::new(
                ErrorKind::Unprocessable,
                "not_an_app_image",
                reason,
            ));
        }
        let sha256 = hex::encode(inspection.sha256);
        let app = inspection.app.as_ref();
        let entry = FirmwareEntry {
            sha256: sha256.clone(),
            size: bytes.len() as u64,
            chip: inspection.chip.map_or("unknown", |c| c.name()).to_string(),
            project: app.map(|a| a.project.clone()).unwrap_or_default(),
            version: app.map(|a| a.version.clone()).unwrap_or_default(),
            idf_version: app.map(|a| a.idf_version.clone()).unwrap_or_default(),
            secure_version: app.map_or(0, |a| a.secure_version),
            filename,
            notes,
            uploaded_at: self.inner.clock.now(),
        };

        let _write = self.inner.write.lock().await;
        if let Some(existing) = self.get(&sha256).await? {
            return Ok((existing, false));
        }
        let (dir, sha, data) = (self.inner.dir.clone(), sha256.clone(), bytes);
        blocking(move || Ok(dir.write(&sha, &data)?)).await?;
        let (store, e) = (self.inner.store.clone(), entry.clone());
        let created = blocking(move || store.put_firmware(&e)).await?;
        if !created {
            // Another process (sharing the database) added it first.
            let existing = self.get(&sha256).await?.unwrap_or(entry);
            return Ok((existing, false));
        }
        tracing::info!(sha256 = %entry.sha256, version = %entry.version, project = %entry.project, chip = %entry.chip, size = entry.size, "firmware added");
        self.inner
            .events
            .publish(Event::FirmwareAdded(entry.clone()));
        Ok((entry, true))
    }

    pub async fn get(&self, sha256: &str) -> Result<Option<FirmwareEntry>> {
        if !is_sha256(sha256) {
            return Ok(None);
        }
        let (store, sha) = (self.inner.store.clone(), sha256.to_string());
        blocking(move || store.firmware(&sha)).await
    }

    /// All entries, newest upload first.
    pub async fn list(&self) -> Result<Vec<FirmwareEntry>> {
        let store = self.inner.store.clone();
        blocking(move || store.firmware_list()).await
    }

    /// The image's bytes (shared with downloads); `None` if it is not in the library.
    pub async fn image(&self, sha256: &str) -> Result<Option<Arc<Image>>> {
        if !is_sha256(sha256) {
            return Ok(None);
        }
        self.inner.cache.get(sha256).await
    }

    /// Deletes an image: `NotFound` if there is none, `Conflict` (code `firmware_in_use`) while
    /// an unfinished rollout uses it. Downloads already running finish from memory.
    pub async fn delete(&self, sha256: &str) -> Result<()> {
        let not_found = || {
            Error::not_found(
                "firmware_not_found",
                format!(
                    "no firmware with SHA-256 {sha256} is in the library; list it with GET /api/v1/firmware"
                ),
            )
        };
        if !is_sha256(sha256) {
            return Err(not_found());
        }
        let _write = self.inner.write.lock().await;
        let (store, sha) = (self.inner.store.clone(), sha256.to_string());
        let users = blocking(move || store.active_rollouts_using(&sha)).await?;
        if !users.is_empty() {
            return Err(Error::conflict(
                "firmware_in_use",
                format!(
                    "firmware {sha256} is used by unfinished rollout(s) {}; abort them or wait until they finish, then delete it",
                    users.join(", ")
                ),
            ));
        }
        let (store, sha) = (self.inner.store.clone(), sha256.to_string());
        if !blocking(move || store.delete_firmware(&sha)).await? {
            return Err(not_found());
        }
        let (dir, sha) = (self.inner.dir.clone(), sha256.to_string());
        blocking(move || Ok(dir.remove(&sha)?)).await?;
        self.inner.cache.forget(sha256);
        tracing::info!(%sha256, "firmware deleted");
        self.inner.events.publish(Event::FirmwareDeleted {
            sha256: sha256.to_string(),
        });
        Ok(())
    }

    async fn reconcile(&self) -> Result<()> {
        let dir = self.inner.dir.clone();
        let files = blocking(move || Ok(dir.list()?)).await?;
        let entries = self.list().await?;
        for entry in &entries {
            if files.binary_search(&entry.sha256).is_err() {
                tracing::warn!(sha256 = %entry.sha256, "firmware metadata without its file: removing the entry");
                let (store, sha) = (self.inner.store.clone(), entry.sha256.clone());
                blocking(move || store.delete_firmware(&sha)).await?;
            }
        }
        for sha in files {
            if entries.iter().any(|e| e.sha256 == sha) {
                continue;
            }
            let (dir, s) = (self.inner.dir.clone(), sha.clone());
            let bytes = Bytes::from(blocking(move || Ok(dir.read(&s)?)).await?);
            match self.add(bytes, None, None).await {
                Ok((entry, _)) if entry.sha256 == sha => {
                    tracing::warn!(%sha, "firmware file without metadata (interrupted upload): adopted it");
                }
                outcome => {
                    let why = match outcome {
                        Err(e) => e.message,
                        Ok(_) => "its content does not match its name".into(),
                    };
                    tracing::warn!(%sha, %why, "firmware file without metadata is not a valid image: removing it");
                    let (dir, s) = (self.inner.dir.clone(), sha.clone());
                    blocking(move || Ok(dir.remove(&s)?)).await?;
                }
            }
        }
        Ok(())
    }
}

fn clean_filename(name: Option<String>) -> Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    // Keep only the last path component: browsers and curl may send a full path.
    let base = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if base.len() > MAX_FILENAME || base.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "bad_filename",
            format!(
                "the file name must be at most {MAX_FILENAME} bytes without control characters; rename the file"
            ),
        ));
    }
    Ok((!base.is_empty()).then_some(base))
}

fn clean_notes(notes: Option<String>) -> Result<Option<String>> {
    match notes {
        Some(n) if n.len() > MAX_NOTES => Err(Error::bad_request(
            "notes_too_long",
            format!(
                "release notes must be at most {} KiB; shorten them",
                MAX_NOTES / 1024
            ),
        )),
        Some(n) if n.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Runs blocking work (disk, hashing, SQLite) off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a background task failed: {e}")))?
}
