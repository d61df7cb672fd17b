//! What the device model needs to know about an image, taken from `aegis_image::inspect`
//! (the only place the model looks inside image bytes): is it an app the bootloader of this
//! chip would load, and if so which version and which simulated behaviour it carries.
//! Facts hold no image bytes; they are cached per blob by the [`super::BlobStore`].

use aegis_image::{Chip, SimBehavior};

use super::ModelError;

/// Why the bootloader (or `esp_image_verify` in `esp_ota_end`) rejects an image, chip aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageProblem {
    /// The segment checksum byte does not match.
    BadChecksum,
    /// The appended SHA-256 digest does not match.
    BadDigest,
    /// Anything else (magic, header, segments, not an app), with the validator's reason.
    Invalid(String),
}

/// The facts about one image file that boot and update decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    /// File length in bytes.
    pub size: u64,
    /// Chip id from the extended header, when it names a known chip.
    pub chip: Option<Chip>,
    /// `esp_app_desc_t.version` (empty when there is no descriptor).
    pub version: String,
    /// `esp_app_desc_t.project_name`.
    pub project: String,
    /// `esp_app_desc_t.secure_version`.
    pub secure_version: u32,
    /// What the app does once booted (images without a marker boot normally).
    pub behavior: SimBehavior,
    /// Why a bootloader would refuse it, if it would.
    pub problem: Option<ImageProblem>,
}

impl ImageFacts {
    /// Inspect image bytes.
    pub fn examine(bytes: &[u8]) -> Self {
        let inspection = aegis_image::inspect(bytes);
        let problem = if inspection.valid {
            None
        } else if inspection.checksum_valid == Some(false) {
            Some(ImageProblem::BadChecksum)
        } else if inspection.digest_valid == Some(false) {
            Some(ImageProblem::BadDigest)
        } else {
            Some(ImageProblem::Invalid(
                inspection
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the validator rejected it".to_owned()),
            ))
        };
        let (version, project, secure_version) = match &inspection.app {
            Some(app) => (app.version.clone(), app.project.clone(), app.secure_version),
            None => (String::new(), String::new(), 0),
        };
        ImageFacts {
            size: bytes.len() as u64,
            chip: inspection.chip,
            version,
            project,
            secure_version,
            behavior: inspection.sim_behavior.unwrap_or(SimBehavior::Boots),
            problem,
        }
    }

    /// The checks `esp_image_verify` makes for a device built for `chip`, in its order:
    /// header (magic, chip id) first, then checksum, then the appended digest.
    pub fn check_for(&self, chip: Chip) -> Result<(), ModelError> {
        match (self.chip, &self.problem) {
            (Some(image), _) if image != chip => Err(ModelError::WrongChip {
                image,
                device: chip,
            }),
            (None, None) => Err(ModelError::InvalidImage(
                "its header names no chip this simulator knows".to_owned(),
            )),
            (Some(_), None) => Ok(()),
            (_, Some(ImageProblem::BadChecksum)) => Err(ModelError::BadChecksum),
            (_, Some(ImageProblem::BadDigest)) => Err(ModelError::BadDigest),
            (_, Some(ImageProblem::Invalid(reason))) => {
                Err(ModelError::InvalidImage(reason.clone()))
            }
        }
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.version.capacity() + self.project.capacity()
    }
}
