//! The update a device runs after answering 202: download → verify → write → reboot →
//! confirm, with progress reports (PROTOCOL.md sections 3 to 5).
//!
//! - **Download**: `GET url` from the device's own address, read in 4 KiB chunks, paced by a
//!   [`Throttle`] (the `slow` fault, else [`crate::timing::Timing::bandwidth`]), hashed as it
//!   goes and written to the inactive slot, each chunk costing the flash time. A broken
//!   connection is resumed with `Range: bytes=<received>-` (206 with a matching
//!   `Content-Range` continues; a 200 starts again from byte 0), up to [`MAX_RETRIES`]
//!   consecutive attempts without progress, with exponential back-off.
//! - **Wrong chip** is noticed once the first chunk (the image header) is in.
//! - **Verify**: length must equal `size` and SHA-256 equal `hash`; then the model checks the
//!   image as the bootloader would (magic, chip, checksum, appended digest).
//! - **Reboot**: select the new slot, report `rebooting`, mDNS goodbye, offline for the boot
//!   time, and boot what the bootloader picks; [`Node::after_boot`] then confirms or rolls
//!   back.
//! - Any failure aborts the update, keeps the old image running and reports `failed`.
//!
//! Report errors are logged and ignored: the server never depends on reports. The `error` of
//! a `failed` (or `rolled_back`) report and of `/info` `last` is `"<code>: <sentence>"`, with
//! the codes of [`Failure::code`].

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use aegis_image::Chip;
use aegis_protocol::{CHUNK_SIZE, DeviceId, Phase, Report, Sha256Hex, Trigger, check_image_chip};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::faults::FaultKind;
use crate::model::ModelError;
use crate::node::{Node, NodeError, PowerCut};
use crate::timing::Throttle;

/// Consecutive download attempts without progress before the update fails.
pub const MAX_RETRIES: u32 = 5;
/// First back-off after a broken download; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Connect timeout for downloads and reports.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A download read that gets nothing for this long is a broken connection (ESP-IDF's
/// `esp_http_client` uses a similar receive timeout).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one report may take before it is given up.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// A `downloading` report is sent at most once per this many bytes (and per report interval).
const REPORT_BYTES: u64 = 64 * 1024;

/// The attempt in flight, as a real app keeps it in NVS across reboots.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) deployment: String,
    pub(crate) report: Option<String>,
    /// The image being installed.
    pub(crate) hash: Sha256Hex,
    pub(crate) total: u64,
    pub(crate) bytes: u64,
    /// The new slot has been selected in otadata (the reboot decides the rest).
    pub(crate) committed: bool,
}

impl Pending {
    pub(crate) fn new(trigger: &Trigger) -> Self {
        Pending {
            deployment: trigger.deployment.clone(),
            report: trigger.report.clone(),
            hash: trigger.hash.clone(),
            total: trigger.size,
            bytes: 0,
            committed: false,
        }
    }
}

/// Why an update failed, with the code that starts its `error` text.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The download failed for good.
    #[error("downloading {url} failed after {attempts} attempts: {last}")]
    Http {
        /// The image URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The server answered with a status that retrying will not change.
    #[error("the server answered {status} to GET {url}")]
    HttpStatus {
        /// The image URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The length differs from the trigger's `size`.
    #[error("received {received} bytes but the trigger said {size}")]
    SizeMismatch {
        /// Bytes received.
        received: u64,
        /// The trigger's size.
        size: u64,
    },
    /// The SHA-256 differs from the trigger's `hash`.
    #[error("the image's SHA-256 is {actual} but the trigger said {expected}")]
    HashMismatch {
        /// The trigger's hash.
        expected: Sha256Hex,
        /// What was received.
        actual: Sha256Hex,
    },
    /// The image header names another chip (422 `wrong_chip` in the protocol's words).
    #[error("{0}")]
    WrongChip(String),
    /// The model (flash or image checks) refused.
    #[error("{0}")]
    Model(#[from] ModelError),
}

impl Failure {
    /// A stable snake_case code for the failure.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Http { .. } | Failure::HttpStatus { .. } => "http_error",
            Failure::SizeMismatch { .. } => "size_mismatch",
            Failure::HashMismatch { .. } => "hash_mismatch",
            Failure::WrongChip(_) => "wrong_chip",
            Failure::Model(ModelError::WrongChip { .. }) => "wrong_chip",
            Failure::Model(ModelError::BadChecksum) => "bad_checksum",
            Failure::Model(ModelError::BadDigest) => "bad_digest",
            Failure::Model(ModelError::ShaMismatch { .. }) => "hash_mismatch",
            Failure::Model(ModelError::BadMagic { .. } | ModelError::InvalidImage(_)) => {
                "invalid_image"
            }
            Failure::Model(_) => "flash_error",
        }
    }

    /// `"<code>: <sentence>"`, as reports and `/info` carry it.
    pub fn to_error_text(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

/// How a download stopped short of a verified image.
enum Stop {
    Failed(Failure),
    PowerLoss,
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Failed(f)
    }
}

/// What one GET attempt ended with.
enum Attempt {
    /// All `size` bytes are in (or the server has nothing more).
    Done,
    /// The connection broke; resume.
    Retry(String),
    Stop(Stop),
}

/// Runs one accepted trigger to its end. Returns false when the device goes silent for good.
pub(crate) async fn run(node: &Arc<Node>, trigger: Trigger) -> Result<bool, NodeError> {
    let client = match http_client(node.ip) {
        Ok(c) => c,
        Err(e) => {
            let f = Failure::Http {
                url: trigger.url.clone(),
                attempts: 0,
                last: e.to_string(),
            };
            node.finish_attempt(Phase::Failed, Some(f.to_error_text()))
                .await;
            return Ok(true);
        }
    };
    let reporter = Reporter::start(client.clone(), node, &trigger);
    let downloaded = download(node, &client, &trigger, &reporter).await;
    match downloaded {
        Ok(()) => {}
        Err(Stop::Failed(f)) => return fail(node, reporter, f).await,
        Err(Stop::PowerLoss) => {
            tracing::info!(device = %node.id, "power-loss=download fault");
            drop(reporter);
            let outcome = node.power_loss(PowerCut::Plain).await?;
            node.after_boot(outcome).await?;
            return Ok(true);
        }
    }
    node.set_phase(Phase::Verifying);
    reporter.send(Phase::Verifying, trigger.size, None);
    let hash = trigger.hash.to_bytes();
    let n = Arc::clone(node);
    let finished = crate::node::blocking(move || n.lock().device.finish_update(&hash)).await?;
    if let Err(e) = finished {
        return fail(node, reporter, Failure::Model(e)).await;
    }
    // Commit: otadata now selects the new slot.
    if node.faults.fire(FaultKind::PowerLossWrite) {
        tracing::info!(device = %node.id, "power-loss=write fault while selecting the new slot");
        drop(reporter);
        let outcome = node.power_loss(PowerCut::SettingBootSlot).await?;
        node.after_boot(outcome).await?;
        return Ok(true);
    }
    let selected = node.lock().device.set_boot_slot();
    if let Err(e) = selected {
        return fail(node, reporter, Failure::Model(e)).await;
    }
    if let Some(p) = node.lock().pending.as_mut() {
        p.committed = true;
    }
    node.set_phase(Phase::Rebooting);
    reporter.send(Phase::Rebooting, trigger.size, None);
    reporter.flush().await;
    drop(reporter);
    node.go_offline().await;
    if node.faults.fire(FaultKind::NeverReturn) {
        tracing::info!(device = %node.id, "never-return fault: the device stays silent");
        node.set_silent();
        return Ok(false);
    }
    let outcome = if node.faults.fire(FaultKind::PowerLossReboot) {
        tracing::info!(device = %node.id, "power-loss=reboot fault while the new image boots");
        node.power_loss(PowerCut::Booting).await?
    } else {
        node.reboot().await?
    };
    node.after_boot(outcome).await?;
    Ok(true)
}

async fn fail(node: &Arc<Node>, reporter: Reporter, f: Failure) -> Result<bool, NodeError> {
    tracing::info!(device = %node.id, "update failed: {f}");
    node.lock().device.abort_update();
    reporter.flush().await;
    drop(reporter);
    node.finish_attempt(Phase::Failed, Some(f.to_error_text()))
        .await;
    Ok(true)
}

/// The state of a download across attempts.
struct Transfer<'a> {
    node: &'a Arc<Node>,
    trigger: &'a Trigger,
    reporter: &'a Reporter,
    throttle: Throttle,
    hasher: Sha256,
    received: u64,
    /// The first chunk, kept until the chip is checked.
    head: Option<Vec<u8>>,
    last_report: (Instant, u64),
}

async fn download(
    node: &Arc<Node>,
    client: &reqwest::Client,
    trigger: &Trigger,
    reporter: &Reporter,
) -> Result<(), Stop> {
    begin(node, trigger.size)?;
    let mut t = Transfer {
        node,
        trigger,
        reporter,
        throttle: Throttle::new(node.faults.slow_link().or(node.timing.bandwidth)),
        hasher: Sha256::new(),
        received: 0,
        head: Some(Vec::with_capacity(CHUNK_SIZE)),
        last_report: (Instant::now(), 0),
    };
    reporter.send(Phase::Downloading, 0, None);
    let mut failures = 0u32;
    let mut attempts = 0u32;
    loop {
        if t.received >= trigger.size && trigger.size > 0 {
            break;
        }
        attempts += 1;
        let before = t.received;
        match t.attempt(client).await {
            Attempt::Done => break,
            Attempt::Stop(stop) => return Err(stop),
            Attempt::Retry(why) => {
                if t.received > before {
                    failures = 0;
                }
                failures += 1;
                tracing::debug!(device = %node.id, received = t.received, "download broke: {why}");
                if failures > MAX_RETRIES {
                    return Err(Failure::Http {
                        url: trigger.url.clone(),
                        attempts,
                        last: why,
                    }
                    .into());
                }
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (failures - 1).min(8))
                    .min(MAX_BACKOFF);
                tokio::time::sleep(backoff).await;
            }
        }
    }
    if t.received != trigger.size {
        return Err(Failure::SizeMismatch {
            received: t.received,
            size: trigger.size,
        }
        .into());
    }
    let actual = Sha256Hex::from_bytes(&t.hasher.clone().finalize().into());
    if actual != trigger.hash {
        return Err(Failure::HashMismatch {
            expected: trigger.hash.clone(),
            actual,
        }
        .into());
    }
    Ok(())
}

fn begin(node: &Node, size: u64) -> Result<(), Failure> {
    node.lock()
        .device
        .begin_update(size)
        .map_err(Failure::Model)
}

impl Transfer<'_> {
    /// Starts again from byte 0 (the server ignored the Range request).
    fn restart(&mut self) -> Result<(), Failure> {
        self.node.lock().device.abort_update();
        begin(self.node, self.trigger.size)?;
        self.hasher = Sha256::new();
        self.received = 0;
        self.head = Some(Vec::with_capacity(CHUNK_SIZE));
        Ok(())
    }

    /// One GET, from `received` on.
    async fn attempt(&mut self, client: &reqwest::Client) -> Attempt {
        let url = &self.trigger.url;
        let mut req = client.get(url);
        if self.received > 0 {
            req = req.header(RANGE, format!("bytes={}-", self.received));
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(error_chain(&e)),
        };
        let status = resp.status();
        match status {
            StatusCode::PARTIAL_CONTENT if self.received > 0 => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start);
                if start != Some(self.received) {
                    // Not the range asked for: trust nothing and start over.
                    if let Err(f) = self.restart() {
                        return Attempt::Stop(f.into());
                    }
                    return Attempt::Retry(format!(
                        "the server sent a range starting at {start:?}, not {}",
                        self.received
                    ));
                }
            }
            StatusCode::OK => {
                if self.received > 0 {
                    tracing::debug!(device = %self.node.id, "server ignored Range; restarting from 0");
                    if let Err(f) = self.restart() {
                        return Attempt::Stop(f.into());
                    }
                }
            }
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                return Attempt::Retry(format!("the server answered {s}"));
            }
            s => {
                return Attempt::Stop(
                    Failure::HttpStatus {
                        url: url.clone(),
                        status: s.as_u16(),
                    }
                    .into(),
                );
            }
        }
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE);
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Attempt::Retry(error_chain(&e)),
            };
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let take = (CHUNK_SIZE - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                let remaining = self.trigger.size.saturating_sub(self.received);
                if buf.len() == CHUNK_SIZE || buf.len() as u64 >= remaining {
                    if let Some(a) = self.process(&mut buf).await {
                        return a;
                    }
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            // The server sent fewer bytes than `size`: take what there is, then verify fails.
            if let Some(a) = self.process(&mut buf).await {
                return a;
            }
        }
        if self.received < self.trigger.size {
            return Attempt::Retry(format!(
                "the connection closed after {} of {} bytes",
                self.received, self.trigger.size
            ));
        }
        Attempt::Done
    }

    /// Takes one chunk starting at `received`: faults, throttle, hash, flash. `Some` ends the
    /// attempt.
    async fn process(&mut self, chunk: &mut Vec<u8>) -> Option<Attempt> {
        let total = self.trigger.size;
        let start = self.received;
        let end = start + chunk.len() as u64;
        let faults = &self.node.faults;
        let within = |at: Option<u64>| at.filter(|&at| at >= start && at < end);
        // Faults that cut the chunk short: only the bytes before the point get through.
        let mut after: Option<Attempt> = None;
        if let Some(at) = within(faults.power_loss_during_download(total))
            && faults.fire(FaultKind::PowerLossDownload)
        {
            chunk.truncate((at - start) as usize);
            after = Some(Attempt::Stop(Stop::PowerLoss));
        }
        if after.is_none()
            && let Some(at) = within(faults.drop_at(total))
            && faults.fire(FaultKind::Drop)
        {
            chunk.truncate((at - start) as usize);
            after = Some(Attempt::Retry(format!(
                "connection dropped at byte {at} (drop fault)"
            )));
        }
        let stall = after.is_none()
            && within(faults.stall_at(total)).is_some()
            && faults.fire(FaultKind::Stall);
        if end > total && after.is_none() {
            return Some(Attempt::Stop(
                Failure::SizeMismatch {
                    received: end,
                    size: total,
                }
                .into(),
            ));
        }
        faults.corrupt_chunk(start, chunk, total);
        if !chunk.is_empty() {
            self.throttle.consume(chunk.len()).await;
            self.hasher.update(&chunk[..]);
            let written = {
                let mut inner = self.node.lock();
                let written = inner.device.write(chunk);
                if let (Ok(()), Some(p)) = (&written, inner.pending.as_mut()) {
                    p.bytes = start + chunk.len() as u64;
                }
                written
            };
            if let Err(e) = written {
                return Some(Attempt::Stop(Failure::Model(e).into()));
            }
            tokio::time::sleep(self.node.timing.flash_time(chunk.len() as u64)).await;
            self.received += chunk.len() as u64;
            if let Some(head) = self.head.as_mut() {
                head.extend_from_slice(chunk);
            }
        }
        if let Some(f) = self.check_chip() {
            return Some(Attempt::Stop(f.into()));
        }
        self.maybe_report();
        if stall {
            tracing::info!(device = %self.node.id, at = self.received, "stall fault: not reading");
            tokio::time::sleep(self.node.timing.stall).await;
        }
        after
    }

    /// Once the header is in: the image must be for this chip.
    fn check_chip(&mut self) -> Option<Failure> {
        let head = self.head.as_ref()?;
        if (head.len() as u64) < (CHUNK_SIZE as u64).min(self.trigger.size) {
            return None;
        }
        let head = self.head.take()?;
        let image_chip = aegis_image::inspect(&head)
            .chip_id
            .and_then(Chip::from_id)?;
        if image_chip == self.node.chip {
            return None;
        }
        let found = aegis_protocol::Chip::parse(image_chip.name()).ok()?;
        check_image_chip(&self.node.proto_chip, &found)
            .err()
            .map(|r| Failure::WrongChip(r.message()))
    }

    fn maybe_report(&mut self) {
        let (at, bytes) = self.last_report;
        let now = Instant::now();
        let due = now.duration_since(at) >= self.node.timing.report_interval
            && self.received.saturating_sub(bytes) >= REPORT_BYTES.min(self.trigger.size);
        if due {
            self.last_report = (now, self.received);
            self.reporter.send(Phase::Downloading, self.received, None);
        }
    }
}

/// The first byte of a `Content-Range: bytes A-B/N` value.
fn content_range_start(v: &str) -> Option<u64> {
    let range = v.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

/// An error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An HTTP client that connects from the device's own address, never through a proxy.
pub(crate) fn http_client(ip: Ipv4Addr) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
}

enum Msg {
    Report(Report),
    Flush(oneshot::Sender<()>),
}

/// Posts the reports of one attempt in order, from a task of its own, so a slow or absent
/// server never slows the update down.
struct Reporter {
    tx: Option<mpsc::Sender<Msg>>,
    id: DeviceId,
    deployment: String,
    total: u64,
}

impl Reporter {
    fn start(client: reqwest::Client, node: &Node, trigger: &Trigger) -> Self {
        let tx = trigger.report.clone().map(|url| {
            let (tx, mut rx) = mpsc::channel::<Msg>(32);
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    match msg {
                        Msg::Report(r) => post_report(&client, &url, &r).await,
                        Msg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            tx
        });
        Reporter {
            tx,
            id: node.id.clone(),
            deployment: trigger.deployment.clone(),
            total: trigger.size,
        }
    }

    /// Queues a report; dropped when the queue is full (only possible for progress).
    fn send(&self, phase: Phase, bytes: u64, error: Option<String>) {
        let Some(tx) = &self.tx else { return };
        let report = Report {
            id: self.id.clone(),
            deployment: self.deployment.clone(),
            phase,
            bytes: bytes.min(self.total),
            total: self.total,
            ver: None,
            sha256: None,
            error,
        };
        let _ = tx.try_send(Msg::Report(report));
    }

    /// Waits (bounded) until every queued report has been posted or given up.
    async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(REPORT_TIMEOUT * 4, wait).await;
        }
    }
}

async fn post_report(client: &reqwest::Client, url: &str, report: &Report) {
    let body = match report.to_json() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("report not sent: {e}");
            return;
        }
    };
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(REPORT_TIMEOUT)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::debug!("report to {url} answered {}", r.status()),
        Err(e) => tracing::debug!("report to {url} failed: {}", error_chain(&e)),
    }
}

/// Sends the final report of an attempt (`booted`, `failed`, `rolled_back`) with the running
/// image's `ver` and `sha256`.
pub(crate) async fn send_final_report(
    node: &Node,
    pending: &Pending,
    phase: Phase,
    error: Option<String>,
) {
    let Some(url) = &pending.report else { return };
    let (ver, sha) = {
        let inner = node.lock();
        let r = inner.device.running();
        (r.version.clone(), Sha256Hex::from_bytes(&r.sha256))
    };
    let report = Report {
        id: node.id.clone(),
        deployment: pending.deployment.clone(),
        phase,
        bytes: pending.bytes.min(pending.total),
        total: pending.total,
        ver: Some(ver),
        sha256: Some(sha),
        error,
    };
    match http_client(node.ip) {
        Ok(client) => post_report(&client, url, &report).await,
        Err(e) => tracing::debug!("report not sent: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_reads_the_first_byte() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes  0-0/1"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start(""), None);
    }

    #[test]
    fn failure_text_starts_with_its_code() {
        let f = Failure::SizeMismatch {
            received: 1,
            size: 2,
        };
        assert_eq!(
            f.to_error_text(),
            "size_mismatch: received 1 bytes but the trigger said 2"
        );
        assert_eq!(
            Failure::Model(ModelError::BadChecksum).code(),
            "bad_checksum"
        );
    }
}
