//! `GET /api/v1/events`: the event bus reaches an SSE client.

use crate::serve::{image, read_until, runtime, start};

aegis_testkit::netns_test! {
    fn sse_delivers_firmware_added_after_an_upload() {
        runtime().block_on(async {
            let server = start(|_| {}).await;
            let resp = server.http.get(server.url("/api/v1/events")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "text/event-stream");
            let mut stream = resp.bytes_stream();
            let mut seen = String::new();
            read_until(&mut stream, &mut seen, ": connected").await;

            let (status, entry) = server.upload(image("3.0.0", 64 * 1024), "").await;
            assert_eq!(status, 201);
            read_until(&mut stream, &mut seen, "event: firmware_added").await;
            let sha = entry["sha256"].as_str().unwrap();
            read_until(&mut stream, &mut seen, sha).await;
            // `data:` carries the entry itself.
            let data = seen
                .split("event: firmware_added\n")
                .nth(1)
                .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("data: ")))
                .unwrap();
            let payload: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(payload, entry);
            server.stop().await;
        });
    }
}
