//! The one error type of the device model. Every variant reads as one sentence a user (or the
//! network side, passing it on in a report) can act on.

use std::path::PathBuf;

use aegis_image::Chip;

use super::Slot;

/// What went wrong in the device model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the device state file {} is damaged: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("no device is provisioned in {}; provision it first", dir.display())]
    NotProvisioned { dir: PathBuf },
    #[error("a device is already provisioned in {}; open it instead", dir.display())]
    AlreadyProvisioned { dir: PathBuf },
    #[error("the device in {} was provisioned as {stored}, not {requested}", dir.display())]
    ConfigMismatch {
        dir: PathBuf,
        stored: String,
        requested: String,
    },
    #[error("device id {0:?} is not 12 lower-case hex digits")]
    InvalidDeviceId(String),
    #[error("slot size {0} is not a positive multiple of 4096 bytes")]
    InvalidSlotSize(u64),
    #[error("blob {sha} is missing from the blob store")]
    BlobMissing { sha: String },
    #[error("the device is powered off; power it on (Device::open or power_on) first")]
    PoweredOff,
    #[error("power was lost while writing otadata; power the device on again")]
    PowerLost,
    #[error("no update is in progress; call begin_update first")]
    NoUpdateInProgress,
    #[error("an update is already in progress; finish or abort it first")]
    UpdateInProgress,
    #[error(
        "the running app in {slot} is still pending verification; confirm it or reboot before updating"
    )]
    RunningAppNotConfirmed { slot: Slot },
    #[error("the image size must be greater than zero")]
    EmptyImage,
    #[error("the image is {size} bytes but the inactive slot holds only {slot_size}")]
    ImageTooLarge { size: u64, slot_size: u64 },
    #[error("writing {len} more bytes would exceed the announced image size of {size} bytes")]
    WriteBeyondSize { len: u64, size: u64 },
    #[error("the image starts with byte 0x{found:02x}, not the app image magic 0xe9")]
    BadMagic { found: u8 },
    #[error("only {written} of {size} bytes were written; the image is incomplete")]
    Incomplete { written: u64, size: u64 },
    #[error("the image SHA-256 is {actual} but {expected} was expected")]
    ShaMismatch { expected: String, actual: String },
    #[error("image is for {} but this device is an {}", image.name(), device.name())]
    WrongChip { image: Chip, device: Chip },
    #[error("the image segment checksum does not match; the image is corrupt")]
    BadChecksum,
    #[error(
        "the SHA-256 digest appended to the image does not match its contents; the image is corrupt"
    )]
    BadDigest,
    #[error("the image is not a valid app image: {0}")]
    InvalidImage(String),
    #[error("{slot} holds no complete image to boot")]
    NoImageInSlot { slot: Slot },
    #[error(
        "otadata has no active entry (the running app is not an OTA app), so it cannot be marked valid"
    )]
    NoActiveOtadata,
    #[error("no slot holds a bootable app; the bootloader resets forever")]
    NoBootableApp,
    #[error(
        "the app in {slot} (version {version}) crashes at every boot and nothing is left to roll back to"
    )]
    BootLoop { slot: Slot, version: String },
}

impl ModelError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ModelError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
