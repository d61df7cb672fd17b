//! One simulated ESP32: its configuration, its flash (two OTA slots and otadata, persisted in
//! a per-device directory) and the app that is running.
//!
//! The update calls mirror `esp_ota_begin` / `esp_ota_write` / `esp_ota_end` /
//! `esp_ota_set_boot_partition` / `esp_ota_mark_app_valid_cancel_rollback`; power-on and
//! reboot run the [`bootloader`](super::bootloader) and then the app, whose behaviour is
//! carried by the image. Everything is written to disk as it happens, so stopping the process
//! at any point is a power loss, and [`Device::open`] is the next power-on.
//!
//! A `Device` holds no image bytes: slot contents live on disk (complete images once per
//! fleet in the [`BlobStore`]), and the running image is known by its metadata.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_image::{Chip, SimBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bootloader::{self, BootEvent};
use super::otadata::{OtaState, Otadata, OtadataFile, Tear};
use super::slot::{SlotContent, SlotFiles};
use super::{BlobStore, ImageFacts, ModelError, Slot, write_atomically};

/// Default size of each OTA slot: 1.5 MiB, as in ESP-IDF's "two OTA" partition tables.
pub const DEFAULT_SLOT_SIZE: u64 = 0x18_0000;

/// The first byte of every ESP app image (`ESP_IMAGE_HEADER_MAGIC`).
const IMAGE_MAGIC: u8 = 0xe9;

const RECORD_FILE: &str = "device.json";
const OTADATA_FILE: &str = "otadata.bin";
const RECORD_FORMAT: u32 = 1;

/// What a device is built as; fixed at provisioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// 12 lower-case hex digits (the Wi-Fi station MAC).
    pub id: String,
    /// The chip; images for other chips are rejected.
    pub chip: Chip,
    /// Size of each OTA slot in bytes (a multiple of 4 KiB).
    pub slot_size: u64,
}

impl DeviceConfig {
    /// A configuration with the default slot size.
    pub fn new(id: impl Into<String>, chip: Chip) -> Self {
        DeviceConfig {
            id: id.into(),
            chip,
            slot_size: DEFAULT_SLOT_SIZE,
        }
    }

    fn check(&self) -> Result<(), ModelError> {
        let id_ok = self.id.len() == 12
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !id_ok {
            return Err(ModelError::InvalidDeviceId(self.id.clone()));
        }
        if self.slot_size == 0 || !self.slot_size.is_multiple_of(4096) {
            return Err(ModelError::InvalidSlotSize(self.slot_size));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "id {}, chip {}, slot size {}",
            self.id,
            self.chip.name(),
            self.slot_size
        )
    }
}

/// The running app's state, from its otadata entry (`esp_ota_get_state_partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppState {
    /// Confirmed (or never subject to confirmation).
    Valid,
    /// Booted from a NEW entry and not confirmed yet; a reset now rolls back.
    PendingVerify,
}

impl AppState {
    /// `valid` or `pending_verify`.
    pub fn name(self) -> &'static str {
        match self {
            AppState::Valid => "valid",
            AppState::PendingVerify => "pending_verify",
        }
    }
}

/// The app that is running: metadata only, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningImage {
    pub slot: Slot,
    /// SHA-256 of the image file.
    pub sha256: [u8; 32],
    pub size: u64,
    pub version: String,
    pub project: String,
    pub chip: Chip,
    pub secure_version: u32,
    pub state: AppState,
    pub behavior: SimBehavior,
}

/// What one power-on (or reboot) ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOutcome {
    /// The slot that is running now.
    pub slot: Slot,
    /// The bootloader ended up in another slot than otadata selected at power-on (pending
    /// app aborted, app crashed at boot, or image failed validation).
    pub rolled_back: bool,
    /// Why it rolled back / fell back, as sentences; `None` when it did not.
    pub reason: Option<String>,
    /// The running app's state.
    pub state: AppState,
    /// How many crash-resets happened before the app settled.
    pub crashes: u32,
    /// What the bootloader did, in order.
    pub events: Vec<BootEvent>,
}

/// `device.json`: the configuration a directory was provisioned with.
#[derive(Debug, Serialize, Deserialize)]
struct DeviceRecord {
    format: u32,
    id: String,
    chip: String,
    slot_size: u64,
}

/// The persistent part of a device: what survives a power loss.
#[derive(Debug)]
struct Flash {
    dir: PathBuf,
    chip: Chip,
    blobs: Arc<BlobStore>,
    slots: [SlotContent; 2],
    /// A fault armed for the next otadata write.
    tear: Option<Tear>,
}

/// An `esp_ota_begin` handle.
struct Update {
    slot: Slot,
    file: File,
    hasher: Sha256,
    size: u64,
    written: u64,
}

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update")
            .field("slot", &self.slot)
            .field("size", &self.size)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// One simulated ESP32. Owned by one task (it is `Send`); every call is synchronous and
/// does only local file I/O; callers add the delays.
#[derive(Debug)]
pub struct Device {
    cfg: DeviceConfig,
    flash: Flash,
    running: RunningImage,
    powered: bool,
    update: Option<Update>,
}

impl Device {
    /// Provision a new device in `dir` (which must not hold one): `factory_image` in `ota_0`,
    /// `ota_1` erased, otadata blank, then the first power-on, whose bootloader boots `ota_0`
    /// and records it as sequence 1, VALID.
    pub fn provision(
        dir: &Path,
        cfg: DeviceConfig,
        factory_image: &[u8],
        blobs: Arc<BlobStore>,
    ) -> Result<Device, ModelError> {
        Self::provision_and_boot(dir, cfg, factory_image, blobs).map(|(device, _)| device)
    }

    /// Open the device in `dir` if it is provisioned, otherwise provision it.
    pub fn open_or_provision(
        dir: &Path,
        cfg: DeviceConfig,
        factory_image: &[u8],
        blobs: Arc<BlobStore>,
    ) -> Result<(Device, BootOutcome), ModelError> {
        if dir.join(RECORD_FILE).is_file() {
            Self::open(dir, cfg, blobs)
        } else {
            Self::provision_and_boot(dir, cfg, factory_image, blobs)
        }
    }

    /// Power on the device stored in `dir`: the bootloader runs on what the disk holds.
    pub fn open(
        dir: &Path,
        cfg: DeviceConfig,
        blobs: Arc<BlobStore>,
    ) -> Result<(Device, BootOutcome), ModelError> {
        cfg.check()?;
        let record_path = dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&record_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::NotProvisioned {
                    dir: dir.to_owned(),
                });
            }
            Err(e) => return Err(ModelError::io("read", record_path, e)),
        };
        let corrupt = |detail: String| ModelError::Corrupt {
            path: record_path.clone(),
            detail,
        };
        let record: DeviceRecord =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if record.format != RECORD_FORMAT {
            return Err(corrupt(format!("unknown format {}", record.format)));
        }
        let stored = DeviceConfig {
            id: record.id,
            chip: record
                .chip
                .parse()
                .map_err(|_| corrupt(format!("unknown chip {:?}", record.chip)))?,
            slot_size: record.slot_size,
        };
        if stored != cfg {
            return Err(ModelError::ConfigMismatch {
                dir: dir.to_owned(),
                stored: stored.describe(),
                requested: cfg.describe(),
            });
        }
        let mut flash = Flash {
            dir: dir.to_owned(),
            chip: cfg.chip,
            blobs,
            slots: [SlotContent::Erased; 2],
            tear: None,
        };
        let (running, outcome) = flash.boot()?;
        let device = Device {
            cfg,
            flash,
            running,
            powered: true,
            update: None,
        };
        Ok((device, outcome))
    }

    fn provision_and_boot(
        dir: &Path,
        cfg: DeviceConfig,
        factory_image: &[u8],
        blobs: Arc<BlobStore>,
    ) -> Result<(Device, BootOutcome), ModelError> {
        cfg.check()?;
        if dir.join(RECORD_FILE).exists() {
            return Err(ModelError::AlreadyProvisioned {
                dir: dir.to_owned(),
            });
        }
        let size = factory_image.len() as u64;
        if size > cfg.slot_size {
            return Err(ModelError::ImageTooLarge {
                size,
                slot_size: cfg.slot_size,
            });
        }
        let facts = ImageFacts::examine(factory_image);
        facts.check_for(cfg.chip)?;
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io("create", dir, e))?;
        let sha = blobs.put(factory_image)?;
        blobs.remember(sha, Arc::new(facts));
        SlotFiles { slot: Slot::Ota0 }.commit_image(dir, &sha)?;
        SlotFiles { slot: Slot::Ota1 }.erase(dir)?;
        OtadataFile::new(dir.join(OTADATA_FILE)).create_erased()?;
        let record = DeviceRecord {
            format: RECORD_FORMAT,
            id: cfg.id.clone(),
            chip: cfg.chip.name().to_owned(),
            slot_size: cfg.slot_size,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| ModelError::Corrupt {
            path: dir.join(RECORD_FILE),
            detail: e.to_string(),
        })?;
        write_atomically(&dir.join(RECORD_FILE), &json)?;
        Self::open(dir, cfg, blobs)
    }

    /// The app that is running (after a power loss: the one that was running).
    pub fn running(&self) -> &RunningImage {
        &self.running
    }

    /// The configuration the device was provisioned with.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The device directory.
    pub fn dir(&self) -> &Path {
        &self.flash.dir
    }

    /// Whether the device is running (false after a power loss until the next power-on).
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// The slot an update writes: the one not running.
    pub fn inactive_slot(&self) -> Slot {
        self.running.slot.other()
    }

    /// Bytes available in the inactive slot.
    pub fn inactive_slot_size(&self) -> u64 {
        self.cfg.slot_size
    }

    /// What a slot holds.
    pub fn slot_content(&self, slot: Slot) -> SlotContent {
        self.flash.slots[slot.index() as usize]
    }

    /// Read otadata as it is on flash.
    pub fn otadata(&self) -> Result<Otadata, ModelError> {
        self.flash.otadata().read()
    }

    /// Whether an update is in progress.
    pub fn is_updating(&self) -> bool {
        self.update.is_some()
    }

    /// `esp_ota_begin`: erase the inactive slot for an image of `size` bytes. Refused while
    /// the running app is still pending verification, as ESP-IDF does.
    pub fn begin_update(&mut self, size: u64) -> Result<(), ModelError> {
        self.ensure_powered()?;
        if self.update.is_some() {
            return Err(ModelError::UpdateInProgress);
        }
        if self.running.state == AppState::PendingVerify {
            return Err(ModelError::RunningAppNotConfirmed {
                slot: self.running.slot,
            });
        }
        if size == 0 {
            return Err(ModelError::EmptyImage);
        }
        if size > self.cfg.slot_size {
            return Err(ModelError::ImageTooLarge {
                size,
                slot_size: self.cfg.slot_size,
            });
        }
        let slot = self.inactive_slot();
        let file = SlotFiles { slot }.erase_for_write(&self.flash.dir)?;
        self.flash.slots[slot.index() as usize] = SlotContent::Partial { written: 0 };
        self.update = Some(Update {
            slot,
            file,
            hasher: Sha256::new(),
            size,
            written: 0,
        });
        Ok(())
    }

    /// `esp_ota_write`: append `data` (any length) to the slot; it is on disk when this
    /// returns. The first byte must be the image magic, as ESP-IDF checks.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ModelError> {
        self.ensure_powered()?;
        let update = self.update.as_mut().ok_or(ModelError::NoUpdateInProgress)?;
        let len = data.len() as u64;
        if update.written + len > update.size {
            return Err(ModelError::WriteBeyondSize {
                len,
                size: update.size,
            });
        }
        if let (0, Some(&first)) = (update.written, data.first())
            && first != IMAGE_MAGIC
        {
            return Err(ModelError::BadMagic { found: first });
        }
        let path = SlotFiles { slot: update.slot }.partial(&self.flash.dir);
        update
            .file
            .write_all(data)
            .map_err(|e| ModelError::io("write", path, e))?;
        update.hasher.update(data);
        update.written += len;
        self.flash.slots[update.slot.index() as usize] = SlotContent::Partial {
            written: update.written,
        };
        Ok(())
    }

    /// Bytes written by the update in progress (0 when none).
    pub fn written(&self) -> u64 {
        self.update.as_ref().map_or(0, |u| u.written)
    }

    /// `esp_ota_end` plus the protocol's checks: every byte written, SHA-256 equal to
    /// `expected_sha`, and the image one this device's bootloader would load (chip, checksum,
    /// digest). The update ends either way; on success the slot holds the image.
    pub fn finish_update(&mut self, expected_sha: &[u8; 32]) -> Result<(), ModelError> {
        self.ensure_powered()?;
        let update = self.update.take().ok_or(ModelError::NoUpdateInProgress)?;
        if update.written != update.size {
            return Err(ModelError::Incomplete {
                written: update.written,
                size: update.size,
            });
        }
        let sha: [u8; 32] = update.hasher.finalize().into();
        if &sha != expected_sha {
            return Err(ModelError::ShaMismatch {
                expected: hex::encode(expected_sha),
                actual: hex::encode(sha),
            });
        }
        drop(update.file);
        let files = SlotFiles { slot: update.slot };
        let blobs = &self.flash.blobs;
        if blobs.contains(&sha) {
            // Same SHA-256, same bytes: check the stored copy's (cached) facts.
            blobs.facts(&sha)?.check_for(self.cfg.chip)?;
        } else {
            let path = files.partial(&self.flash.dir);
            let bytes = std::fs::read(&path).map_err(|e| ModelError::io("read", path, e))?;
            let facts = ImageFacts::examine(&bytes);
            facts.check_for(self.cfg.chip)?;
            blobs.put(&bytes)?;
            blobs.remember(sha, Arc::new(facts));
        }
        files.commit_image(&self.flash.dir, &sha)?;
        self.flash.slots[update.slot.index() as usize] = SlotContent::Image { sha256: sha };
        Ok(())
    }

    /// `esp_ota_abort`: end the update; what was written stays in the slot.
    pub fn abort_update(&mut self) {
        self.update = None;
    }

    /// `esp_ota_set_boot_partition(inactive slot)`: validate its image, then write the next
    /// otadata entry (the other sector, next sequence, NEW).
    pub fn set_boot_slot(&mut self) -> Result<(), ModelError> {
        self.ensure_powered()?;
        if self.update.is_some() {
            return Err(ModelError::UpdateInProgress);
        }
        let target = self.inactive_slot();
        self.flash.validate(target)?;
        let (sector, entry) = self.flash.otadata().read()?.boot_selection(target);
        self.write_otadata(sector, &entry)
    }

    /// `esp_ota_mark_app_valid_cancel_rollback`: mark the active otadata entry VALID (in
    /// place: its sector is erased and rewritten). A no-op when it already is.
    pub fn mark_valid(&mut self) -> Result<(), ModelError> {
        self.ensure_powered()?;
        let od = self.flash.otadata().read()?;
        let active = od.active().ok_or(ModelError::NoActiveOtadata)?;
        if od.entries[active].state != OtaState::Valid {
            let entry = od.entries[active].with_state(OtaState::Valid);
            self.write_otadata(active, &entry)?;
        }
        Ok(())
    }

    /// What the running app does after boot: an app that boots normally passes its
    /// self-test and confirms itself (`mark_valid` when pending); one that never confirms
    /// leaves the state as it is. Returns the state afterwards.
    pub fn self_test(&mut self) -> Result<AppState, ModelError> {
        self.ensure_powered()?;
        if self.running.behavior == SimBehavior::Boots
            && self.running.state == AppState::PendingVerify
        {
            self.mark_valid()?;
        }
        Ok(self.running.state)
    }

    /// A software reset (`esp_restart`, or the task watchdog): RAM is lost (an update in
    /// progress ends), then the bootloader runs.
    pub fn reboot(&mut self) -> Result<BootOutcome, ModelError> {
        self.power_on()
    }

    /// Power on (again) from what the disk holds; the same as [`Device::open`] on this
    /// handle. Also ends a power loss.
    pub fn power_on(&mut self) -> Result<BootOutcome, ModelError> {
        self.powered = false;
        self.update = None;
        let (running, outcome) = self.flash.boot()?;
        self.running = running;
        self.powered = true;
        Ok(outcome)
    }

    /// Power loss: everything not on disk is gone (an update in progress ends; what it wrote
    /// stays). Call [`Device::power_on`] or [`Device::open`] to boot again.
    pub fn power_loss(&mut self) {
        self.powered = false;
        self.update = None;
    }

    /// Fault injection: the next otadata write (by `set_boot_slot`, `mark_valid` or the
    /// bootloader) is torn by a power loss; that call returns [`ModelError::PowerLost`] and
    /// the device is off.
    pub fn arm_torn_otadata_write(&mut self, tear: Tear) {
        self.flash.tear = Some(tear);
    }

    /// `set_boot_slot` with power lost in the middle of its otadata write: the old entry
    /// stays in force. The device is off afterwards.
    pub fn set_boot_slot_torn(&mut self, tear: Tear) -> Result<(), ModelError> {
        self.arm_torn_otadata_write(tear);
        let result = self.set_boot_slot();
        self.flash.tear = None;
        match result {
            Ok(()) | Err(ModelError::PowerLost) => {
                self.power_loss();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A reboot during which power is lost: the bootloader's first otadata write (if it
    /// makes one) is torn. The device is off afterwards.
    pub fn reboot_torn(&mut self, tear: Tear) -> Result<(), ModelError> {
        self.arm_torn_otadata_write(tear);
        let result = self.reboot();
        self.flash.tear = None;
        self.power_loss();
        match result {
            Ok(_) | Err(ModelError::PowerLost) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// An estimate of the heap and inline bytes this device holds (for fleet memory budgets).
    pub fn approx_memory(&self) -> usize {
        std::mem::size_of::<Device>()
            + self.cfg.id.capacity()
            + self.flash.dir.as_os_str().len()
            + self.running.version.capacity()
            + self.running.project.capacity()
            + self
                .update
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<Update>())
    }

    fn ensure_powered(&self) -> Result<(), ModelError> {
        if self.powered {
            Ok(())
        } else {
            Err(ModelError::PoweredOff)
        }
    }

    fn write_otadata(
        &mut self,
        sector: usize,
        entry: &super::otadata::OtaEntry,
    ) -> Result<(), ModelError> {
        let otadata = self.flash.otadata();
        let result = otadata.write_entry(sector, entry, self.flash.tear.take());
        if matches!(result, Err(ModelError::PowerLost)) {
            self.power_loss();
        }
        result?;
        // The app reads its state from flash (`esp_ota_get_state_partition`) whenever it asks.
        self.running.state = app_state(&otadata.read()?, self.running.slot);
        Ok(())
    }
}

impl Flash {
    fn otadata(&self) -> OtadataFile {
        OtadataFile::new(self.dir.join(OTADATA_FILE))
    }

    /// The bootloader's image check for `slot` (the bytes on flash, for this chip).
    fn validate(&self, slot: Slot) -> Result<(Arc<ImageFacts>, [u8; 32]), ModelError> {
        match self.slots[slot.index() as usize] {
            SlotContent::Erased | SlotContent::Partial { written: 0 } => {
                Err(ModelError::NoImageInSlot { slot })
            }
            SlotContent::Image { sha256 } => {
                let facts = self.blobs.facts(&sha256)?;
                facts.check_for(self.chip)?;
                Ok((facts, sha256))
            }
            SlotContent::Partial { .. } => {
                let path = SlotFiles { slot }.partial(&self.dir);
                let bytes = std::fs::read(&path).map_err(|e| ModelError::io("read", path, e))?;
                let facts = ImageFacts::examine(&bytes);
                facts.check_for(self.chip)?;
                Ok((Arc::new(facts), Sha256::digest(&bytes).into()))
            }
        }
    }

    /// One power-on: bootloader, then the app, resolving crash-at-boot resets.
    fn boot(&mut self) -> Result<(RunningImage, BootOutcome), ModelError> {
        self.slots = [
            SlotFiles { slot: Slot::Ota0 }.load(&self.dir)?,
            SlotFiles { slot: Slot::Ota1 }.load(&self.dir)?,
        ];
        let otadata = self.otadata();
        let intended = otadata.read()?.selected_slot().unwrap_or(Slot::Ota0);
        let mut events = Vec::new();
        let mut crashes = 0;
        loop {
            let loaded = {
                let mut tear = self.tear.take();
                let this = &*self;
                let result =
                    bootloader::run(&otadata, &mut tear, &mut events, |slot| this.validate(slot));
                self.tear = tear;
                result?
            };
            let state = app_state(&otadata.read()?, loaded.slot);
            let facts = &loaded.facts;
            if facts.behavior == SimBehavior::CrashesAtBoot {
                crashes += 1;
                events.push(BootEvent::Crashed {
                    slot: loaded.slot,
                    version: facts.version.clone(),
                });
                // The next boot makes progress only by aborting a PENDING_VERIFY entry; with
                // none left the same app would be selected again and crash again. Each crash
                // retires one of the two entries, so the loop ends after at most two.
                let od = otadata.read()?;
                let progress = od
                    .entries
                    .iter()
                    .any(|e| e.state == OtaState::PendingVerify);
                if !progress || crashes > 2 {
                    return Err(ModelError::BootLoop {
                        slot: loaded.slot,
                        version: facts.version.clone(),
                    });
                }
                continue;
            }
            let running = RunningImage {
                slot: loaded.slot,
                sha256: loaded.sha256,
                size: facts.size,
                version: facts.version.clone(),
                project: facts.project.clone(),
                chip: self.chip,
                secure_version: facts.secure_version,
                state,
                behavior: facts.behavior,
            };
            let rolled_back = loaded.slot != intended;
            let reason = rolled_back.then(|| explain(&events, loaded.slot));
            let outcome = BootOutcome {
                slot: loaded.slot,
                rolled_back,
                reason,
                state,
                crashes,
                events,
            };
            return Ok((running, outcome));
        }
    }
}

/// The running app's state as `esp_ota_get_state_partition` reports it.
fn app_state(od: &Otadata, slot: Slot) -> AppState {
    match od.state_of(slot) {
        Some(OtaState::PendingVerify) => AppState::PendingVerify,
        _ => AppState::Valid,
    }
}

/// Sentences saying why the device ended up in `slot`.
fn explain(events: &[BootEvent], slot: Slot) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut last_crash: Option<Slot> = None;
    for event in events {
        match event {
            BootEvent::Crashed { slot, .. } => {
                parts.push(event.to_string());
                last_crash = Some(*slot);
            }
            BootEvent::Aborted { slot } if last_crash == Some(*slot) => {
                if let Some(last) = parts.last_mut() {
                    last.push_str(", so the bootloader marked it ABORTED");
                }
                last_crash = None;
            }
            BootEvent::Aborted { .. } | BootEvent::Rejected { .. } => parts.push(event.to_string()),
            BootEvent::MarkedPendingVerify { .. } | BootEvent::OtadataInitialised { .. } => {}
        }
    }
    parts.push(format!("rolled back to {slot}"));
    parts.join("; ")
}
