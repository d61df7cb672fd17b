//! The device model against ESP-IDF's rules: otadata CRC and selection, update, confirm,
//! rollback (crash at boot, never confirms, invalid image), power loss mid-write, torn
//! otadata writes, image rejection, persistence, blob sharing and memory per device.

use std::path::Path;
use std::sync::Arc;

use aegis_image::{Chip, Corruption, ImageBuilder, SimBehavior};
use aegis_sim::model::otadata::{OtaEntry, OtadataFile, ota_select_crc};
use aegis_sim::model::{
    AppState, BlobStore, BootEvent, Device, DeviceConfig, ModelError, OtaState, Slot, SlotContent,
    Tear,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const SIZE: u64 = 64 * 1024;

fn image(version: &str, behavior: SimBehavior) -> Vec<u8> {
    ImageBuilder::new(Chip::Esp32)
        .version(version)
        .project("lamp")
        .size(SIZE)
        .behavior(behavior)
        .build()
        .unwrap()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

struct Fleet {
    dir: TempDir,
    blobs: Arc<BlobStore>,
}

impl Fleet {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(BlobStore::open(dir.path()).unwrap());
        Fleet { dir, blobs }
    }

    fn device_dir(&self, id: &str) -> std::path::PathBuf {
        self.dir.path().join("devices").join(id)
    }

    fn cfg(id: &str) -> DeviceConfig {
        DeviceConfig::new(id, Chip::Esp32)
    }

    fn provision(&self, id: &str, factory: &[u8]) -> Device {
        Device::provision(
            &self.device_dir(id),
            Self::cfg(id),
            factory,
            Arc::clone(&self.blobs),
        )
        .unwrap()
    }

    fn open(&self, id: &str) -> (Device, aegis_sim::model::BootOutcome) {
        Device::open(&self.device_dir(id), Self::cfg(id), Arc::clone(&self.blobs)).unwrap()
    }

    fn blob_files(&self) -> usize {
        std::fs::read_dir(self.blobs.dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "bin")
            })
            .count()
    }
}

/// Download an image into the inactive slot in odd-sized chunks and finish it.
fn install(device: &mut Device, bytes: &[u8]) -> Result<(), ModelError> {
    device.begin_update(bytes.len() as u64)?;
    for chunk in bytes.chunks(3000) {
        device.write(chunk)?;
    }
    device.finish_update(&sha(bytes))
}

fn otadata_of(dir: &Path) -> aegis_sim::model::otadata::Otadata {
    OtadataFile::new(dir.join("otadata.bin")).read().unwrap()
}

const ID: &str = "a1b2c3d4e5f6";

#[test]
fn otadata_crc_is_esp_idfs() {
    // crc32_le(UINT32_MAX, &ota_seq, 4) as the ESP ROM computes it.
    assert_eq!(ota_select_crc(1), 0x4743_989a);
    assert_eq!(ota_select_crc(2), 0x55f6_3774);
    assert_eq!(ota_select_crc(3), 0xed4a_5011);
    assert_eq!(
        OtaEntry::new(1, OtaState::Valid).encode()[28..32],
        0x4743_989au32.to_le_bytes()
    );
}

#[test]
fn provisioning_boots_ota_0_and_writes_sequence_1_valid() {
    let fleet = Fleet::new();
    let dir = fleet.device_dir(ID);
    let (device, outcome) = Device::open_or_provision(
        &dir,
        Fleet::cfg(ID),
        &image("1.0.0", SimBehavior::Boots),
        Arc::clone(&fleet.blobs),
    )
    .unwrap();
    assert_eq!(outcome.slot, Slot::Ota0);
    assert!(!outcome.rolled_back);
    assert!(
        outcome
            .events
            .contains(&BootEvent::OtadataInitialised { slot: Slot::Ota0 })
    );
    let running = device.running();
    assert_eq!(
        (running.version.as_str(), running.project.as_str()),
        ("1.0.0", "lamp")
    );
    assert_eq!(running.state, AppState::Valid);
    assert_eq!(running.size, SIZE);
    assert_eq!(device.inactive_slot_size(), 0x18_0000);
    let raw = std::fs::read(dir.join("otadata.bin")).unwrap();
    assert_eq!(raw.len(), 8192);
    assert_eq!(&raw[0..4], &1u32.to_le_bytes());
    assert_eq!(&raw[24..28], &2u32.to_le_bytes(), "VALID");
    assert_eq!(&raw[28..32], &0x4743_989au32.to_le_bytes());
    assert!(
        raw[4096..].iter().all(|&b| b == 0xff),
        "sector 1 stays erased"
    );
}

#[test]
fn update_confirm_and_power_cycle() {
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    let v2 = image("2.0.0", SimBehavior::Boots);
    install(&mut device, &v2).unwrap();
    assert_eq!(
        device.slot_content(Slot::Ota1),
        SlotContent::Image { sha256: sha(&v2) }
    );
    device.set_boot_slot().unwrap();
    let od = device.otadata().unwrap();
    assert_eq!((od.entries[1].seq, od.entries[1].state), (2, OtaState::New));
    assert_eq!(
        device.running().version,
        "1.0.0",
        "nothing changes before the reboot"
    );

    let outcome = device.reboot().unwrap();
    assert_eq!(
        (outcome.slot, outcome.rolled_back, outcome.state),
        (Slot::Ota1, false, AppState::PendingVerify)
    );
    assert_eq!(
        device.otadata().unwrap().entries[1].state,
        OtaState::PendingVerify
    );
    assert_eq!(device.running().sha256, sha(&v2));
    assert_eq!(device.self_test().unwrap(), AppState::Valid);
    assert_eq!(device.otadata().unwrap().entries[1].state, OtaState::Valid);

    drop(device);
    let (mut device, outcome) = fleet.open(ID);
    assert_eq!(
        (outcome.slot, outcome.rolled_back, outcome.state),
        (Slot::Ota1, false, AppState::Valid)
    );
    assert_eq!(device.running().version, "2.0.0");

    // The next update goes to ota_0 with sequence 3, written to sector 0.
    install(&mut device, &image("3.0.0", SimBehavior::Boots)).unwrap();
    device.set_boot_slot().unwrap();
    assert_eq!(device.otadata().unwrap().entries[0].seq, 3);
    device.reboot().unwrap();
    device.mark_valid().unwrap();
    device.mark_valid().unwrap(); // already VALID: no-op
    assert_eq!(
        (device.running().slot, device.running().version.as_str()),
        (Slot::Ota0, "3.0.0")
    );
}

#[test]
fn crash_at_boot_rolls_back_with_a_reason() {
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    install(&mut device, &image("2.0.0", SimBehavior::CrashesAtBoot)).unwrap();
    device.set_boot_slot().unwrap();
    let outcome = device.reboot().unwrap();
    assert_eq!(outcome.slot, Slot::Ota0);
    assert!(outcome.rolled_back);
    assert_eq!(outcome.crashes, 1);
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains("ota_1 (version 2.0.0) crashed at boot"),
        "{reason}"
    );
    assert!(reason.contains("ABORTED"), "{reason}");
    assert_eq!(device.running().version, "1.0.0");
    assert_eq!(device.running().state, AppState::Valid);
    assert_eq!(
        device.otadata().unwrap().entries[1].state,
        OtaState::Aborted
    );

    // Stable afterwards, and the next update works.
    let outcome = device.reboot().unwrap();
    assert!(!outcome.rolled_back && outcome.reason.is_none());
    install(&mut device, &image("2.0.1", SimBehavior::Boots)).unwrap();
    device.set_boot_slot().unwrap();
    let od = device.otadata().unwrap();
    assert_eq!((od.entries[1].seq, od.entries[1].state), (2, OtaState::New));
    assert_eq!(device.reboot().unwrap().slot, Slot::Ota1);
}

#[test]
fn never_confirming_app_rolls_back_at_the_next_reset() {
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    install(&mut device, &image("2.0.0", SimBehavior::NeverConfirms)).unwrap();
    device.set_boot_slot().unwrap();
    let outcome = device.reboot().unwrap();
    assert_eq!((outcome.slot, outcome.rolled_back), (Slot::Ota1, false));
    assert_eq!(device.self_test().unwrap(), AppState::PendingVerify);
    assert!(matches!(
        device.begin_update(SIZE),
        Err(ModelError::RunningAppNotConfirmed { slot: Slot::Ota1 })
    ));
    // Task watchdog.
    let outcome = device.reboot().unwrap();
    assert_eq!(outcome.slot, Slot::Ota0);
    assert!(outcome.rolled_back);
    assert!(outcome.reason.unwrap().contains("reset before confirming"));
    assert_eq!(outcome.events[0], BootEvent::Aborted { slot: Slot::Ota1 });
    assert_eq!(device.running().version, "1.0.0");
}

#[test]
fn power_loss_mid_write_keeps_the_old_image_and_the_next_update_works() {
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    let v2 = image("2.0.0", SimBehavior::Boots);
    device.begin_update(SIZE).unwrap();
    device.write(&v2[..10_000]).unwrap();
    assert_eq!(device.written(), 10_000);
    device.power_loss();
    assert!(matches!(
        device.write(&v2[10_000..20_000]),
        Err(ModelError::PoweredOff)
    ));
    drop(device);

    let (mut device, outcome) = fleet.open(ID);
    assert_eq!((outcome.slot, outcome.rolled_back), (Slot::Ota0, false));
    assert_eq!(device.running().version, "1.0.0");
    assert_eq!(
        device.slot_content(Slot::Ota1),
        SlotContent::Partial { written: 10_000 }
    );
    let partial = std::fs::read(fleet.device_dir(ID).join("ota_1.partial")).unwrap();
    assert_eq!(partial, &v2[..10_000], "exactly what was written");
    assert!(matches!(
        device.set_boot_slot(),
        Err(ModelError::InvalidImage(_))
    ));

    install(&mut device, &v2).unwrap();
    device.set_boot_slot().unwrap();
    assert_eq!(device.reboot().unwrap().slot, Slot::Ota1);
    assert!(!fleet.device_dir(ID).join("ota_1.partial").exists());
}

#[test]
fn torn_boot_selection_leaves_the_old_entry_in_force() {
    for tear in [Tear::AfterErase, Tear::MidWrite] {
        let fleet = Fleet::new();
        let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
        install(&mut device, &image("2.0.0", SimBehavior::Boots)).unwrap();
        device.set_boot_slot_torn(tear).unwrap();
        assert!(!device.is_powered());
        let od = otadata_of(&fleet.device_dir(ID));
        assert!(!od.entries[1].is_valid(), "{tear:?}");
        let (mut device, outcome) = fleet.open(ID);
        assert_eq!(
            (outcome.slot, outcome.rolled_back),
            (Slot::Ota0, false),
            "{tear:?}"
        );
        // The complete image is still in ota_1: selecting it again works.
        device.set_boot_slot().unwrap();
        assert_eq!(device.reboot().unwrap().slot, Slot::Ota1);
    }
}

#[test]
fn power_loss_while_the_bootloader_marks_pending_loses_the_new_entry() {
    // The bootloader erases the sector to rewrite NEW as PENDING_VERIFY; losing power there
    // leaves the sector blank, so the previous entry boots (ESP-IDF behaves the same).
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    install(&mut device, &image("2.0.0", SimBehavior::Boots)).unwrap();
    device.set_boot_slot().unwrap();
    device.reboot_torn(Tear::AfterErase).unwrap();
    assert!(matches!(device.mark_valid(), Err(ModelError::PoweredOff)));
    let outcome = device.power_on().unwrap();
    assert_eq!(outcome.slot, Slot::Ota0);
    assert_eq!(device.running().version, "1.0.0");
}

#[test]
fn torn_confirmation_falls_back_to_the_older_entry() {
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    install(&mut device, &image("2.0.0", SimBehavior::Boots)).unwrap();
    device.set_boot_slot().unwrap();
    device.reboot().unwrap();
    device.arm_torn_otadata_write(Tear::MidWrite);
    assert!(matches!(device.mark_valid(), Err(ModelError::PowerLost)));
    let (_, outcome) = fleet.open(ID);
    assert_eq!(outcome.slot, Slot::Ota0);
}

#[test]
fn finish_update_rejects_bad_images_precisely() {
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    let build = |chip: Chip, corruption: Option<Corruption>| {
        let mut b = ImageBuilder::new(chip).version("2.0.0").size(SIZE);
        if let Some(c) = corruption {
            b = b.corrupt(c);
        }
        b.build().unwrap()
    };

    let err = install(&mut device, &build(Chip::Esp32s3, None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "image is for esp32s3 but this device is an esp32"
    );
    assert!(matches!(
        install(
            &mut device,
            &build(Chip::Esp32, Some(Corruption::BadChecksum))
        ),
        Err(ModelError::BadChecksum)
    ));
    assert!(matches!(
        install(
            &mut device,
            &build(Chip::Esp32, Some(Corruption::BadDigest))
        ),
        Err(ModelError::BadDigest)
    ));

    let good = image("2.0.0", SimBehavior::Boots);
    device.begin_update(SIZE).unwrap();
    device.write(&good).unwrap();
    let mut wrong = sha(&good);
    wrong[0] ^= 1;
    assert!(matches!(
        device.finish_update(&wrong),
        Err(ModelError::ShaMismatch { .. })
    ));

    device.begin_update(SIZE).unwrap();
    device.write(&good[..100]).unwrap();
    assert!(matches!(
        device.finish_update(&sha(&good)),
        Err(ModelError::Incomplete {
            written: 100,
            size: SIZE
        })
    ));

    device.begin_update(SIZE).unwrap();
    assert!(matches!(
        device.write(&[0u8; 16]),
        Err(ModelError::BadMagic { found: 0 })
    ));
    device.abort_update();
    assert!(matches!(
        device.begin_update(0x18_0001),
        Err(ModelError::ImageTooLarge {
            size: 0x18_0001,
            slot_size: 0x18_0000
        })
    ));
    device.begin_update(10).unwrap();
    assert!(matches!(
        device.write(&good[..11]),
        Err(ModelError::WriteBeyondSize { .. })
    ));
    device.abort_update();

    // None of it was selected for boot.
    assert!(matches!(
        device.set_boot_slot(),
        Err(ModelError::NoImageInSlot { slot: Slot::Ota1 })
    ));
    assert_eq!(device.reboot().unwrap().slot, Slot::Ota0);
}

#[test]
fn bootloader_falls_back_when_the_selected_image_is_invalid() {
    // Damage made behind the model's back: ota_1 holds a corrupt image and otadata selects it.
    let fleet = Fleet::new();
    let device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    drop(device);
    let dir = fleet.device_dir(ID);
    let bad = ImageBuilder::new(Chip::Esp32)
        .size(SIZE)
        .corrupt(Corruption::BadChecksum)
        .build()
        .unwrap();
    std::fs::write(dir.join("ota_1.partial"), &bad).unwrap();
    OtadataFile::new(dir.join("otadata.bin"))
        .write_entry(1, &OtaEntry::new(2, OtaState::New), None)
        .unwrap();
    let (device, outcome) = fleet.open(ID);
    assert_eq!(outcome.slot, Slot::Ota0);
    assert!(outcome.rolled_back);
    assert!(
        outcome
            .reason
            .unwrap()
            .contains("ota_1 failed boot validation")
    );
    assert_eq!(device.running().version, "1.0.0");
}

#[test]
fn provisioning_and_opening_check_the_directory() {
    let fleet = Fleet::new();
    let factory = image("1.0.0", SimBehavior::Boots);
    let dir = fleet.device_dir(ID);
    assert!(matches!(
        Device::open(&dir, Fleet::cfg(ID), Arc::clone(&fleet.blobs)),
        Err(ModelError::NotProvisioned { .. })
    ));
    fleet.provision(ID, &factory);
    assert!(matches!(
        Device::provision(&dir, Fleet::cfg(ID), &factory, Arc::clone(&fleet.blobs)),
        Err(ModelError::AlreadyProvisioned { .. })
    ));
    let other_chip = DeviceConfig::new(ID, Chip::Esp32c3);
    assert!(matches!(
        Device::open(&dir, other_chip, Arc::clone(&fleet.blobs)),
        Err(ModelError::ConfigMismatch { .. })
    ));
    assert!(matches!(
        Device::provision(
            &fleet.device_dir("x"),
            DeviceConfig::new("ABC", Chip::Esp32),
            &factory,
            Arc::clone(&fleet.blobs)
        ),
        Err(ModelError::InvalidDeviceId(_))
    ));
    let (_, outcome) =
        Device::open_or_provision(&dir, Fleet::cfg(ID), &factory, Arc::clone(&fleet.blobs))
            .unwrap();
    assert_eq!(outcome.slot, Slot::Ota0);
}

#[test]
fn identical_images_are_stored_once_across_the_fleet() {
    let fleet = Fleet::new();
    let factory = image("1.0.0", SimBehavior::Boots);
    let mut a = fleet.provision("000000000001", &factory);
    let mut b = fleet.provision("000000000002", &factory);
    assert_eq!(fleet.blob_files(), 1);
    let v2 = image("2.0.0", SimBehavior::Boots);
    install(&mut a, &v2).unwrap();
    install(&mut b, &v2).unwrap();
    assert_eq!(fleet.blob_files(), 2);
    assert_eq!(fleet.blobs.get(&sha(&v2)).unwrap(), v2);
    assert_eq!(fleet.blobs.put(&v2).unwrap(), sha(&v2));
    assert_eq!(fleet.blob_files(), 2);
}

#[test]
fn an_idle_device_holds_metadata_only() {
    let fleet = Fleet::new();
    let device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    // A 64 KiB image is running; the device itself stays well under 1 KiB.
    assert!(device.approx_memory() < 1024, "{}", device.approx_memory());
    assert!(std::mem::size_of::<Device>() < 512);
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Update(u8),
    PowerLossMidWrite(u16),
    TornSetBoot(bool),
    RebootTorn,
    Reboot,
    SelfTest,
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..3).prop_map(Op::Update),
        (1u16..1000).prop_map(Op::PowerLossMidWrite),
        any::<bool>().prop_map(Op::TornSetBoot),
        Just(Op::RebootTorn),
        Just(Op::Reboot),
        Just(Op::SelfTest),
        Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever happens (updates rebooted into at once, power losses, torn otadata writes),
    /// the device comes back running one of the images it was given, never a crashing one,
    /// and what it reports agrees with otadata.
    #[test]
    fn any_sequence_of_updates_and_faults_leaves_a_bootable_device(ops in proptest::collection::vec(op(), 1..12)) {
        let fleet = Fleet::new();
        let images = [
            image("2.0.0", SimBehavior::Boots),
            image("3.0.0", SimBehavior::CrashesAtBoot),
            image("4.0.0", SimBehavior::NeverConfirms),
        ];
        let factory = image("1.0.0", SimBehavior::Boots);
        let mut device = fleet.provision(ID, &factory);
        for op in ops {
            if !device.is_powered() {
                device.power_on().unwrap();
            }
            let pending = device.running().state == AppState::PendingVerify;
            match op {
                // As the network side does it: write, select, reboot at once.
                Op::Update(i) => match install(&mut device, &images[usize::from(i)]) {
                    Ok(()) => {
                        device.set_boot_slot().unwrap();
                        device.reboot().unwrap();
                    }
                    Err(ModelError::RunningAppNotConfirmed { .. }) => assert!(pending),
                    Err(e) => panic!("{e}"),
                },
                Op::PowerLossMidWrite(permille) => {
                    if !pending {
                        device.begin_update(SIZE).unwrap();
                        let cut = SIZE as usize * usize::from(permille) / 1000;
                        device.write(&images[0][..cut]).unwrap();
                    }
                    device.power_loss();
                }
                Op::TornSetBoot(mid) => {
                    if !pending && install(&mut device, &images[0]).is_ok() {
                        let tear = if mid { Tear::MidWrite } else { Tear::AfterErase };
                        device.set_boot_slot_torn(tear).unwrap();
                    }
                }
                Op::RebootTorn => device.reboot_torn(Tear::AfterErase).unwrap(),
                Op::Reboot => {
                    device.reboot().unwrap();
                }
                Op::SelfTest => {
                    device.self_test().unwrap();
                }
                Op::Reopen => {
                    drop(device);
                    device = fleet.open(ID).0;
                }
            }
            if device.is_powered() {
                let running = device.running().clone();
                let known = [&factory, &images[0], &images[2]].iter().any(|i| sha(i) == running.sha256);
                assert!(known, "running an unknown or crashing image");
                let od = device.otadata().unwrap();
                let expected = match od.state_of(running.slot) {
                    Some(OtaState::PendingVerify) => AppState::PendingVerify,
                    _ => AppState::Valid,
                };
                assert_eq!(running.state, expected);
            }
        }
    }
}

#[test]
fn selecting_the_same_slot_twice_then_crashing_still_recovers() {
    // Two updates of ota_1 without a reboot between: ESP-IDF writes sequence 2 into both
    // sectors, losing the ota_0 entry. Both crash-aborts later, the bootloader finds both
    // entries invalid and falls back to ota_0.
    let fleet = Fleet::new();
    let mut device = fleet.provision(ID, &image("1.0.0", SimBehavior::Boots));
    install(&mut device, &image("2.0.0", SimBehavior::Boots)).unwrap();
    device.set_boot_slot().unwrap();
    install(&mut device, &image("3.0.0", SimBehavior::CrashesAtBoot)).unwrap();
    device.set_boot_slot().unwrap();
    let od = device.otadata().unwrap();
    assert_eq!((od.entries[0].seq, od.entries[1].seq), (2, 2));
    let outcome = device.reboot().unwrap();
    assert_eq!((outcome.slot, outcome.crashes), (Slot::Ota0, 2));
    assert!(outcome.rolled_back);
    assert_eq!(device.running().version, "1.0.0");
}
