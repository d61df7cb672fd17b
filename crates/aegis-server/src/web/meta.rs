//! `GET /api/v1/health` and `GET /api/v1/openapi.json`.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;

use super::openapi;

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::DOCUMENT,
    )
}
