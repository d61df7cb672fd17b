//! Shared in-memory copies of images: at most one [`Bytes`] per SHA-256, read from disk on
//! demand (in `spawn_blocking`, checked against its name) and shared by every concurrent
//! download — a download holds an `Arc` to the image and sends zero-copy slices of it.
//!
//! Memory stays bounded: an image lives while any download holds it (a weak reference lets new
//! downloads find it), plus a small "warm" set of recently used images kept up to a byte budget
//! so back-to-back downloads do not re-read the file. Concurrent misses for the same image wait
//! for one read instead of each reading a copy.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::files::ImageDir;
use crate::{Error, Result};

/// Default byte budget of recently used images kept after their last download ends.
pub const DEFAULT_WARM_BYTES: u64 = 64 * 1024 * 1024;

/// One image in memory.
#[derive(Debug)]
pub struct Image {
    pub sha256: String,
    pub bytes: Bytes,
}

/// The shared image cache; clones share the same cache.
#[derive(Debug, Clone)]
pub struct ImageCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: ImageDir,
    warm_budget: u64,
    state: Mutex<State>,
    loads: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<String, Arc<Slot>>,
    /// Most recently used last.
    warm: VecDeque<Arc<Image>>,
    warm_bytes: u64,
}

#[derive(Debug, Default)]
struct Slot {
    image: Mutex<Weak<Image>>,
    /// Held while reading the file so concurrent misses read it once.
    loading: tokio::sync::Mutex<()>,
}

impl Slot {
    fn upgrade(&self) -> Option<Arc<Image>> {
        self.image
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
    }
}

impl ImageCache {
    pub fn new(dir: ImageDir, warm_budget: u64) -> Self {
        ImageCache {
            inner: Arc::new(Inner {
                dir,
                warm_budget,
                state: Mutex::new(State::default()),
                loads: AtomicU64::new(0),
            }),
        }
    }

    /// The image with this SHA-256, read from disk if no one holds it; `None` if there is no
    /// such file. Fails (Internal) if the file cannot be read or its content does not match
    /// its name.
    pub async fn get(&self, sha256: &str) -> Result<Option<Arc<Image>>> {
        let slot = {
            let mut state = self.lock();
            let slot = state.slots.entry(sha256.to_string()).or_default().clone();
            if let Some(image) = slot.upgrade() {
                state.touch(&image, self.inner.warm_budget);
                return Ok(Some(image));
            }
            slot
        };
        let _loading = slot.loading.lock().await;
        if let Some(image) = slot.upgrade() {
            return Ok(Some(image));
        }
        let Some(image) = self.load(sha256).await? else {
            self.lock().slots.remove(sha256);
            return Ok(None);
        };
        *slot.image.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&image);
        self.lock().touch(&image, self.inner.warm_budget);
        Ok(Some(image))
    }

    async fn load(&self, sha256: &str) -> Result<Option<Arc<Image>>> {
        let dir = self.inner.dir.clone();
        let sha = sha256.to_string();
        let read = tokio::task::spawn_blocking(move || -> Result<Option<Image>> {
            let bytes = match dir.read(&sha) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != sha {
                tracing::error!(expected = %sha, %actual, "an image file's content does not match its name");
                return Err(Error::internal(format!(
                    "the stored image {sha} is damaged (its content hashes to {actual}); delete it and upload it again"
                )));
            }
            Ok(Some(Image {
                sha256: sha,
                bytes: Bytes::from(bytes),
            }))
        })
        .await
        .map_err(|e| Error::internal(format!("reading an image failed: {e}")))??;
        if read.is_some() {
            self.inner.loads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(read.map(Arc::new))
    }

    /// Drops the cache's own references to an image (after it was deleted). Downloads in
    /// progress keep their copy until they end.
    pub fn forget(&self, sha256: &str) {
        let mut state = self.lock();
        state.slots.remove(sha256);
        let State {
            warm, warm_bytes, ..
        } = &mut *state;
        warm.retain(|img| {
            let keep = img.sha256 != sha256;
            if !keep {
                *warm_bytes -= img.bytes.len() as u64;
            }
            keep
        });
    }

    /// How many times an image was read from disk (for tests and metrics).
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    /// How many images are in memory right now (held by downloads or warm).
    pub fn resident(&self) -> usize {
        self.lock()
            .slots
            .values()
            .filter(|s| s.upgrade().is_some())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Marks an image as most recently used, evicting the oldest warm images over budget.
    fn touch(&mut self, image: &Arc<Image>, budget: u64) {
        if self
            .warm
            .back()
            .is_some_and(|last| Arc::ptr_eq(last, image))
        {
            return;
        }
        if let Some(i) = self.warm.iter().position(|w| Arc::ptr_eq(w, image)) {
            if let Some(w) = self.warm.remove(i) {
                self.warm.push_back(w);
            }
            return;
        }
        let len = image.bytes.len() as u64;
        if len > budget {
            return;
        }
        self.warm.push_back(image.clone());
        self.warm_bytes += len;
        while self.warm_bytes > budget {
            match self.warm.pop_front() {
                Some(old) => self.warm_bytes -= old.bytes.len() as u64,
                None => break,
            }
        }
        // Slots whose image is gone and that nobody is loading can go.
        if self.slots.len() > 64 {
            self.slots
                .retain(|_, s| Arc::strong_count(s) > 1 || s.upgrade().is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, len: usize) -> Arc<Image> {
        Arc::new(Image {
            sha256: name.into(),
            bytes: Bytes::from(vec![0u8; len]),
        })
    }

    #[test]
    fn warm_set_stays_within_its_byte_budget() {
        let mut s = State::default();
        let (a, b, c) = (image("a", 40), image("b", 40), image("c", 40));
        s.touch(&a, 100);
        s.touch(&b, 100);
        s.touch(&a, 100); // a is now the most recent
        s.touch(&c, 100); // evicts b
        assert_eq!(s.warm_bytes, 80);
        let names: Vec<_> = s.warm.iter().map(|i| i.sha256.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        s.touch(&image("huge", 200), 100);
        assert_eq!(
            s.warm_bytes, 80,
            "an image larger than the budget is never kept warm"
        );
    }
}
