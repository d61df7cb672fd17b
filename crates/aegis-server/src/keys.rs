//! The server's secrets in `<data_dir>/keys/`: the ECDSA P-256 signing key that devices trust
//! (`signing.pem`, PKCS#8) and the operator token (`token`). Both are created on first run,
//! written to a temporary file created with mode 0600 and renamed into place, and loaded
//! afterwards. A secret file that other users can read is refused, with the `chmod` that fixes
//! it: a signing key anyone on the machine could copy would let them sign triggers for every
//! device built with it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aegis_protocol::SigningKey;
use rand::RngCore;

use crate::error::ErrorKind;
use crate::{Error, Result};

/// File name of the signing key inside `keys/`.
pub const SIGNING_KEY_FILE: &str = "signing.pem";
/// File name of the operator token inside `keys/`.
pub const TOKEN_FILE: &str = "token";

/// A secret loaded from disk, or created because there was none.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub value: T,
    /// True when this call created the file (first run).
    pub created: bool,
    pub path: PathBuf,
}

/// `<data_dir>/keys`.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Loads `<data_dir>/keys/signing.pem`, creating a new random key there on first run.
pub fn load_or_create_signing_key(data_dir: &Path) -> Result<Loaded<SigningKey>> {
    let path = keys_dir(data_dir).join(SIGNING_KEY_FILE);
    if let Some(text) = read_secret(&path)? {
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            key_error(format!(
                "the signing key {} cannot be read ({e}); restore it from a backup (devices trust only that key), or move it away to create a new one",
                path.display()
            ))
        })?;
        return Ok(Loaded {
            value: key,
            created: false,
            path,
        });
    }
    let key = SigningKey::generate();
    let pem = key.to_pkcs8_pem().map_err(|e| {
        Error::internal(format!(
            "the new signing key could not be encoded ({e}); this is a bug, please report it"
        ))
    })?;
    if !write_secret(&path, pem.as_bytes())? {
        // Created concurrently by someone else: theirs is the key.
        return load_or_create_signing_key(data_dir);
    }
    Ok(Loaded {
        value: key,
        created: true,
        path,
    })
}

/// Loads `<data_dir>/keys/token`, creating a new random token (32 bytes, hex) on first run.
pub fn load_or_create_token(data_dir: &Path) -> Result<Loaded<String>> {
    let path = keys_dir(data_dir).join(TOKEN_FILE);
    if let Some(text) = read_secret(&path)? {
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(key_error(format!(
                "the operator token file {} is empty; delete it to have a new token created",
                path.display()
            )));
        }
        return Ok(Loaded {
            value: token,
            created: false,
            path,
        });
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    if !write_secret(&path, format!("{token}\n").as_bytes())? {
        return load_or_create_token(data_dir);
    }
    Ok(Loaded {
        value: token,
        created: true,
        path,
    })
}

fn key_error(message: String) -> Error {
    Error::new(ErrorKind::Internal, "key_file", message)
}

/// Reads a secret file; `None` if it does not exist. Refuses one that group or others can
/// access.
fn read_secret(path: &Path) -> Result<Option<String>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(key_error(format!(
                "cannot read {}: {e}; check the data directory's permissions",
                path.display()
            )));
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(format!(
            "{} is accessible by other users (mode {mode:03o}); run `chmod 600 {}` and start again (and consider it leaked if others could read it)",
            path.display(),
            path.display()
        )));
    }
    fs::read_to_string(path).map(Some).map_err(|e| {
        key_error(format!(
            "cannot read {}: {e}; check the data directory's permissions",
            path.display()
        ))
    })
}

/// Writes a secret with mode 0600: a fresh temporary file beside the target, fsynced, linked
/// into place (which fails rather than overwrite), then the directory fsynced. Returns false
/// when another process or thread created the secret first: the caller then loads that one.
fn write_secret(path: &Path, contents: &[u8]) -> Result<bool> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::internal(format!("{} has no parent directory", path.display())))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| write_error(dir, &e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        let linked = match fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        fs::remove_file(&tmp)?;
        fs::File::open(dir)?.sync_all()?;
        Ok(linked)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        write_error(path, &e)
    })
}

fn write_error(path: &Path, e: &std::io::Error) -> Error {
    key_error(format!(
        "cannot write {}: {e}; check the data directory's permissions and free space",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn signing_key_is_created_once_with_mode_0600_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_signing_key(dir.path()).unwrap();
        assert!(first.created);
        assert_eq!(mode(&first.path), 0o600);
        assert_eq!(mode(&keys_dir(dir.path())), 0o700);
        let second = load_or_create_signing_key(dir.path()).unwrap();
        assert!(!second.created);
        assert_eq!(
            second.value.public_key().to_hex(),
            first.value.public_key().to_hex()
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create_signing_key(dir.path()).unwrap();
        fs::set_permissions(&key.path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_signing_key(dir.path()).unwrap_err();
        assert!(err.message.contains("chmod 600"), "{}", err.message);
        assert!(err.message.contains("644"), "{}", err.message);
    }

    #[test]
    fn token_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_token(dir.path()).unwrap();
        assert!(first.created);
        assert_eq!(first.value.len(), 64);
        assert_eq!(mode(&first.path), 0o600);
        let second = load_or_create_token(dir.path()).unwrap();
        assert!(!second.created);
        assert_eq!(second.value, first.value);
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_signing_key(dir.path()).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().value.public_key().to_hex())
                .collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        let leftovers: Vec<_> = fs::read_dir(keys_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(SIGNING_KEY_FILE)]);
    }

    #[test]
    fn a_corrupt_key_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_create_signing_key(dir.path()).unwrap();
        fs::write(&key.path, "not a key").unwrap();
        let err = load_or_create_signing_key(dir.path()).unwrap_err();
        assert!(err.message.contains("restore it"), "{}", err.message);
        assert_eq!(fs::read_to_string(&key.path).unwrap(), "not a key");
    }
}
