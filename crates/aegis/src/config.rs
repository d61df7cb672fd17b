//! The client configuration file: TOML in the per-OS config directory
//! (`~/.config/aegis/config.toml` on Linux; `AEGIS_CONFIG` names another file). It holds the
//! server URL, the operator token and defaults of the deploy strategy. Precedence everywhere:
//! command-line flag, then environment variable, then this file, then the built-in default.
//!
//! ```toml
//! server = "http://192.168.1.20:3000"
//! token = "..."                  # or leave it out: AEGIS_TOKEN, or <data dir>/keys/token
//!
//! [deploy]
//! parallel = 20
//! canary = 2
//! max_failures = 10              # percent
//! retries = 1
//! timeout = "5m"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::{CodedError, Exit};

/// Environment variable naming the config file (overrides the per-OS location).
pub const CONFIG_ENV: &str = "AEGIS_CONFIG";

/// What the file may hold; every key is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Base URL of the server's operator listener, e.g. `http://127.0.0.1:3000`.
    pub server: Option<String>,
    /// The operator token (needed when the server listens on a non-loopback address).
    pub token: Option<String>,
    /// The server's data directory, where `keys/token` is looked up.
    pub data_dir: Option<PathBuf>,
    /// Defaults of `aegis deploy`'s strategy flags.
    pub deploy: DeployDefaults,
}

/// Defaults of `aegis deploy`'s strategy flags; unset ones take the server's defaults.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployDefaults {
    pub parallel: Option<u32>,
    pub canary: Option<u32>,
    pub max_failures: Option<u8>,
    pub retries: Option<u32>,
    /// A duration such as `5m` or `90s`.
    pub timeout: Option<String>,
    pub allow_downgrade: Option<bool>,
}

/// Where the config file is: `AEGIS_CONFIG`, else the per-OS config dir.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "aegis").map(|d| d.config_dir().join("config.toml"))
}

/// Loads the config file; a missing file is an empty config, a malformed one an error that
/// names the file and the problem.
pub fn load() -> anyhow::Result<Config> {
    match path() {
        Some(p) => load_from(&p),
        None => Ok(Config::default()),
    }
}

pub fn load_from(path: &Path) -> anyhow::Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => {
            return Err(CodedError::new(
                Exit::BadInput,
                format!("cannot read the config file {}: {e}", path.display()),
            )
            .into());
        }
    };
    parse(&text).map_err(|e| {
        CodedError::new(
            Exit::BadInput,
            format!(
                "the config file {} is not valid: {}; fix or remove it",
                path.display(),
                e.trim_end()
            ),
        )
        .into()
    })
}

fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        assert_eq!(parse("").unwrap(), Config::default());
        let c =
            parse("server = \"http://10.0.0.2:3000\"\n[deploy]\nparallel = 4\ntimeout = \"2m\"\n")
                .unwrap();
        assert_eq!(c.server.as_deref(), Some("http://10.0.0.2:3000"));
        assert_eq!(c.deploy.parallel, Some(4));
        assert_eq!(c.deploy.timeout.as_deref(), Some("2m"));
        let err = parse("srever = \"x\"").unwrap_err();
        assert!(err.contains("srever"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_empty_config() {
        let dir = std::env::temp_dir().join("aegis-config-test-does-not-exist/config.toml");
        assert_eq!(load_from(&dir).unwrap(), Config::default());
    }
}
