//! Reading an upload's body for `POST /api/v1/firmware`: streamed frame by frame with a hard
//! size limit, so an oversized or endless upload is refused as soon as it passes the limit
//! (and before, when its `Content-Length` already says so) instead of filling memory.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::error::ErrorKind;
use crate::{Error, Result};

/// Default largest accepted upload: the largest OTA slot an ESP32 can have.
pub const DEFAULT_MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// Reads the whole body, failing with `TooLarge` (413, code `upload_too_large`) past `limit`
/// bytes and with `BadRequest` (code `upload_interrupted`) when the client breaks off.
/// `headers` (the request's) lets a declared `Content-Length` over the limit fail at once.
pub async fn read_body_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    let capacity = declared.map_or(64 * 1024, |n| n as usize);
    let mut buf = BytesMut::with_capacity(capacity);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::bad_request(
                "upload_interrupted",
                format!("the upload broke off before its end ({e}); send the file again"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        "upload_too_large",
        format!(
            "the upload is larger than the {} MiB limit; an OTA app image is never that large — check that this is the app .bin, not a full flash dump",
            limit as f64 / (1024.0 * 1024.0)
        ),
    )
}
