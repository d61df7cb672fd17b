//! The fleet-wide, content-addressed store of complete slot images.
//!
//! A thousand devices running the same release hold one file, `blobs/<sha256>.bin`, written
//! once via a temporary file and a rename (so a crash never leaves a half blob under a final
//! name). Blobs are immutable; what the bootloader needs to know about one (its
//! [`ImageFacts`]) is computed once per process and cached, so booting a fleet reads each
//! release once, not once per device.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::{ImageFacts, ModelError};

/// Shared store of slot images, keyed by SHA-256. `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    facts: Mutex<HashMap<[u8; 32], Arc<ImageFacts>>>,
    temp_counter: AtomicU64,
}

impl BlobStore {
    /// Open (creating if needed) the store in `<state_dir>/blobs/`.
    pub fn open(state_dir: &Path) -> Result<Self, ModelError> {
        let dir = state_dir.join("blobs");
        std::fs::create_dir_all(&dir).map_err(|e| ModelError::io("create", &dir, e))?;
        Ok(BlobStore {
            dir,
            facts: Mutex::new(HashMap::new()),
            temp_counter: AtomicU64::new(0),
        })
    }

    /// The directory holding the blobs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with this SHA-256 lives (whether or not it exists).
    pub fn path(&self, sha: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.bin", hex::encode(sha)))
    }

    /// Whether the store holds this blob.
    pub fn contains(&self, sha: &[u8; 32]) -> bool {
        self.path(sha).is_file()
    }

    /// Store `bytes` (once) and return their SHA-256.
    pub fn put(&self, bytes: &[u8]) -> Result<[u8; 32], ModelError> {
        let sha: [u8; 32] = Sha256::digest(bytes).into();
        let path = self.path(&sha);
        if path.is_file() {
            return Ok(sha);
        }
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!(
            ".{}.{}.{n}.tmp",
            hex::encode(sha),
            std::process::id()
        ));
        let result = (|| {
            let mut file =
                std::fs::File::create(&temp).map_err(|e| ModelError::io("create", &temp, e))?;
            file.write_all(bytes)
                .map_err(|e| ModelError::io("write", &temp, e))?;
            drop(file);
            std::fs::rename(&temp, &path).map_err(|e| ModelError::io("rename into place", &path, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map(|()| sha)
    }

    /// Read a blob back.
    pub fn get(&self, sha: &[u8; 32]) -> Result<Vec<u8>, ModelError> {
        let path = self.path(sha);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ModelError::BlobMissing {
                sha: hex::encode(sha),
            },
            _ => ModelError::io("read", &path, e),
        })
    }

    /// The facts about a blob, inspected on first use and cached.
    pub fn facts(&self, sha: &[u8; 32]) -> Result<Arc<ImageFacts>, ModelError> {
        if let Some(facts) = self.lock().get(sha) {
            return Ok(Arc::clone(facts));
        }
        let facts = Arc::new(ImageFacts::examine(&self.get(sha)?));
        self.lock().insert(*sha, Arc::clone(&facts));
        Ok(facts)
    }

    /// Record facts already computed from the blob's bytes (saves a re-read).
    pub(crate) fn remember(&self, sha: [u8; 32], facts: Arc<ImageFacts>) {
        self.lock().entry(sha).or_insert(facts);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<ImageFacts>>> {
        self.facts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
