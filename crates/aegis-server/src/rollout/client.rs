//! Talking to a device's control endpoint (PROTOCOL.md section 2): `GET /aegis/v1/info` and
//! `POST /aegis/v1/ota`. A trait, so the rollout runner is tested against scripted devices, and
//! an HTTP implementation for real ones.

use std::net::SocketAddr;
use std::time::Duration;

use aegis_protocol::{ErrorBody, Info, Trigger};
use futures_util::future::BoxFuture;

/// How a device answered a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerReply {
    /// 202: it starts the download.
    Accepted,
    /// Any other status, with the device's error code and message (or what we could read).
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// The device could not be talked to at all (connection refused, timeout, garbage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

pub trait DeviceClient: Send + Sync + std::fmt::Debug + 'static {
    fn info(&self, addr: SocketAddr) -> BoxFuture<'_, Result<Info, Unreachable>>;
    fn trigger<'a>(
        &'a self,
        addr: SocketAddr,
        trigger: &'a Trigger,
    ) -> BoxFuture<'a, Result<TriggerReply, Unreachable>>;
}

/// The real client: HTTP/1.1 with short timeouts, no proxies.
#[derive(Debug, Clone)]
pub struct HttpDeviceClient {
    http: reqwest::Client,
}

impl HttpDeviceClient {
    pub fn new(timeout: Duration) -> Result<Self, Unreachable> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            // No idle connections: an ESP32's HTTP server has only a few sockets (7 by default)
            // and a fleet is many hosts asked rarely, so a kept connection per device would cost
            // the devices sockets and the server memory (1,000 devices, 1,000 buffers).
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| Unreachable(format!("could not set up the HTTP client: {e}")))?;
        Ok(Self { http })
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "it did not answer in time".into()
    } else if e.is_connect() {
        "the connection was refused or failed".into()
    } else {
        format!("the request failed ({e})")
    }
}

impl DeviceClient for HttpDeviceClient {
    fn info(&self, addr: SocketAddr) -> BoxFuture<'_, Result<Info, Unreachable>> {
        Box::pin(async move {
            let url = format!("http://{addr}{}", aegis_protocol::INFO_PATH);
            let resp = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| Unreachable(format!("GET {url}: {}", describe(&e))))?;
            if !resp.status().is_success() {
                return Err(Unreachable(format!("GET {url} answered {}", resp.status())));
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| Unreachable(format!("GET {url}: {}", describe(&e))))?;
            Info::from_json(&body)
                .map_err(|e| Unreachable(format!("GET {url} returned an invalid /info: {e}")))
        })
    }

    fn trigger<'a>(
        &'a self,
        addr: SocketAddr,
        trigger: &'a Trigger,
    ) -> BoxFuture<'a, Result<TriggerReply, Unreachable>> {
        Box::pin(async move {
            let url = format!("http://{addr}{}", aegis_protocol::OTA_PATH);
            let body = trigger
                .to_body()
                .map_err(|e| Unreachable(format!("could not encode the trigger: {e}")))?;
            let resp = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| Unreachable(format!("POST {url}: {}", describe(&e))))?;
            let status = resp.status().as_u16();
            if status == 202 {
                return Ok(TriggerReply::Accepted);
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (
                    "unknown".to_string(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                ),
            };
            Ok(TriggerReply::Refused {
                status,
                code,
                message,
            })
        })
    }
}
