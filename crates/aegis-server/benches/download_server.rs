//! The firmware endpoint under load, for `scripts/bench-download` (which compares it with
//! nginx serving the same file under the same `wrk` load). Not a criterion bench: it builds a
//! 1.5 MiB app image, writes it to `<dir>/fw/<sha256>.bin` (so nginx can serve the same file
//! from `<dir>`), prints the URL path, and serves `GET /fw/<sha256>.bin` on `<addr>` exactly as
//! the server does (shared image cache, zero-copy body, stall guard, progress tracker) until
//! killed.
//!
//! Usage: `download_server <addr> <dir>`

use std::net::SocketAddr;
use std::sync::Arc;

use aegis_image::{Chip, ImageBuilder};
use aegis_server::firmware::{
    DEFAULT_STALL_TIMEOUT, DownloadService, DownloadTracker, ImageCache, ImageDir,
    cache::DEFAULT_WARM_BYTES, device_listener, router,
};
use aegis_server::time::SystemClock;
use sha2::{Digest, Sha256};

const IMAGE_SIZE: u64 = 1536 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (Some(addr), Some(dir)) = (args.next(), args.next()) else {
        return Err("usage: download_server <addr> <dir>".into());
    };
    let addr: SocketAddr = addr.parse()?;
    let image = ImageBuilder::new(Chip::Esp32)
        .version("1.5.0")
        .project("bench")
        .size(IMAGE_SIZE)
        .build()?;
    let sha = hex::encode(Sha256::digest(&image));
    let images = ImageDir::open(std::path::Path::new(&dir).join("fw"))?;
    images.write(&sha, &image)?;
    println!("/fw/{sha}.bin");

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(async move {
            let cache = ImageCache::new(images, DEFAULT_WARM_BYTES);
            let app = router(DownloadService::new(cache, DownloadTracker::new()));
            let tcp = tokio::net::TcpListener::bind(addr).await?;
            let listener = device_listener(tcp, DEFAULT_STALL_TIMEOUT, Arc::new(SystemClock));
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await?;
            Ok(())
        })
}
