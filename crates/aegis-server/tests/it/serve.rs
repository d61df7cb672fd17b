//! The server as a whole through `serve()`: a test harness the web tests share ([`start`]),
//! and graceful shutdown with an SSE client and a stalled download attached.

use std::net::SocketAddr;
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder};
use aegis_server::server::{ServerConfig, serve};
use aegis_server::store::sqlite::SqliteStore;
use aegis_server::store::{AuditQuery, Store};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server running on fresh loopback ports with a temporary data directory.
pub struct Running {
    pub op: SocketAddr,
    pub dev: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<aegis_server::Result<()>>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// Starts a server (mDNS discovery off) after `tweak` adjusts its configuration.
pub async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.discovery = false;
    tweak(&mut config);
    let operator = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let device = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (op, dev) = (operator.local_addr().unwrap(), device.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve(config, operator, device, shutdown.clone()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Running {
        op,
        dev,
        shutdown,
        handle,
        dir,
        http,
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.op)
    }

    pub fn dev_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.dev)
    }

    /// Uploads raw bytes; returns status and JSON body.
    pub async fn upload(&self, bytes: Vec<u8>, query: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(self.url(&format!("/api/v1/firmware{query}")))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.http.get(self.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Cancels and waits (generously) for `serve` to return.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("serve() returns after shutdown")
            .unwrap();
        result.unwrap();
        self.dir
    }
}

pub fn image(version: &str, size: u64) -> Vec<u8> {
    ImageBuilder::new(Chip::Esp32s3)
        .version(version)
        .project("thermostat")
        .size(size)
        .build()
        .unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Reads an SSE body until `needle` appears; returns everything read.
pub async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains(needle) {
            let chunk = stream.next().await.expect("stream open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in the stream; got {seen:?}"));
}

aegis_testkit::netns_test! {
    fn shutdown_ends_sse_cuts_stalled_downloads_and_flushes_the_audit_log() {
        runtime().block_on(async {
            let server = start(|c| c.shutdown_grace = Duration::from_millis(300)).await;
            // An image larger than the socket buffers, so a reader that stops reading stalls.
            let (status, entry) = server.upload(image("2.0.0", 12 * 1024 * 1024), "").await;
            assert_eq!(status, 201, "{entry}");
            let sha = entry["sha256"].as_str().unwrap().to_string();

            let sse = server.http.get(server.url("/api/v1/events")).send().await.unwrap();
            let mut events = sse.bytes_stream();
            let mut seen = String::new();
            read_until(&mut events, &mut seen, ": connected").await;

            let mut stalled = tokio::net::TcpStream::connect(server.dev).await.unwrap();
            stalled
                .write_all(format!("GET /fw/{sha}.bin HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            // Read the start of the response, so the download is under way, then stop reading.
            let mut head = [0u8; 1024];
            tokio::time::timeout(Duration::from_secs(10), stalled.read_exact(&mut head))
                .await
                .unwrap()
                .unwrap();
            assert!(head.starts_with(b"HTTP/1.1 200"));
            let started = std::time::Instant::now();
            server.shutdown.cancel();
            let result = tokio::time::timeout(Duration::from_secs(15), server.handle)
                .await
                .expect("serve() returns within the timeout despite a stalled download")
                .unwrap();
            result.unwrap();
            assert!(started.elapsed() < Duration::from_secs(10));
            // The SSE stream has ended.
            let rest = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(chunk) = events.next().await {
                    if chunk.is_err() {
                        break;
                    }
                }
            })
            .await;
            assert!(rest.is_ok(), "the SSE stream did not end");
            drop(stalled);

            // The audit log was flushed: both records are in the database.
            let store = SqliteStore::open(server.dir.path().join("aegis.db")).unwrap();
            let kinds: Vec<String> = store
                .audit(&AuditQuery::default())
                .unwrap()
                .into_iter()
                .map(|r| r.kind)
                .collect();
            assert!(kinds.contains(&"server_started".to_string()), "{kinds:?}");
        });
    }
}

aegis_testkit::netns_test! {
    fn a_restart_keeps_the_signing_key_and_the_library() {
        runtime().block_on(async {
            let server = start(|_| {}).await;
            let (status, _) = server.upload(image("1.0.0", 64 * 1024), "").await;
            assert_eq!(status, 201);
            let dir = server.stop().await;
            let key_path = dir.path().join("keys/signing.pem");
            let first = std::fs::read_to_string(&key_path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);

            // Same data dir, new listeners.
            let operator = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let device = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let op = operator.local_addr().unwrap();
            // This time with mDNS discovery and the presence checker running (loopback only).
            let config = ServerConfig::new(dir.path());
            let shutdown = CancellationToken::new();
            let handle = tokio::spawn(serve(config, operator, device, shutdown.clone()));
            let list: serde_json::Value = reqwest::get(format!("http://{op}/api/v1/firmware"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(list.as_array().unwrap().len(), 1);
            shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(20), handle).await.unwrap().unwrap().unwrap();
            assert_eq!(std::fs::read_to_string(&key_path).unwrap(), first);
        });
    }
}
