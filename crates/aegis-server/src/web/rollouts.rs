//! `POST /api/v1/rollouts`, `GET /api/v1/rollouts[/{id}]` and the controls
//! `POST /api/v1/rollouts/{id}/pause|resume|abort|retry-failed`: thin calls into the
//! [`RolloutEngine`](crate::rollout::RolloutEngine).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::error::ApiJson;
use crate::Result;
use crate::rollout::{CreateRollout, Created, Rollout, RolloutSummary};

/// 201 with the started rollout, or 200 with the plan of a dry run.
pub async fn create(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<CreateRollout>,
) -> Result<Response> {
    Ok(match s.engine.create(req).await? {
        Created::Started(rollout) => (StatusCode::CREATED, Json(rollout)).into_response(),
        Created::DryRun(plan) => (StatusCode::OK, Json(plan)).into_response(),
    })
}

pub async fn list(State(s): State<Shared>) -> Result<Json<Vec<RolloutSummary>>> {
    Ok(Json(s.engine.list().await?))
}

pub async fn get(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Rollout>> {
    Ok(Json(s.engine.get(&id).await?))
}

pub async fn pause(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<RolloutSummary>> {
    Ok(Json(s.engine.pause(&id).await?))
}

pub async fn resume(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<RolloutSummary>> {
    Ok(Json(s.engine.resume(&id).await?))
}

pub async fn abort(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<RolloutSummary>> {
    Ok(Json(s.engine.abort(&id).await?))
}

pub async fn retry_failed(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<RolloutSummary>> {
    Ok(Json(s.engine.retry_failed(&id).await?))
}
