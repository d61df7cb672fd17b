//! The firmware library: uploaded images, validated by aegis-image, stored once under their
//! SHA-256, and served to devices by the download endpoint.
//!
//! - [`library`]: add / list / delete, crash-safe storage, reconciliation at start
//! - [`files`]: the content-addressed directory `firmware/<sha256>.bin`
//! - [`upload`]: reading an upload body with a hard size limit
//! - [`cache`]: one shared in-memory copy per image, however many devices download it
//! - [`download`]: `GET/HEAD /fw/<sha256>.bin` (Range, ETag, zero-copy body)
//! - [`range`]: how a `Range` header is answered
//! - [`progress`]: bytes sent per rollout target
//! - [`stall`]: cutting connections that make no progress

pub mod cache;
pub mod download;
pub mod files;
pub mod library;
pub mod progress;
pub mod range;
pub mod stall;
mod types;
pub mod upload;

pub use cache::{Image, ImageCache};
pub use download::{DownloadService, router};
pub use files::{ImageDir, is_sha256};
pub use library::FirmwareLibrary;
pub use progress::{DownloadStatus, DownloadTracker, ProgressHandle, TargetProgress};
pub use stall::{DEFAULT_STALL_TIMEOUT, DeviceListener, device_listener};
pub use types::FirmwareEntry;
pub use upload::{DEFAULT_MAX_UPLOAD, read_body_limited};
