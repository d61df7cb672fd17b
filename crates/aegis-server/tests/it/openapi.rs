//! The published OpenAPI document against the routes the server actually dispatches.

use std::collections::BTreeSet;

use aegis_server::web::{api, openapi};

use crate::serve::{runtime, start};

aegis_testkit::netns_test! {
    fn every_documented_route_is_served_and_every_served_route_documented() {
        runtime().block_on(async {
            let server = start(|_| {}).await;
            let resp = server.http.get(server.url("/api/v1/openapi.json")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let served_doc: serde_json::Value = resp.json().await.unwrap();
            let doc: serde_json::Value = serde_json::from_str(openapi::DOCUMENT).unwrap();
            assert_eq!(served_doc, doc);

            let documented = openapi::operations().unwrap();
            let table: BTreeSet<(String, String)> = api::route_table()
                .into_iter()
                .map(|r| (r.method.to_string(), r.path.to_string()))
                .collect();
            assert_eq!(documented, table);

            // Each route is dispatched by the running router (not the 404/405 fallbacks).
            for (method, path) in &table {
                let concrete = path.replace("{id}", "x").replace("{sha256}", &"0".repeat(64));
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let resp = server
                    .http
                    .request(method.clone(), server.url(&format!("/api/v1{concrete}")))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                assert_ne!(status, 405, "{method} {path}");
                if path == "/events" {
                    assert_eq!(status, 200);
                    continue;
                }
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                assert_ne!(body["error"]["code"], "route_not_found", "{method} {path}: {body}");
            }
            server.stop().await;
        });
    }
}
