//! The firmware library: uploaded images, validated by aegis-image, stored once under their
//! SHA-256, and served to devices by the download endpoint.

mod types;

pub use types::FirmwareEntry;
