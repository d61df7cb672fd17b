//! The operator API through a real server: every route's happy path and its error shape, the
//! operator token, and the device listener's report endpoint.

use aegis_server::web::TokenPolicy;
use serde_json::{Value, json};

use crate::serve::{image, runtime, start};

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() > 10, "{body}");
}

aegis_testkit::netns_test! {
    fn firmware_routes_and_their_errors() {
        runtime().block_on(async {
            let server = start(|c| c.upload_limit = 1024 * 1024).await;
            let (status, body) = server.get_json("/api/v1/health").await;
            assert_eq!(status, 200);
            assert_eq!(body["status"], "ok");
            assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

            let bin = image("1.2.0", 64 * 1024);
            let (status, entry) = server.upload(bin.clone(), "?filename=app.bin&notes=first").await;
            assert_eq!(status, 201, "{entry}");
            for field in ["sha256", "size", "chip", "project", "version", "idf_version",
                          "secure_version", "filename", "notes", "uploaded_at"] {
                assert!(entry.get(field).is_some(), "missing {field}: {entry}");
            }
            assert_eq!(entry["version"], "1.2.0");
            assert_eq!(entry["filename"], "app.bin");
            assert_eq!(entry["notes"], "first");
            let sha = entry["sha256"].as_str().unwrap().to_string();

            // A duplicate returns the existing entry with 200.
            let (status, again) = server.upload(bin, "").await;
            assert_eq!(status, 200);
            assert_eq!(again, entry);

            // Not an app image: 422 with the validator's reason.
            let (status, body) = server.upload(vec![0u8; 4096], "").await;
            assert_eq!(status, 422);
            assert_error(&body, "not_an_app_image");

            // Over the limit: 413.
            let (status, body) = server.upload(vec![0xe9; 2 * 1024 * 1024], "").await;
            assert_eq!(status, 413);
            assert_error(&body, "upload_too_large");

            // Multipart, as `curl -F` sends it.
            let other = image("1.3.0", 64 * 1024);
            let mut form = b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nfrom a form\r\n--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"other.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
            form.extend_from_slice(&other);
            form.extend_from_slice(b"\r\n--BOUNDARY--\r\n");
            let resp = server.http.post(server.url("/api/v1/firmware"))
                .header("content-type", "multipart/form-data; boundary=BOUNDARY")
                .body(form).send().await.unwrap();
            assert_eq!(resp.status(), 201);
            let multi: Value = resp.json().await.unwrap();
            assert_eq!(multi["filename"], "other.bin");
            assert_eq!(multi["notes"], "from a form");
            assert_eq!(multi["version"], "1.3.0");

            let (status, list) = server.get_json("/api/v1/firmware").await;
            assert_eq!(status, 200);
            assert_eq!(list.as_array().unwrap().len(), 2);
            let (status, one) = server.get_json(&format!("/api/v1/firmware/{sha}")).await;
            assert_eq!(status, 200);
            assert_eq!(one, entry);

            let resp = server.http.delete(server.url(&format!("/api/v1/firmware/{sha}"))).send().await.unwrap();
            assert_eq!(resp.status(), 204);
            let (status, body) = server.get_json(&format!("/api/v1/firmware/{sha}")).await;
            assert_eq!(status, 404);
            assert_error(&body, "firmware_not_found");
            let resp = server.http.delete(server.url(&format!("/api/v1/firmware/{sha}"))).send().await.unwrap();
            assert_eq!(resp.status(), 404);
            server.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn devices_rollouts_audit_and_unknown_routes() {
        runtime().block_on(async {
            let server = start(|_| {}).await;
            let (status, body) = server.get_json("/api/v1/devices").await;
            assert_eq!((status, body), (200, json!([])));
            let (status, body) = server.get_json("/api/v1/devices/aabbccddeeff").await;
            assert_eq!(status, 404);
            assert_error(&body, "device_not_found");
            let (status, body) = server.get_json("/api/v1/devices/rejected?limit=5").await;
            assert_eq!((status, body), (200, json!([])));

            // Rollouts: malformed JSON and unknown fields are 400 with serde's words.
            let post = |body: &'static str| {
                server.http.post(server.url("/api/v1/rollouts"))
                    .header("content-type", "application/json").body(body).send()
            };
            let resp = post("{not json").await.unwrap();
            assert_eq!(resp.status(), 400);
            let body: Value = resp.json().await.unwrap();
            assert_error(&body, "bad_json");
            let resp = post(r#"{"firmware":"00","targets":{"selector":"all"},"colour":"red"}"#).await.unwrap();
            assert_eq!(resp.status(), 400);
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `colour`"), "{body}");
            let big = format!("{{\"firmware\":\"{}\"}}", "a".repeat(100 * 1024));
            let resp = server.http.post(server.url("/api/v1/rollouts"))
                .header("content-type", "application/json").body(big).send().await.unwrap();
            assert_eq!(resp.status(), 413);

            let (status, body) = server.get_json("/api/v1/rollouts/nope").await;
            assert_eq!(status, 404, "{body}");
            assert!(body["error"]["code"].is_string(), "{body}");
            let resp = server.http.post(server.url("/api/v1/rollouts/nope/pause")).send().await.unwrap();
            assert_eq!(resp.status(), 404);

            // Audit: JSON, CSV, durations, verification.
            let (status, records) = server.get_json("/api/v1/audit?since=1h").await;
            assert_eq!(status, 200);
            assert!(records.as_array().unwrap().iter().any(|r| r["kind"] == "server_started"), "{records}");
            let (status, none) = server.get_json("/api/v1/audit?kind=no_such_kind").await;
            assert_eq!((status, none), (200, json!([])));
            let resp = server.http.get(server.url("/api/v1/audit?format=csv")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
            let csv = resp.text().await.unwrap();
            assert!(csv.lines().count() >= 2 && csv.contains("server_started"), "{csv}");
            let (status, body) = server.get_json("/api/v1/audit?since=yesterday").await;
            assert_eq!(status, 400);
            assert_error(&body, "bad_query");
            let (status, body) = server.get_json("/api/v1/audit?limit=-1").await;
            assert_eq!(status, 400);
            assert_error(&body, "bad_query");
            let (status, report) = server.get_json("/api/v1/audit/verify").await;
            assert_eq!(status, 200);
            assert_eq!(report["intact"], true, "{report}");
            assert!(report["records"].as_u64().unwrap() >= 1);

            // Unknown routes and wrong methods, in the error shape.
            let (status, body) = server.get_json("/api/v1/nothing-here").await;
            assert_eq!(status, 404);
            assert_error(&body, "route_not_found");
            let resp = server.http.delete(server.url("/api/v1/devices")).send().await.unwrap();
            assert_eq!(resp.status(), 405);
            let body: Value = resp.json().await.unwrap();
            assert_error(&body, "method_not_allowed");

            // The dashboard page (its behaviour is tested in a browser: dashboard.rs).
            let resp = server.http.get(server.url("/")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let html = resp.text().await.unwrap();
            assert!(html.contains("AegisOTA") && html.contains("/api/v1/devices"), "{html}");
            assert!(html.contains("<script type=\"module\" src=\"/assets/app.js\">"), "{html}");
            server.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn the_token_is_required_when_the_policy_says_so() {
        runtime().block_on(async {
            let server = start(|c| c.token_policy = TokenPolicy::Always).await;
            let (status, body) = server.get_json("/api/v1/health").await;
            assert_eq!(status, 401);
            assert_error(&body, "unauthorized");
            let token_path = server.dir.path().join("keys/token");
            let token = std::fs::read_to_string(&token_path).unwrap().trim().to_string();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);

            let resp = server.http.get(server.url("/api/v1/devices"))
                .bearer_auth("wrong").send().await.unwrap();
            assert_eq!(resp.status(), 401);
            let resp = server.http.get(server.url("/api/v1/devices"))
                .bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let (status, _) = server.get_json(&format!("/api/v1/devices?token={token}")).await;
            assert_eq!(status, 200);
            // Unknown routes are not revealed without the token either.
            let (status, _) = server.get_json("/api/v1/nothing").await;
            assert_eq!(status, 401);
            // The device listener never asks for it.
            let resp = server.http.get(server.dev_url(&format!("/fw/{}.bin", "0".repeat(64)))).send().await.unwrap();
            assert_eq!(resp.status(), 404);
            server.stop().await;
        });
    }
}

aegis_testkit::netns_test! {
    fn the_report_endpoint_refuses_garbage_and_unknown_deployments() {
        runtime().block_on(async {
            let server = start(|_| {}).await;
            let (_, before) = server.get_json("/api/v1/audit").await;
            let report = |body: String| {
                server.http.post(server.dev_url("/api/v1/report"))
                    .header("content-type", "application/json").body(body).send()
            };
            let resp = report("{garbage".into()).await.unwrap();
            assert_eq!(resp.status(), 400);
            assert_error(&resp.json().await.unwrap(), "bad_report");
            // Well-formed, but for no deployment in flight.
            let body = json!({"id": "aabbccddeeff", "deployment": "d-unknown", "phase": "downloading",
                              "bytes": 10, "total": 100}).to_string();
            let resp = report(body).await.unwrap();
            assert!(matches!(resp.status().as_u16(), 404 | 409), "{}", resp.status());
            assert!(resp.json::<Value>().await.unwrap()["error"]["code"].is_string());
            // Too large.
            let resp = report(format!("{{\"pad\":\"{}\"}}", "x".repeat(5000))).await.unwrap();
            assert_eq!(resp.status(), 413);
            // Nothing else lives on the device listener.
            let resp = server.http.get(server.dev_url("/api/v1/devices")).send().await.unwrap();
            assert_eq!(resp.status(), 404);
            let resp = server.http.post(server.dev_url("/api/v1/rollouts")).body("{}").send().await.unwrap();
            assert_eq!(resp.status(), 404);
            // No state changed.
            let (_, after) = server.get_json("/api/v1/audit").await;
            assert_eq!(before, after);
            let (_, rollouts) = server.get_json("/api/v1/rollouts").await;
            assert_eq!(rollouts, json!([]));
            server.stop().await;
        });
    }
}
