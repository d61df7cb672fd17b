//! What the device-runtime tests need, written against PROTOCOL.md rather than the server:
//! a plain HTTP file server (Range, HEAD, ETag; it logs every request's `Range`), a report
//! sink, one simulated device in a temp dir, and a client that fetches `/info`, signs triggers
//! and posts them. Everything binds 127.x addresses, so tests using it run in `netns_test!`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_image::{Chip, ImageBuilder, SimBehavior};
use aegis_protocol::{Info, Report, Sha256Hex, SigningKey, Trigger};
use aegis_sim::announce::{AnnounceOptions, Announcer};
use aegis_sim::faults::FaultPlan;
use aegis_sim::model::BlobStore;
use aegis_sim::node::{FactoryImage, NodeConfig, NodeHandle, NodeStatus, spawn_node};
use aegis_sim::timing::Timing;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Generous bound on anything a test waits for (fast timing makes each step milliseconds).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A multi-thread runtime for one test body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An image for `chip` with this version and behaviour (256 KiB).
pub fn image(chip: Chip, version: &str, behavior: SimBehavior) -> Vec<u8> {
    ImageBuilder::new(chip)
        .version(version)
        .project("demo")
        .size(256 * 1024)
        .behavior(behavior)
        .build()
        .unwrap()
}

#[derive(Default)]
struct Served {
    files: Mutex<HashMap<String, Bytes>>,
    /// `(method, path, Range header)` of every firmware request.
    requests: Mutex<Vec<(String, String, Option<String>)>>,
    reports: Mutex<Vec<Report>>,
    report_arrived: Notify,
    ignore_range: AtomicBool,
}

/// A plain HTTP file server at `http://127.0.0.1:<port>` with `/fw/<name>` and `/report`.
pub struct FileServer {
    pub base: String,
    state: Arc<Served>,
}

impl FileServer {
    pub async fn start() -> Self {
        let state = Arc::new(Served::default());
        let app = Router::new()
            .route("/fw/{name}", get(serve_file).head(serve_file))
            .route("/report", post(take_report))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FileServer {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Serves `bytes` as `/fw/<name>`; returns its URL.
    pub fn put(&self, name: &str, bytes: &[u8]) -> String {
        self.state
            .files
            .lock()
            .unwrap()
            .insert(name.to_owned(), Bytes::copy_from_slice(bytes));
        format!("{}/fw/{name}", self.base)
    }

    pub fn report_url(&self) -> String {
        format!("{}/report", self.base)
    }

    /// Answer Range requests with the whole file (200), as a naive server does.
    pub fn ignore_range(&self, yes: bool) {
        self.state.ignore_range.store(yes, Ordering::SeqCst);
    }

    /// The `Range` header of every GET so far.
    pub fn ranges(&self) -> Vec<Option<String>> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _, _)| m == "GET")
            .map(|(_, _, r)| r.clone())
            .collect()
    }

    pub fn reports(&self) -> Vec<Report> {
        self.state.reports.lock().unwrap().clone()
    }

    /// Waits until a report of `deployment` matches `f`; returns it.
    pub async fn wait_report(&self, what: &str, f: impl Fn(&Report) -> bool) -> Report {
        let wait = async {
            loop {
                let notified = self.state.report_arrived.notified();
                if let Some(r) = self.reports().into_iter().find(|r| f(r)) {
                    return r;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(r) => r,
            Err(_) => panic!(
                "no {what} report within {DEADLINE:?}; got {:#?}",
                self.reports()
            ),
        }
    }

    /// The phases reported for `deployment`, in arrival order.
    pub fn phases(&self, deployment: &str) -> Vec<String> {
        self.reports()
            .iter()
            .filter(|r| r.deployment == deployment)
            .map(|r| {
                serde_json::to_value(r.phase)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
}

async fn serve_file(
    State(state): State<Arc<Served>>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .requests
        .lock()
        .unwrap()
        .push((method.to_string(), name.clone(), range.clone()));
    let Some(file) = state.files.lock().unwrap().get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = file.len() as u64;
    let etag = format!("\"{}\"", Sha256Hex::digest(&file));
    let range = range.filter(|_| !state.ignore_range.load(Ordering::SeqCst));
    let (status, body, content_range) = match range.as_deref().and_then(parse_range) {
        None => (StatusCode::OK, file, None),
        Some((start, _)) if start >= len => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
        Some((start, end)) => {
            let end = end.unwrap_or(len - 1).min(len - 1);
            (
                StatusCode::PARTIAL_CONTENT,
                file.slice(start as usize..=end as usize),
                Some(format!("bytes {start}-{end}/{len}")),
            )
        }
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(cr) = content_range {
        resp = resp.header(header::CONTENT_RANGE, cr);
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    resp.body(body).unwrap()
}

/// `bytes=N-` or `bytes=N-M`.
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let start = a.parse().ok()?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some((start, end))
}

async fn take_report(State(state): State<Arc<Served>>, body: Bytes) -> StatusCode {
    match Report::from_json(&body) {
        Ok(r) => {
            state.reports.lock().unwrap().push(r);
            state.report_arrived.notify_waiters();
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            eprintln!("bad report: {e}: {}", String::from_utf8_lossy(&body));
            StatusCode::BAD_REQUEST
        }
    }
}

/// How to build the device under test.
pub struct DeviceOpts {
    pub key: Option<SigningKey>,
    pub faults: FaultPlan,
    pub timing: Timing,
    pub chip: Chip,
    pub version: String,
    /// Last octet of 127.0.1.x.
    pub host: u8,
}

impl Default for DeviceOpts {
    fn default() -> Self {
        DeviceOpts {
            key: Some(SigningKey::generate()),
            faults: FaultPlan::none(),
            timing: Timing::fast(),
            chip: Chip::Esp32,
            version: "1.0.0".into(),
            host: 1,
        }
    }
}

/// One simulated device under test, and a protocol client for it.
pub struct TestDevice {
    pub handle: NodeHandle,
    pub key: Option<SigningKey>,
    pub base: String,
    pub id: aegis_protocol::DeviceId,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub const PORT: u16 = 8080;

impl TestDevice {
    pub async fn start(opts: DeviceOpts) -> Self {
        let announcer = Announcer::new(AnnounceOptions::default()).unwrap();
        Self::start_with(opts, announcer).await
    }

    pub async fn start_with(opts: DeviceOpts, announcer: Announcer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(BlobStore::open(&dir.path().join("blobs")).unwrap());
        let ip = Ipv4Addr::new(127, 0, 1, opts.host);
        let id = format!("a0b1c2d3e4{:02x}", opts.host);
        let cfg = NodeConfig {
            id: id.clone(),
            hostname: format!("esp-sim-{:03}", opts.host),
            ip,
            port: PORT,
            chip: opts.chip,
            slot_size: 1536 * 1024,
            trusted_key: opts.key.as_ref().map(SigningKey::public_key),
            timing: opts.timing,
            faults: opts.faults,
            dir: dir.path().join("dev"),
            factory_image: FactoryImage::build(opts.version, "demo"),
        };
        let shutdown = CancellationToken::new();
        let handle = spawn_node(cfg, blobs, announcer, shutdown).await.unwrap();
        TestDevice {
            handle,
            key: opts.key,
            base: format!("http://{}", SocketAddrV4::new(ip, PORT)),
            id: aegis_protocol::DeviceId::parse(&id).unwrap(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    pub async fn info(&self) -> Info {
        let resp = self
            .http
            .get(format!("{}/aegis/v1/info", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        Info::from_json(&resp.bytes().await.unwrap()).unwrap()
    }

    /// POSTs a raw body to the trigger endpoint: status and JSON reply.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/aegis/v1/ota", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    pub async fn post(&self, trigger: &Trigger) -> (u16, serde_json::Value) {
        self.post_raw(trigger.to_body().unwrap()).await
    }

    /// A trigger for `image` at `url` with a fresh nonce from `/info`, signed when the device
    /// trusts a key.
    pub async fn trigger(
        &self,
        fw: &FileServer,
        url: &str,
        image: &[u8],
        version: &str,
        deployment: &str,
    ) -> Trigger {
        let info = self.info().await;
        let mut t = Trigger {
            url: url.to_owned(),
            hash: Sha256Hex::digest(image),
            version: version.to_owned(),
            size: image.len() as u64,
            deployment: deployment.to_owned(),
            report: Some(fw.report_url()),
            nonce: Some(info.nonce),
            allow_downgrade: false,
            sig: None,
        };
        if let Some(key) = &self.key {
            t.sign(&self.id, key).unwrap();
        }
        t
    }

    /// Serves `image` and triggers it; asserts 202.
    pub async fn deploy(
        &self,
        fw: &FileServer,
        image: &[u8],
        version: &str,
        deployment: &str,
    ) -> Trigger {
        let url = fw.put(&format!("{deployment}.bin"), image);
        let t = self.trigger(fw, &url, image, version, deployment).await;
        let (status, body) = self.post(&t).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body, serde_json::json!({"accepted": true}));
        t
    }

    /// Waits until the status satisfies `f`.
    pub async fn wait(&self, what: &str, f: impl FnMut(&NodeStatus) -> bool) -> NodeStatus {
        match tokio::time::timeout(DEADLINE, self.handle.wait_for(f)).await {
            Ok(true) => self.handle.status(),
            Ok(false) => panic!("the node stopped while waiting for {what}"),
            Err(_) => panic!(
                "not {what} within {DEADLINE:?}; status {:#?}",
                self.handle.status()
            ),
        }
    }

    /// Waits until the attempt `deployment` has ended (`/info` `last` is final).
    pub async fn wait_done(&self, deployment: &str) -> NodeStatus {
        self.wait(&format!("{deployment} finished"), |s| {
            s.power == aegis_sim::node::Power::Online
                && s.last
                    .as_ref()
                    .is_some_and(|l| l.deployment == deployment && l.result.is_final())
        })
        .await
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}
