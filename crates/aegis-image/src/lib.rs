//! ESP32 application images: parse, validate, classify and build.
//!
//! [`inspect`] takes the bytes of a file and tells what it is ([`Kind`]), whether it is a
//! valid image an OTA update can install, and if not, why, in a sentence a user can act on.
//! It checks what the ESP-IDF bootloader checks (magic, chip id, segment bounds and
//! alignment, XOR checksum, appended SHA-256), reads the `esp_app_desc_t` descriptor
//! (version, project, IDF version, secure_version) and notes Secure Boot v2 signature blocks.
//! [`ImageBuilder`] makes valid images for any chip, and broken ones on purpose, for tests
//! and the simulator.
//!
//! No I/O and no async: callers read the file. No input makes it panic.
#![forbid(unsafe_code)]

mod app_desc;
mod builder;
mod checksum;
mod chip;
mod classify;
mod header;
mod inspection;
mod partition_table;
mod read;
mod segment;
mod signature;
mod sim;

pub use app_desc::AppDescriptor;
pub use builder::{BuildError, Corruption, ImageBuilder, MAX_SIZE, MIN_SIZE};
pub use chip::{Chip, UnknownChip};
pub use classify::Kind;
pub use header::{ExtendedHeader, FlashMode, Header, format_revision};
pub use inspection::{Inspection, inspect};
pub use segment::{MAX_SEGMENTS, Segment};
pub use signature::{SignatureBlock, SignatureBlocks};
pub use sim::SimBehavior;
