//! The device's HTTP control endpoint (PROTOCOL.md section 2), bound to its own IP and port.
//!
//! - `GET /aegis/v1/info` describes the running image and hands out the current nonce;
//! - `POST /aegis/v1/ota` takes a trigger: the decision is aegis-protocol's
//!   [`check_body`] (this module only supplies the device's view and turns the outcome into
//!   the reply), the nonce is replaced whatever the outcome, and an accepted trigger is handed
//!   to the node's app task after the 202 is decided;
//! - anything else is 404 (405 for a wrong method) with the protocol's error body.
//!
//! The body limit of 4 KiB is enforced while reading: a larger body is never buffered and is
//! answered 400 `body_too_large`, as the table says (not the 413 a generic HTTP stack sends).
//!
//! Faults: `busy` answers every trigger 409 `busy`; `unreachable` keeps the port open and
//! accepts connections but never answers any request on them (the client has to time out),
//! which is what a server sees from a device that is announced but wedged. The endpoint is
//! open only while the device is online: it is closed across reboots and power cuts.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use aegis_protocol::{
    Accepted, DeviceView, ErrorBody, INFO_PATH, Info, MAX_TRIGGER_BODY, OTA_PATH, Rejection,
    Sha256Hex, TriggerError, check_body,
};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::faults::FaultKind;
use crate::node::{Node, NodeError, proto_slot};
use crate::updater::Pending;

/// How long a closing endpoint waits for requests in flight before dropping them.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A listening control endpoint; [`Endpoint::stop`] closes it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    token: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct Ctx {
    node: Arc<Node>,
    /// Cancelled when the endpoint closes (requests left hanging end then).
    closed: CancellationToken,
}

impl Endpoint {
    /// Binds the device's address and serves the control routes until stopped.
    pub(crate) async fn start(node: Arc<Node>) -> Result<Endpoint, NodeError> {
        let addr = SocketAddrV4::new(node.ip, node.port);
        let listener = bind(addr).map_err(|source| NodeError::Bind { addr, source })?;
        let token = node.shutdown.child_token();
        let router = router(Ctx {
            node,
            closed: token.clone(),
        });
        let stop = token.clone();
        let task = tokio::spawn(async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!("control endpoint on {addr} failed: {e}");
            }
        });
        Ok(Endpoint { token, task })
    }

    /// Stops listening; requests in flight get a short grace period, then are dropped.
    pub(crate) async fn stop(self) {
        self.token.cancel();
        let mut task = self.task;
        if tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

fn bind(addr: SocketAddrV4) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // The endpoint closes and re-opens across every reboot.
    socket.set_reuseaddr(true)?;
    socket.bind(addr.into())?;
    socket.listen(64)
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route(INFO_PATH, get(info))
        .route(OTA_PATH, post(ota))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ctx)
}

/// The `unreachable` fault: the request is never answered (until the endpoint closes).
async fn hang_if_unreachable(ctx: &Ctx) -> Result<(), Response> {
    if ctx.node.faults.fire(FaultKind::Unreachable) {
        ctx.closed.cancelled().await;
        return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    Ok(())
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, body: &ErrorBody) -> Response {
    json(status, body.to_json())
}

fn rejection(r: &Rejection) -> Response {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, &r.error_body())
}

async fn info(State(ctx): State<Ctx>) -> Response {
    if let Err(r) = hang_if_unreachable(&ctx).await {
        return r;
    }
    let node = &ctx.node;
    let info = {
        let inner = node.lock();
        let device = &inner.device;
        let running = device.running();
        Info {
            id: node.id.clone(),
            ver: running.version.clone(),
            proj: running.project.clone(),
            chip: node.proto_chip.clone(),
            host: node.hostname.clone(),
            ip: node.ip,
            sha256: Sha256Hex::from_bytes(&running.sha256),
            slot: proto_slot(running.slot),
            state: inner.state(),
            secure_version: running.secure_version,
            slot_size: device.inactive_slot_size(),
            nonce: inner.nonce.clone(),
            last: inner.last.clone(),
        }
    };
    match info.to_json() {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorBody::new(
                "internal",
                format!("The device could not describe itself: {e}."),
            ),
        ),
    }
}

/// Reads at most [`MAX_TRIGGER_BODY`] bytes; `Err(len)` when the body is larger.
async fn read_limited(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, usize> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared.filter(|&len| len > MAX_TRIGGER_BODY) {
        return Err(len);
    }
    let mut buf = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        // A body that breaks off is as malformed as one that never parses.
        let Ok(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_TRIGGER_BODY {
            return Err(declared.unwrap_or(buf.len()));
        }
    }
    Ok(buf)
}

async fn ota(State(ctx): State<Ctx>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = hang_if_unreachable(&ctx).await {
        return r;
    }
    let node = &ctx.node;
    let body = read_limited(&headers, body).await;
    let decision = {
        let mut inner = node.lock();
        let result = match &body {
            Err(len) => Err(Rejection::Malformed(TriggerError::BodyTooLarge {
                len: *len,
            })),
            Ok(_) if node.faults.fire(FaultKind::Busy) => Err(Rejection::Busy),
            Ok(bytes) => {
                let device = &inner.device;
                let running = device.running();
                let view = DeviceView {
                    id: &node.id,
                    trusted_key: node.trusted_key.as_ref(),
                    current_nonce: Some(&inner.nonce),
                    running_version: &running.version,
                    state: inner.state(),
                    slot_size: device.inactive_slot_size(),
                };
                check_body(bytes, &view)
            }
        };
        // Single use: every trigger, accepted or not, retires the nonce.
        inner.nonce = aegis_protocol::Nonce::random();
        if let Ok(trigger) = &result {
            inner.updating = true;
            inner.pending = Some(Pending::new(trigger));
            inner.last = Some(aegis_protocol::LastAttempt {
                deployment: trigger.deployment.clone(),
                result: aegis_protocol::Phase::Downloading,
                error: None,
            });
        }
        result
    };
    match decision {
        Ok(trigger) => {
            let deployment = trigger.deployment.clone();
            if !node.start_update(trigger) {
                let mut inner = node.lock();
                inner.updating = false;
                inner.pending = None;
                drop(inner);
                return rejection(&Rejection::Busy);
            }
            tracing::info!(device = %node.id, %deployment, "trigger accepted");
            node.publish();
            node.announce();
            json(StatusCode::ACCEPTED, Accepted::BODY.to_owned())
        }
        Err(r) => {
            tracing::debug!(device = %node.id, code = r.code(), "trigger rejected");
            rejection(&r)
        }
    }
}

async fn not_found(State(ctx): State<Ctx>, uri: Uri) -> Response {
    if let Err(r) = hang_if_unreachable(&ctx).await {
        return r;
    }
    error(
        StatusCode::NOT_FOUND,
        &ErrorBody::new(
            "not_found",
            format!(
                "There is nothing at {}; this device answers GET {INFO_PATH} and POST {OTA_PATH}.",
                uri.path()
            ),
        ),
    )
}

async fn method_not_allowed(State(ctx): State<Ctx>, uri: Uri) -> Response {
    if let Err(r) = hang_if_unreachable(&ctx).await {
        return r;
    }
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &ErrorBody::new(
            "method_not_allowed",
            format!(
                "{} does not take this method; use GET {INFO_PATH} or POST {OTA_PATH}.",
                uri.path()
            ),
        ),
    )
}
