//! The content-addressed image directory: `firmware/<sha256>.bin`, one immutable file per image.
//! A file is first written under a hidden temporary name, synced, then renamed into place and the
//! directory synced, so a crash never leaves a half-written image under its final name; leftover
//! temporary files are removed when the directory is opened. All functions here block: callers
//! on the async runtime use `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Length of a SHA-256 in hex.
const SHA256_HEX_LEN: usize = 64;
/// Suffix of temporary files (`.<sha256>.<random>.tmp`).
const TEMP_SUFFIX: &str = ".tmp";

/// True for exactly 64 lower-case hex digits: the form image names and API paths use.
pub fn is_sha256(s: &str) -> bool {
    s.len() == SHA256_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The directory holding the library's image files.
#[derive(Debug, Clone)]
pub struct ImageDir {
    dir: PathBuf,
}

impl ImageDir {
    /// Opens (creating it if needed) the directory and removes temporary files a crash left.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let images = ImageDir { dir };
        for entry in fs::read_dir(&images.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                tracing::warn!(file = %name, "removing an unfinished image file left by an interrupted upload");
                fs::remove_file(entry.path())?;
            }
        }
        Ok(images)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image with this SHA-256 lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.bin"))
    }

    pub fn exists(&self, sha256: &str) -> bool {
        self.path(sha256).is_file()
    }

    /// Writes the bytes to a synced temporary file, not yet visible under the final name.
    pub fn write_temp(&self, sha256: &str, bytes: &[u8]) -> io::Result<PendingImage> {
        let temp = self.dir.join(format!(
            ".{sha256}.{:016x}{TEMP_SUFFIX}",
            rand::random::<u64>()
        ));
        let pending = PendingImage {
            temp,
            target: self.path(sha256),
            dir: self.dir.clone(),
            committed: false,
        };
        let mut file = File::create(&pending.temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(pending)
    }

    /// Stores an image: temp file, fsync, rename, fsync of the directory.
    pub fn write(&self, sha256: &str, bytes: &[u8]) -> io::Result<()> {
        self.write_temp(sha256, bytes)?.commit()
    }

    pub fn read(&self, sha256: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(sha256))
    }

    /// File size, `None` when the file does not exist.
    pub fn size(&self, sha256: &str) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(sha256)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes an image; false if it did not exist.
    pub fn remove(&self, sha256: &str) -> io::Result<bool> {
        match fs::remove_file(self.path(sha256)) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The SHA-256 of every image file present, sorted. Other files are ignored.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(sha) = name.to_str().and_then(|n| n.strip_suffix(".bin")) else {
                continue;
            };
            if is_sha256(sha) {
                out.push(sha.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// An image written to a temporary file and synced, waiting to be renamed into place.
/// Dropping it without [`commit`](PendingImage::commit) removes the temporary file.
#[derive(Debug)]
pub struct PendingImage {
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl PendingImage {
    /// The temporary file's path (for tests that simulate a crash).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames the file to its final name and syncs the directory so the rename is durable.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        sync_dir(&self.dir)
    }
}

impl Drop for PendingImage {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_names_are_64_lower_case_hex_digits() {
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"AB".repeat(32)));
        assert!(!is_sha256(&"a".repeat(63)));
        assert!(!is_sha256(&"g".repeat(64)));
    }
}
