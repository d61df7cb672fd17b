//! The operator-facing JSON API, server-sent events and dashboard, and the device-facing
//! listener (firmware downloads, reports).
//!
//! - [`api`]: the `/api/v1` route table (the one place routes are declared; the OpenAPI test
//!   compares it with [`openapi`]'s document)
//! - [`devices`], [`firmware`], [`rollouts`], [`audit`], [`events`], [`meta`]: the handlers
//! - [`dashboard`]: the dashboard page at `/` and its assets under `/assets/`
//! - [`device`]: the device listener's router (downloads + `POST /api/v1/report`)
//! - [`auth`]: the operator token; [`error`]: errors as responses; [`shutdown`]: cutting
//!   connections that outlive the shutdown grace

pub mod api;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod device;
pub mod devices;
pub mod error;
pub mod events;
pub mod firmware;
pub mod meta;
pub mod multipart;
pub mod openapi;
pub mod rollouts;
pub mod shutdown;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::devices::Registry;
use crate::events::EventBus;
use crate::firmware::FirmwareLibrary;
use crate::rollout::RolloutEngine;
use crate::store::Store;
use crate::time::SharedClock;
use crate::{Error, Result};

pub use auth::{TokenPolicy, token_required};

/// Largest JSON body the operator API accepts (uploads have their own limit).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// What the handlers need; shared by both listeners.
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub library: FirmwareLibrary,
    pub engine: RolloutEngine,
    pub audit: AuditLog,
    pub events: EventBus,
    pub clock: SharedClock,
    /// Largest accepted firmware upload, bytes.
    pub upload_limit: usize,
    /// Cancelled when the server shuts down (ends SSE streams).
    pub shutdown: CancellationToken,
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;

/// The operator listener's app: dashboard at `/`, the API under `/api/v1`, 404/405 in the
/// error shape everywhere, and the token check when `token` is set.
pub fn operator_router(state: Shared, token: Option<Arc<str>>) -> Router {
    let (api, _) = api::api_router();
    let router = Router::new()
        .merge(dashboard::router())
        .nest("/api/v1", api)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state);
    match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(
            auth::RequiredToken(token),
            auth::require_token,
        )),
        None => router,
    }
}

/// Runs blocking work (SQLite, files) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("a background task failed ({e}); try again")))?
}
