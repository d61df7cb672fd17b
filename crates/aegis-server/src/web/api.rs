//! The `/api/v1` route table. Routes are declared only here, through [`Table`], which records
//! each (method, path) as it adds it: the list the OpenAPI test checks against the published
//! document is therefore exactly the set of routes the router serves.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{delete, get, post};

use super::{Shared, audit, devices, events, firmware, meta, rollouts};

/// One route: method (upper case) and path relative to `/api/v1`, in axum's and OpenAPI's
/// `{param}` syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
}

/// The API router (state not yet supplied) and the routes it serves.
pub fn api_router() -> (Router<Shared>, Vec<RouteSpec>) {
    let t = Table::default()
        .get("/health", meta::health)
        .get("/openapi.json", meta::openapi)
        .get("/devices", devices::list)
        .get("/devices/rejected", devices::rejected)
        .get("/devices/{id}", devices::get)
        .post("/firmware", firmware::upload)
        .get("/firmware", firmware::list)
        .get("/firmware/{sha256}", firmware::get)
        .delete("/firmware/{sha256}", firmware::delete)
        .post("/rollouts", rollouts::create)
        .get("/rollouts", rollouts::list)
        .get("/rollouts/{id}", rollouts::get)
        .post("/rollouts/{id}/pause", rollouts::pause)
        .post("/rollouts/{id}/resume", rollouts::resume)
        .post("/rollouts/{id}/abort", rollouts::abort)
        .post("/rollouts/{id}/retry-failed", rollouts::retry_failed)
        .get("/audit", audit::query)
        .get("/audit/verify", audit::verify)
        .get("/events", events::stream);
    (t.router, t.routes)
}

/// The routes [`api_router`] serves.
pub fn route_table() -> Vec<RouteSpec> {
    api_router().1
}

/// A router that remembers what it was given.
struct Table {
    router: Router<Shared>,
    routes: Vec<RouteSpec>,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            router: Router::new(),
            routes: Vec::new(),
        }
    }
}

impl Table {
    fn get<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, get(h));
        self.routes.push(RouteSpec {
            method: "GET",
            path,
        });
        self
    }

    fn post<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, post(h));
        self.routes.push(RouteSpec {
            method: "POST",
            path,
        });
        self
    }

    fn delete<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, h: H) -> Self {
        self.router = self.router.route(path, delete(h));
        self.routes.push(RouteSpec {
            method: "DELETE",
            path,
        });
        self
    }
}
