//! `GET /api/v1/devices`, `GET /api/v1/devices/{id}`, `GET /api/v1/devices/rejected`: the
//! device registry's current view.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::Shared;
use super::error::ApiQuery;
use crate::devices::{Device, RejectedSighting};
use crate::{Error, Result};

/// Default and largest number of rejected sightings returned.
const REJECTED_DEFAULT: usize = 100;
const REJECTED_MAX: usize = 1000;

pub async fn list(State(s): State<Shared>) -> Result<Json<Vec<Device>>> {
    Ok(Json(s.registry.devices()))
}

pub async fn get(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Device>> {
    s.registry.device(&id).map(Json).ok_or_else(|| {
        Error::not_found(
            "device_not_found",
            format!(
                "no device with id \"{id}\" is known; list the devices with GET /api/v1/devices"
            ),
        )
    })
}

#[derive(Debug, Deserialize)]
pub struct RejectedQuery {
    limit: Option<usize>,
}

/// The most recent announcements that could not become device records, newest first.
pub async fn rejected(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<RejectedQuery>,
) -> Result<Json<Vec<RejectedSighting>>> {
    let limit = q.limit.unwrap_or(REJECTED_DEFAULT).min(REJECTED_MAX);
    Ok(Json(s.registry.rejected(limit).await?))
}
