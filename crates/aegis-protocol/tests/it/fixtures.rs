//! Shared values: the fixed test-vector key and trigger, and a device that trusts it.

use aegis_protocol::{
    DeviceId, DeviceState, DeviceView, Nonce, PublicKey, Sha256Hex, SigningKey, Trigger,
};

pub const PRIVATE_KEY_HEX: &str =
    "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
pub const DEVICE_ID: &str = "240ac4123456";
pub const NONCE: &str = "000102030405060708090a0b0c0d0e0f";

pub fn key() -> SigningKey {
    SigningKey::from_hex(PRIVATE_KEY_HEX).unwrap()
}

pub fn device_id() -> DeviceId {
    DeviceId::parse(DEVICE_ID).unwrap()
}

pub fn nonce() -> Nonce {
    Nonce::parse(NONCE).unwrap()
}

/// The test vector's trigger, unsigned.
pub fn trigger() -> Trigger {
    let hash = Sha256Hex::digest(b"aegis-ota test vector image");
    Trigger {
        url: format!("http://10.0.0.5:3001/fw/{hash}.bin"),
        hash,
        version: "2.0.0".into(),
        size: 1_048_576,
        deployment: "rollout-0001".into(),
        report: Some("http://10.0.0.5:3001/api/v1/report".into()),
        nonce: Some(nonce()),
        allow_downgrade: false,
        sig: None,
    }
}

/// The test vector's trigger, signed for [`DEVICE_ID`].
pub fn signed_trigger() -> Trigger {
    let mut t = trigger();
    t.sign(&device_id(), &key()).unwrap();
    t
}

/// The parts a [`DeviceView`] borrows.
pub struct Device {
    pub id: DeviceId,
    pub key: Option<PublicKey>,
    pub nonce: Option<Nonce>,
    pub version: String,
    pub state: DeviceState,
    pub slot_size: u64,
}

impl Device {
    /// An idle device running 1.0.0 with a 1.5 MiB slot that trusts the vector key and has
    /// handed out the vector nonce.
    pub fn trusting() -> Device {
        Device {
            id: device_id(),
            key: Some(key().public_key()),
            nonce: Some(nonce()),
            version: "1.0.0".into(),
            state: DeviceState::Idle,
            slot_size: 0x18_0000,
        }
    }

    /// The same device built without a key.
    pub fn open() -> Device {
        Device {
            key: None,
            ..Device::trusting()
        }
    }

    pub fn view(&self) -> DeviceView<'_> {
        DeviceView {
            id: &self.id,
            trusted_key: self.key.as_ref(),
            current_nonce: self.nonce.as_ref(),
            running_version: &self.version,
            state: self.state,
            slot_size: self.slot_size,
        }
    }
}
