//! Asking a device whether it is there: the [`Prober`] trait (one light `GET /aegis/v1/info`)
//! and its HTTP implementation. The presence checker depends only on the trait, so tests use a
//! scripted prober and assert exact transitions without a network or real time.

use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::time::Duration;

use aegis_protocol::{INFO_PATH, Info};

/// Largest `/info` body read, in bytes (a real one is a few hundred).
const MAX_INFO_BODY: usize = 16 * 1024;

/// Why a probe failed, as one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(pub String);

pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<Info, ProbeError>> + Send + 'a>>;

/// Fetches a device's `/info`.
pub trait Prober: Send + Sync + fmt::Debug + 'static {
    fn info(&self, ip: Ipv4Addr, port: u16) -> ProbeFuture<'_>;
}

/// The real prober: `GET http://ip:port/aegis/v1/info` with a short timeout.
#[derive(Debug, Clone)]
pub struct HttpProber {
    client: reqwest::Client,
}

impl HttpProber {
    /// A prober whose requests give up after `timeout` (connect + reply).
    pub fn new(timeout: Duration) -> crate::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // No idle connections: devices have few sockets, and checks are rare.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .map_err(|e| {
                crate::Error::internal(format!(
                    "the HTTP client for presence checks could not be built: {e}; this is a bug, please report it"
                ))
            })?;
        Ok(Self { client })
    }

    async fn fetch(&self, ip: Ipv4Addr, port: u16) -> Result<Info, ProbeError> {
        let url = format!("http://{ip}:{port}{INFO_PATH}");
        let fail = |what: String| ProbeError(format!("{url}: {what}"));
        let mut resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(format!("no answer ({e})")))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| fail(format!("reply broken off ({e})")))?
        {
            if body.len() + chunk.len() > MAX_INFO_BODY {
                return Err(fail(format!("reply larger than {MAX_INFO_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Info::from_json(&body)
            .map_err(|e| fail(format!("reply is not a valid info document ({e})")))
    }
}

impl Prober for HttpProber {
    fn info(&self, ip: Ipv4Addr, port: u16) -> ProbeFuture<'_> {
        Box::pin(self.fetch(ip, port))
    }
}
