//! `GET /api/v1/devices`, `GET /api/v1/devices/{id}`, `GET /api/v1/devices/rejected`: the
//! registry as persisted in the store.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::error::ApiQuery;
use super::{Shared, blocking};
use crate::devices::{Device, RejectedSighting};
use crate::{Error, Result};

/// Default and largest number of rejected sightings returned.
const REJECTED_DEFAULT: usize = 100;
const REJECTED_MAX: usize = 1000;

pub async fn list(State(s): State<Shared>) -> Result<Json<Vec<Device>>> {
    let store = s.store.clone();
    Ok(Json(blocking(move || store.devices()).await?))
}

pub async fn get(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Device>> {
    let (store, key) = (s.store.clone(), id.clone());
    blocking(move || store.device(&key))
        .await?
        .map(Json)
        .ok_or_else(|| {
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
    let store = s.store.clone();
    Ok(Json(blocking(move || store.rejected(limit)).await?))
}
