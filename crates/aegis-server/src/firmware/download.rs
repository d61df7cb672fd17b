//! The device-facing download endpoint, `GET/HEAD /fw/<sha256>.bin`, exactly as PROTOCOL.md
//! section 3 says: `Content-Length` (never chunked), `Accept-Ranges: bytes`,
//! `ETag: "<sha256>"`, one byte range answered with 206, 416 when unsatisfiable (see
//! [`range`](super::range) for what is ignored), `If-Range` honoured. The body is the shared
//! in-memory image sent as zero-copy slices, so any number of slow readers cost one copy; bytes
//! handed to each connection are counted for the rollout's [`DownloadTracker`].
//!
//! Mount [`router`] on the device listener, served with `ConnectInfo<SocketAddr>` (peer IPs
//! attribute progress; without it downloads work but are not attributed) and through
//! [`device_listener`](super::device_listener) so stalled connections are cut.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::cache::{Image, ImageCache};
use super::files::is_sha256;
use super::progress::{DownloadTracker, RequestProgress};
use super::range::{self, RangeRequest};
use crate::Error;

/// Default size of the slices the body is sent in.
pub const DEFAULT_CHUNK: usize = 64 * 1024;

/// What the endpoint needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct DownloadService {
    pub cache: ImageCache,
    pub tracker: DownloadTracker,
    /// Slice size of the response body.
    pub chunk: usize,
}

impl DownloadService {
    pub fn new(cache: ImageCache, tracker: DownloadTracker) -> Self {
        DownloadService {
            cache,
            tracker,
            chunk: DEFAULT_CHUNK,
        }
    }
}

/// `GET/HEAD /fw/{sha256}.bin`.
pub fn router(service: DownloadService) -> Router {
    Router::new()
        .route("/fw/{file}", get(download))
        .with_state(service)
}

async fn download(
    State(service): State<DownloadService>,
    Path(file): Path<String>,
    request: Request,
) -> Response {
    let Some(sha256) = file.strip_suffix(".bin").filter(|s| is_sha256(s)) else {
        return error_response(&Error::bad_request(
            "bad_firmware_name",
            format!(
                "\"{file}\" is not a firmware file name; use /fw/<sha256>.bin with 64 lower-case hex digits"
            ),
        ));
    };
    let image = match service.cache.get(sha256).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            return error_response(&Error::not_found(
                "firmware_not_found",
                format!(
                    "no firmware with SHA-256 {sha256} is in the library; upload it or check the URL"
                ),
            ));
        }
        Err(e) => return error_response(&e),
    };
    let size = image.bytes.len() as u64;
    let etag = format!("\"{sha256}\"");
    let headers = request.headers();
    let range_header = headers
        .get(header::RANGE)
        .filter(|_| if_range_matches(headers, &etag))
        .and_then(|v| v.to_str().ok());
    let (status, start, end) = match range::resolve(range_header, size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        RangeRequest::Unsatisfiable => return unsatisfiable(size, &etag),
    };

    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag);
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    let body = if request.method() == Method::HEAD {
        Body::empty()
    } else {
        let progress = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .and_then(|ConnectInfo(peer)| {
                service.tracker.start(sha256, peer.ip(), start, end, size)
            });
        Body::new(ImageBody {
            image,
            pos: start as usize,
            end: end as usize,
            chunk: service.chunk.max(1),
            progress,
        })
    };
    response
        .body(body)
        .unwrap_or_else(|e| error_response(&Error::internal(format!("building a response: {e}"))))
}

/// `If-Range` absent, or naming our ETag: the Range header applies.
fn if_range_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes())
}

fn unsatisfiable(size: u64, etag: &str) -> Response {
    let mut response = error_response(&Error::new(
        crate::error::ErrorKind::BadRequest,
        "range_not_satisfiable",
        format!(
            "the requested range starts at or past the end of the {size}-byte image; request bytes=0- or a start below {size}"
        ),
    ));
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        h.insert(header::CONTENT_RANGE, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// `{"error":{"code","message"}}` with the error's status.
fn error_response(e: &Error) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({"error": {"code": e.code, "message": e.message}});
    (status, axum::Json(body)).into_response()
}

/// A response body of slices of the shared image, with an exact length.
struct ImageBody {
    image: Arc<Image>,
    pos: usize,
    end: usize,
    chunk: usize,
    progress: Option<RequestProgress>,
}

impl http_body::Body for ImageBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        let next = this.end.min(this.pos.saturating_add(this.chunk));
        let slice = this.image.bytes.slice(this.pos..next);
        if let Some(p) = this.progress.as_mut() {
            p.add((next - this.pos) as u64);
        }
        this.pos = next;
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.pos) as u64)
    }
}
