//! `aegis serve` (and plain `aegis`): binds both listeners, sets up logging, opens the
//! dashboard, and runs [`aegis_server::server::serve`] until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use aegis_server::keys;
use aegis_server::server::{ServerConfig, ShutdownToken, serve};
use aegis_server::web::token_required;
use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::exit::{CodedError, Exit};

pub fn run(args: &ServeArgs) -> anyhow::Result<Exit> {
    init_logging();
    let data_dir = data_dir(args.data_dir.clone())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let operator = bind(args.listen, "--listen").await?;
        let device = bind(args.device_listen, "--device-listen").await?;
        let mut config = ServerConfig::new(&data_dir);
        config.public_url = args.public_url.clone();
        config.mdns_interface = args.mdns_interface.clone();

        let mut url = dashboard_url(args.listen, operator.local_addr()?);
        if token_required(config.token_policy, args.listen) {
            let dir = data_dir.clone();
            let token =
                tokio::task::spawn_blocking(move || keys::load_or_create_token(&dir)).await??;
            if token.created {
                tracing::warn!(
                    "created the operator token (shown only this once; it is kept in {}): {}",
                    token.path.display(),
                    token.value
                );
            }
            url.push_str(&format!("?token={}", token.value));
        }

        let shutdown = ShutdownToken::new();
        let on_ctrl_c = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C: shutting down");
            }
            on_ctrl_c.cancel();
        });
        if !args.no_open {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = open::that_detached(&url) {
                    tracing::warn!("could not open a browser ({e}); visit {url}");
                }
            });
        }
        tracing::info!(data_dir = %data_dir.display(), "dashboard: {url}");
        serve(config, operator, device, shutdown)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(Exit::Success)
    })
}

/// `--data-dir`, or the per-OS data directory.
pub fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    directories::ProjectDirs::from("", "", "aegis")
        .map(|p| p.data_dir().to_path_buf())
        .ok_or_else(|| {
            CodedError::new(
                Exit::BadInput,
                "no home directory to keep the data in was found; pass --data-dir DIR",
            )
            .into()
        })
}

pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "port {} is in use: is another aegis running? use {flag} to pick another",
                addr.port()
            )
        } else {
            format!("cannot listen on {addr} ({e}); use {flag} to pick another address")
        };
        CodedError::new(Exit::BadInput, message).into()
    })
}

/// The address a browser on this machine can open.
pub(crate) fn dashboard_url(requested: SocketAddr, bound: SocketAddr) -> String {
    let ip = if requested.ip().is_unspecified() {
        std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound.ip()
    };
    format!("http://{}/", SocketAddr::new(ip, bound.port()))
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_url_is_reachable_locally() {
        let any: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert_eq!(dashboard_url(any, any), "http://127.0.0.1:3000/");
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let bound: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        assert_eq!(dashboard_url(lo, bound), "http://127.0.0.1:4567/");
    }
}
