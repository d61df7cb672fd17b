//! Where shared test data and tools live, resolved from the workspace root.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // crates/aegis-testkit -> crates -> root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `../shared/testdata/firmware/real` beside the checkout: the corpus of real firmware files.
/// Panics with a clear message when it is missing, since tests that need it cannot run.
pub fn real_firmware_dir() -> PathBuf {
    let dir = workspace_root().join("../shared/testdata/firmware/real");
    assert!(
        dir.join("manifest.json").is_file(),
        "the real-firmware corpus is missing: expected {} (the `shared` folder must sit beside the checkout)",
        dir.display()
    );
    dir
}

/// A Python tool installed by `scripts/test` into `.venv` (esptool, ...), else one on PATH.
/// `env_override` names an environment variable that, when set, wins.
pub fn python_tool(name: &str, env_override: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_override) {
        return Some(PathBuf::from(p));
    }
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The Python interpreter of `.venv` (which has zeroconf and esptool), else `python3`.
pub fn python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
