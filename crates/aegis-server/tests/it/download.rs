//! The device-facing download endpoint over real sockets (each test in its own network
//! namespace): headers, HEAD, Range edge cases, one shared copy for many slow readers, stalled
//! readers cut, and exact per-target byte counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aegis_server::firmware::{
    DownloadService, DownloadTracker, FirmwareLibrary, device_listener, router,
};
use aegis_server::time::{SharedClock, SystemClock};
use bytes::Bytes;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};

use crate::firmware::{Fixture, image};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Serves the library's download endpoint on a fresh loopback port. Accepted connections
/// inherit a fixed 64 KiB send buffer: loopback's auto-tuned buffers would otherwise swallow
/// whole images and make "the client has not read yet" invisible to the server.
async fn serve(
    library: &FirmwareLibrary,
    tracker: DownloadTracker,
    stall: Duration,
    clock: SharedClock,
) -> SocketAddr {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let tcp: TcpListener = socket.listen(1024).unwrap();
    let addr = tcp.local_addr().unwrap();
    let app = router(DownloadService::new(library.cache().clone(), tracker));
    tokio::spawn(async move {
        axum::serve(
            device_listener(tcp, stall, clock),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

struct Setup {
    _fx: Fixture,
    library: FirmwareLibrary,
    tracker: DownloadTracker,
    bytes: Vec<u8>,
    sha: String,
    url: String,
    client: reqwest::Client,
}

async fn setup(size: u64) -> Setup {
    let fx = Fixture::new().await;
    let bytes = image("5.0.0", size);
    let (entry, _) = fx
        .library
        .add(Bytes::from(bytes.clone()), None, None)
        .await
        .unwrap();
    let tracker = DownloadTracker::new();
    let addr = serve(
        &fx.library,
        tracker.clone(),
        Duration::from_secs(30),
        Arc::new(SystemClock),
    )
    .await;
    Setup {
        library: fx.library.clone(),
        _fx: fx,
        tracker,
        url: format!("http://{addr}/fw/{}.bin", entry.sha256),
        sha: entry.sha256,
        bytes,
        client: reqwest::Client::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

aegis_testkit::netns_test! {
    fn a_full_get_sends_the_exact_file_with_protocol_headers() {
        runtime().block_on(async {
            let s = setup(300_000).await;
            let r = s.client.get(&s.url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(header(&r, "content-length"), Some(s.bytes.len().to_string().as_str()));
            assert_eq!(header(&r, "accept-ranges"), Some("bytes"));
            assert_eq!(header(&r, "etag"), Some(format!("\"{}\"", s.sha).as_str()));
            assert_eq!(header(&r, "content-type"), Some("application/octet-stream"));
            assert_eq!(header(&r, "transfer-encoding"), None);
            let body = r.bytes().await.unwrap();
            assert_eq!(&body[..], &s.bytes[..]);
            assert_eq!(hex::encode(Sha256::digest(&body)), s.sha);

            let head = s.client.head(&s.url).send().await.unwrap();
            assert_eq!(head.status(), StatusCode::OK);
            assert_eq!(header(&head, "content-length"), Some(s.bytes.len().to_string().as_str()));
            assert_eq!(header(&head, "etag"), Some(format!("\"{}\"", s.sha).as_str()));
            assert_eq!(header(&head, "accept-ranges"), Some("bytes"));
            assert!(head.bytes().await.unwrap().is_empty());
        });
    }
}

aegis_testkit::netns_test! {
    fn head_sends_headers_and_no_body_on_the_wire() {
        runtime().block_on(async {
            let s = setup(64 * 1024).await;
            let url = s.url.strip_prefix("http://").unwrap();
            let (addr, path) = url.split_once('/').unwrap();
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            conn.write_all(format!("HEAD /{path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            conn.read_to_end(&mut raw).await.unwrap();
            let text = String::from_utf8(raw).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.to_ascii_lowercase().contains(&format!("content-length: {}", s.bytes.len())), "{head}");
            assert_eq!(body, "", "HEAD must not send a body");
        });
    }
}

aegis_testkit::netns_test! {
    fn ranges_are_answered_as_decided() {
        runtime().block_on(async {
            let s = setup(300_000).await;
            let size = s.bytes.len();
            let get = |range: &'static str| {
                let req = s.client.get(&s.url).header("range", range);
                async move { req.send().await.unwrap() }
            };
            // (Range, expected start, expected inclusive end)
            for (range, start, end) in [
                ("bytes=0-", 0, size - 1),
                ("bytes=100-199", 100, 199),
                ("bytes=100-", 100, size - 1),
                ("bytes=1000-99999999", 1000, size - 1),
                ("bytes=-500", size - 500, size - 1),
                ("bytes=0-0", 0, 0),
            ] {
                let r = get(range).await;
                assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
                assert_eq!(header(&r, "content-range"), Some(format!("bytes {start}-{end}/{size}").as_str()), "{range}");
                assert_eq!(header(&r, "content-length"), Some((end - start + 1).to_string().as_str()), "{range}");
                assert_eq!(header(&r, "etag"), Some(format!("\"{}\"", s.sha).as_str()));
                let body = r.bytes().await.unwrap();
                assert_eq!(&body[..], &s.bytes[start..=end], "{range}");
            }
            for range in [format!("bytes={size}-"), format!("bytes={}-", size + 1), format!("bytes={}-{}", size + 5, size + 9), "bytes=-0".to_string()] {
                let r = s.client.get(&s.url).header("range", &range).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
                assert_eq!(header(&r, "content-range"), Some(format!("bytes */{size}").as_str()), "{range}");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "range_not_satisfiable");
            }
            // Decided: several ranges, garbage, other units, reversed ranges are ignored: 200, whole file.
            for range in ["bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=9-3", "bytes 0-5"] {
                let r = get(range).await;
                assert_eq!(r.status(), StatusCode::OK, "{range}");
                assert_eq!(header(&r, "content-range"), None);
                assert_eq!(r.bytes().await.unwrap().len(), size, "{range}");
            }
            // If-Range with another ETag: the Range is ignored.
            let r = s.client.get(&s.url).header("range", "bytes=10-").header("if-range", "\"other\"").send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let r = s.client.get(&s.url).header("range", "bytes=10-").header("if-range", format!("\"{}\"", s.sha)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        });
    }
}

aegis_testkit::netns_test! {
    fn unknown_and_malformed_names_get_error_bodies() {
        runtime().block_on(async {
            let s = setup(64 * 1024).await;
            let base = s.url.rsplit_once('/').unwrap().0;
            let r = s.client.get(format!("{base}/{}.bin", "ab".repeat(32))).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "firmware_not_found");
            for bad in ["nothex.bin", &format!("{}.bin", "AB".repeat(32)), &s.sha, &format!("{}.bin", &s.sha[1..])] {
                let r = s.client.get(format!("{base}/{bad}")).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "bad_firmware_name");
                assert!(body["error"]["message"].as_str().unwrap().contains("/fw/<sha256>.bin"));
            }
        });
    }
}

/// Connects with a small receive buffer and sends a GET; returns the stream with the response
/// head read.
async fn slow_client(url: &str, recv_buffer: u32) -> BufReader<tokio::net::TcpStream> {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    let conn = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut conn = BufReader::with_capacity(4096, conn);
    conn.get_mut()
        .write_all(format!("GET /{path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    while line != "\r\n" {
        line.clear();
        conn.read_line(&mut line).await.unwrap();
    }
    conn
}

aegis_testkit::netns_test! {
    fn a_hundred_slow_readers_share_one_copy() {
        runtime().block_on(async {
            let s = setup(1536 * 1024).await;
            let handle = s.tracker.expect(&s.sha, LOCALHOST);
            let mut status = handle.subscribe();
            let (go_tx, go) = tokio::sync::watch::channel(false);
            let mut readers = Vec::new();
            for _ in 0..100 {
                let url = s.url.clone();
                let mut go = go.clone();
                readers.push(tokio::spawn(async move {
                    let mut conn = slow_client(&url, 8 * 1024).await;
                    go.wait_for(|g| *g).await.unwrap();
                    let mut body = Vec::new();
                    let mut buf = [0u8; 4096]; // devices read in 4 KiB chunks
                    loop {
                        let n = conn.read(&mut buf).await.unwrap();
                        if n == 0 { break; }
                        body.extend_from_slice(&buf[..n]);
                        if body.len() >= 1536 * 1024 { break; }
                        tokio::task::yield_now().await;
                    }
                    body
                }));
            }
            // All hundred are mid-body at once...
            status.wait_for(|st| st.active == 100).await.unwrap();
            assert_eq!(s.library.cache().loads(), 1, "the image was read from disk once");
            assert_eq!(s.library.cache().resident(), 1, "one copy in memory");
            let a = s.library.image(&s.sha).await.unwrap().unwrap();
            let b = s.library.image(&s.sha).await.unwrap().unwrap();
            assert!(Arc::ptr_eq(&a, &b));
            assert_eq!(s.library.cache().loads(), 1);
            go_tx.send(true).unwrap();
            for r in readers {
                let body = r.await.unwrap();
                assert!(body == s.bytes, "every reader gets the exact image");
            }
            status.wait_for(|st| st.finished == 100).await.unwrap();
            assert_eq!(handle.bytes_sent(), 100 * s.bytes.len() as u64);
            assert_eq!(s.library.cache().loads(), 1);
        });
    }
}

aegis_testkit::netns_test! {
    fn a_stalled_reader_is_cut_after_the_stall_timeout() {
        runtime().block_on(async {
            let fx = Fixture::new().await;
            let size = 4 * 1024 * 1024;
            let bytes = image("6.0.0", size);
            let (entry, _) = fx.library.add(Bytes::from(bytes.clone()), None, None).await.unwrap();
            let tracker = DownloadTracker::new();
            let handle = tracker.expect(&entry.sha256, LOCALHOST);
            let mut status = handle.subscribe();
            let clock = fx.clock.clone();
            let addr = serve(&fx.library, tracker, Duration::from_secs(30), Arc::new(clock.clone())).await;
            let url = format!("http://{addr}/fw/{}.bin", entry.sha256);
            let mut conn = slow_client(&url, 4096).await; // and never reads on

            status.wait_for(|st| st.active == 1).await.unwrap();
            while clock.sleepers() == 0 {
                tokio::task::yield_now().await;
            }
            clock.advance(Duration::from_secs(29));
            tokio::task::yield_now().await;
            assert_eq!(handle.status().aborted, 0, "not cut before the timeout");
            // Advance past the timeout until the guard, armed on the blocked write, fires.
            let cut = async {
                loop {
                    clock.advance(Duration::from_secs(31));
                    if tokio::time::timeout(Duration::from_millis(100), status.wait_for(|st| st.aborted == 1)).await.is_ok() {
                        break;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(20), cut).await.expect("the stalled connection was not cut");
            let sent = handle.bytes_sent();
            assert!(sent < size, "cut mid-body ({sent} of {size} bytes)");
            // The client sees the connection end before the whole body.
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest).await;
            assert!((rest.len() as u64) < size);
            assert!(!handle.status().reached_end);
        });
    }
}

aegis_testkit::netns_test! {
    fn the_tracker_counts_exact_bytes_including_resumed_ranges() {
        runtime().block_on(async {
            let s = setup(300_000).await;
            let size = s.bytes.len() as u64;
            let handle = s.tracker.expect(&s.sha, LOCALHOST);
            let mut status = handle.subscribe();
            let other = s.tracker.expect(&s.sha, IpAddr::from([127, 0, 1, 9]));

            let part = s.client.get(&s.url).header("range", "bytes=0-99999").send().await.unwrap();
            assert_eq!(part.bytes().await.unwrap().len(), 100_000);
            status.wait_for(|st| st.finished == 1).await.unwrap();
            assert_eq!((handle.bytes_sent(), handle.position()), (100_000, 100_000));
            assert!(!handle.status().reached_end);

            let head = s.client.head(&s.url).send().await.unwrap();
            assert_eq!(head.status(), StatusCode::OK);
            let rest = s.client.get(&s.url).header("range", "bytes=100000-").send().await.unwrap();
            assert_eq!(rest.bytes().await.unwrap().len() as u64, size - 100_000);
            let st = *status.wait_for(|st| st.finished == 2).await.unwrap();
            assert_eq!((st.requests, st.aborted, st.active, st.reached_end), (2, 0, 0, true), "HEAD is not a download");
            assert_eq!((handle.bytes_sent(), handle.position()), (size, size));
            assert_eq!(other.bytes_sent(), 0, "another device's expectation sees nothing");

            drop(handle);
            drop(other);
            assert!(s.tracker.is_empty());
        });
    }
}
