//! `POST /api/v1/firmware` (raw `.bin` body with `?filename=&notes=`, or a multipart form) and
//! `GET /api/v1/firmware`, `GET/DELETE /api/v1/firmware/{sha256}`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiQuery;
use super::{Shared, multipart};
use crate::firmware::{FirmwareEntry, read_body_limited};
use crate::{Error, Result};

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    filename: Option<String>,
    notes: Option<String>,
}

/// 201 with the new entry, 200 with the existing one for a duplicate, 422 with the
/// validator's reason, 413 past the upload limit.
pub async fn upload(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let bytes = read_body_limited(&headers, body, s.upload_limit).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (bytes, filename, notes) = match multipart::boundary(content_type) {
        Some(boundary) => {
            let form = multipart::parse(&bytes, &boundary)?;
            (
                form.file,
                form.filename.or(q.filename),
                form.notes.or(q.notes),
            )
        }
        None => (bytes, q.filename, q.notes),
    };
    let (entry, created) = s.library.add(bytes, filename, notes).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)).into_response())
}

pub async fn list(State(s): State<Shared>) -> Result<Json<Vec<FirmwareEntry>>> {
    Ok(Json(s.library.list().await?))
}

pub async fn get(
    State(s): State<Shared>,
    Path(sha256): Path<String>,
) -> Result<Json<FirmwareEntry>> {
    s.library
        .get(&sha256)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&sha256))
}

/// 204 when deleted; 404 unknown; 409 while an unfinished rollout uses it.
pub async fn delete(State(s): State<Shared>, Path(sha256): Path<String>) -> Result<StatusCode> {
    s.library.delete(&sha256).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn not_found(sha256: &str) -> Error {
    Error::not_found(
        "firmware_not_found",
        format!(
            "no firmware with SHA-256 \"{sha256}\" is in the library; list it with GET /api/v1/firmware"
        ),
    )
}
