//! The device listener's app: the firmware download router (`GET/HEAD /fw/{sha256}.bin`) and
//! `POST /api/v1/report`. Nothing here changes server state except a report the rollout engine
//! accepts for a target that is actually in flight from that peer.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;

use aegis_protocol::Report;

use super::Shared;
use super::error::{self, body_rejection};
use crate::firmware::{self, DownloadService};
use crate::{Error, Result};

/// Largest report body accepted.
pub const MAX_REPORT: usize = 4 * 1024;

pub fn device_router(state: Shared, downloads: DownloadService) -> Router {
    let reports = Router::new()
        .route("/api/v1/report", post(report))
        .layer(DefaultBodyLimit::max(MAX_REPORT))
        .with_state(state);
    firmware::router(downloads)
        .merge(reports)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}

/// 204 when the engine takes the report; 400 for a malformed one; 404/409 when it belongs to
/// no deployment in flight from this address.
async fn report(
    State(s): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<StatusCode> {
    let body = body.map_err(body_rejection)?;
    let report = Report::from_json(&body).map_err(|e| {
        Error::bad_request(
            "bad_report",
            format!("{e}; see PROTOCOL.md section 5 for the report's shape"),
        )
    })?;
    s.engine.report(report, peer.ip()).await?;
    Ok(StatusCode::NO_CONTENT)
}
