//! The dashboard: one HTML page at `/` and its own small scripts and stylesheet under
//! `/assets/`, all embedded in the executable (no build step, no third-party code). The page
//! is a shell; the scripts (ES modules in `web/dashboard/`) read the JSON API, follow
//! `GET /api/v1/events` and render the fleet, firmware, deploy, rollout and audit views.
//!
//! The operator token: where the listener requires it, the page is opened as `/?token=T`. The
//! page then loads its assets with the same `?token=` (an import map does it for modules the
//! scripts import), and the scripts send it with every API call.

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::Shared;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Everything under `/assets/`. Modules must be listed here to be importable.
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("dashboard/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/app.js"),
    },
    Asset {
        name: "core.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/core.js"),
    },
    Asset {
        name: "fleet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/fleet.js"),
    },
    Asset {
        name: "firmware.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/firmware.js"),
    },
    Asset {
        name: "deploy.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/deploy.js"),
    },
    Asset {
        name: "rollouts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/rollouts.js"),
    },
    Asset {
        name: "audit.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/audit.js"),
    },
];

const INDEX: &str = include_str!("dashboard/index.html");

/// The dashboard's routes (`/`, `/assets/{name}`), merged into the operator router beside
/// the API.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(page))
        .route("/assets/{name}", get(asset))
}

/// The page shell, with the token (if the page was opened with one) on its asset URLs.
pub async fn page(RawQuery(query): RawQuery) -> Response {
    let suffix = token_suffix(query.as_deref());
    let imports: Vec<String> = ASSETS
        .iter()
        .filter(|a| a.name.ends_with(".js"))
        .map(|a| format!("\"/assets/{0}\":\"/assets/{0}{suffix}\"", a.name))
        .collect();
    let html = INDEX
        .replace("{{suffix}}", &suffix)
        .replace("{{imports}}", &imports.join(","))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"));
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(html),
    )
        .into_response()
}

/// One embedded asset, or 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        None => crate::Error::not_found(
            "asset_not_found",
            format!("the dashboard has no asset \"{name}\"; reload the page at /"),
        )
        .into_response(),
    }
}

/// `?token=T` from the page's query, made safe to embed in HTML and JSON (a token is
/// URL-safe text; anything else is dropped, and the API will then ask for the right one).
fn token_suffix(query: Option<&str>) -> String {
    query
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")))
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b))
        })
        .map(|t| format!("?token={t}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_url_safe_tokens_reach_the_page() {
        assert_eq!(token_suffix(None), "");
        assert_eq!(token_suffix(Some("a=1&token=Ab-9_x")), "?token=Ab-9_x");
        assert_eq!(token_suffix(Some("token=")), "");
        assert_eq!(token_suffix(Some("token=\"><script>")), "");
    }

    #[test]
    fn every_module_the_scripts_import_is_served() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for spec in a.body.split("from \"./").skip(1) {
                let file = spec.split('"').next().unwrap_or_default();
                assert!(names.contains(&file), "{} imports {file}", a.name);
            }
        }
    }
}
