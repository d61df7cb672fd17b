//! The deploy command: the `POST /aegis/v1/ota` body, its validation and the signed message.
//!
//! [`Trigger::parse`] is what a device runs on the raw body; every failure is a
//! [`TriggerError`], which the device answers with 400 and the error's [`code`](TriggerError::code).
//! The server builds a [`Trigger`], [`signs`](Trigger::sign) it for one device and sends
//! [`to_body`](Trigger::to_body).
//!
//! Rules beyond the field list in PROTOCOL.md, all chosen so the signed message has exactly one
//! reading:
//! - hex fields are lower case (`hash` 64 digits, `nonce` 32, `sig` 128);
//! - `url` and `report` are absolute `http://` or `https://` URLs of printable ASCII without
//!   spaces; `version` and `deployment` contain no control characters (so no field can contain
//!   the `\n` that separates the lines of the signed message);
//! - `deployment` is 1 to 64 characters (Unicode scalar values); `size` is an integer > 0;
//! - `allow_downgrade` is optional and defaults to `false`; `report`, `nonce` and `sig` are
//!   optional, and JSON `null` counts as absent; unknown fields are ignored;
//! - a trigger carrying `sig` must carry `nonce` (missing_field otherwise).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::device::excerpt;
use crate::ids::{DeviceId, HexError, Nonce, Sha256Hex};
use crate::keys::{PublicKey, Signature, SignatureError, SigningKey};
use crate::{MAX_DEPLOYMENT_CHARS, MAX_TRIGGER_BODY, MESSAGE_TAG};

/// Why a trigger body is malformed. Every variant is answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The body is larger than 4 KiB.
    #[error("The request body is {len} bytes; a trigger may be at most 4096 bytes.")]
    BodyTooLarge {
        /// Body length in bytes.
        len: usize,
    },
    /// The body is not a JSON object.
    #[error("The request body is not a JSON object: {detail}.")]
    MalformedJson {
        /// What the JSON parser said.
        detail: String,
    },
    /// A required field is absent (or null).
    #[error("The required field \"{field}\" is missing.")]
    MissingField {
        /// Field name.
        field: &'static str,
    },
    /// `sig` is present but `nonce` is not.
    #[error("The field \"nonce\" is required when the trigger is signed.")]
    NonceRequired,
    /// A field has the wrong JSON type.
    #[error("The field \"{field}\" must be {expected}.")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// The expected JSON type, as words.
        expected: &'static str,
    },
    /// A hex field is not the right number of lower-case hex digits.
    #[error("The field \"{field}\" is not valid: {source}.")]
    BadHex {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        source: HexError,
    },
    /// A field has the right type but a value the protocol does not allow.
    #[error("The field \"{field}\" is not valid: {reason}.")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl TriggerError {
    /// The HTTP status a device answers with: always 400.
    pub fn status(&self) -> u16 {
        400
    }

    /// The snake_case error code.
    pub fn code(&self) -> &'static str {
        match self {
            TriggerError::BodyTooLarge { .. } => "body_too_large",
            TriggerError::MalformedJson { .. } => "malformed_json",
            TriggerError::MissingField { .. } | TriggerError::NonceRequired => "missing_field",
            TriggerError::BadHex { .. } => "bad_hex",
            TriggerError::WrongType { .. } | TriggerError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// A deploy command (`POST /aegis/v1/ota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(try_from = "Value")]
pub struct Trigger {
    /// Where the device GETs the image.
    pub url: String,
    /// SHA-256 of the whole image file.
    pub hash: Sha256Hex,
    /// The image's app version.
    pub version: String,
    /// Exact image length in bytes.
    pub size: u64,
    /// Opaque deployment id, 1 to 64 characters.
    pub deployment: String,
    /// Where the device may POST progress reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// The nonce from the device's `/info` (required when signed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
    /// Whether an older version may replace the running one.
    pub allow_downgrade: bool,
    /// ECDSA P-256 signature over [`Trigger::signed_message`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<Signature>,
}

fn check_url(field: &'static str, url: &str) -> Result<(), TriggerError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let invalid = |reason: &str| TriggerError::InvalidField {
        field,
        reason: reason.to_owned(),
    };
    match rest {
        None => Err(invalid("it must start with http:// or https://")),
        Some("") => Err(invalid("it has no host")),
        Some(_) if !url.bytes().all(|b| (0x21..=0x7e).contains(&b)) => Err(invalid(
            "it may contain only printable ASCII characters and no spaces",
        )),
        Some(_) => Ok(()),
    }
}

fn check_text(field: &'static str, text: &str) -> Result<(), TriggerError> {
    if text.chars().any(char::is_control) {
        return Err(TriggerError::InvalidField {
            field,
            reason: "it must not contain control characters such as newlines".to_owned(),
        });
    }
    Ok(())
}

/// Reads fields out of a JSON object with precise errors.
struct Fields(Map<String, Value>);

impl Fields {
    /// The field's value, or `None` when absent or null.
    fn get(&self, field: &'static str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    fn required(&self, field: &'static str) -> Result<&Value, TriggerError> {
        self.get(field).ok_or(TriggerError::MissingField { field })
    }

    fn string(v: &Value, field: &'static str) -> Result<String, TriggerError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or(TriggerError::WrongType {
                field,
                expected: "a string",
            })
    }

    fn required_string(&self, field: &'static str) -> Result<String, TriggerError> {
        Self::string(self.required(field)?, field)
    }

    fn optional_string(&self, field: &'static str) -> Result<Option<String>, TriggerError> {
        self.get(field).map(|v| Self::string(v, field)).transpose()
    }
}

fn hex_field<T>(
    field: &'static str,
    value: String,
    parse: impl FnOnce(&str) -> Result<T, HexError>,
) -> Result<T, TriggerError> {
    parse(&value).map_err(|source| TriggerError::BadHex { field, source })
}

impl TryFrom<Value> for Trigger {
    type Error = TriggerError;

    fn try_from(value: Value) -> Result<Trigger, TriggerError> {
        let Value::Object(map) = value else {
            return Err(TriggerError::MalformedJson {
                detail: "the top level must be an object".to_owned(),
            });
        };
        let f = Fields(map);
        let url = f.required_string("url")?;
        let hash = hex_field("hash", f.required_string("hash")?, Sha256Hex::parse)?;
        let version = f.required_string("version")?;
        let size = f
            .required("size")?
            .as_u64()
            .ok_or(TriggerError::WrongType {
                field: "size",
                expected: "a whole number of bytes",
            })?;
        let deployment = f.required_string("deployment")?;
        let report = f.optional_string("report")?;
        let nonce = f
            .optional_string("nonce")?
            .map(|n| hex_field("nonce", n, Nonce::parse))
            .transpose()?;
        let allow_downgrade = match f.get("allow_downgrade") {
            None => false,
            Some(v) => v.as_bool().ok_or(TriggerError::WrongType {
                field: "allow_downgrade",
                expected: "true or false",
            })?,
        };
        let sig = f
            .optional_string("sig")?
            .map(|s| hex_field("sig", s, Signature::parse))
            .transpose()?;
        let trigger = Trigger {
            url,
            hash,
            version,
            size,
            deployment,
            report,
            nonce,
            allow_downgrade,
            sig,
        };
        trigger.validate()?;
        Ok(trigger)
    }
}

impl Trigger {
    /// Parses and validates a raw request body (what a device does first).
    pub fn parse(body: &[u8]) -> Result<Trigger, TriggerError> {
        if body.len() > MAX_TRIGGER_BODY {
            return Err(TriggerError::BodyTooLarge { len: body.len() });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| TriggerError::MalformedJson {
                detail: excerpt(&e.to_string()),
            })?;
        Trigger::try_from(value)
    }

    /// Checks the rules that the field types do not already guarantee.
    pub fn validate(&self) -> Result<(), TriggerError> {
        check_url("url", &self.url)?;
        check_text("version", &self.version)?;
        let chars = self.deployment.chars().count();
        if chars == 0 || chars > MAX_DEPLOYMENT_CHARS {
            return Err(TriggerError::InvalidField {
                field: "deployment",
                reason: format!("it must be 1 to {MAX_DEPLOYMENT_CHARS} characters, not {chars}"),
            });
        }
        check_text("deployment", &self.deployment)?;
        if self.size == 0 {
            return Err(TriggerError::InvalidField {
                field: "size",
                reason: "it must be greater than zero".to_owned(),
            });
        }
        if let Some(report) = &self.report {
            check_url("report", report)?;
        }
        if self.sig.is_some() && self.nonce.is_none() {
            return Err(TriggerError::NonceRequired);
        }
        Ok(())
    }

    /// The exact text that is signed for the device `device_id`: the lines `aegis-ota/1`, id,
    /// url, hash, size (decimal), version, deployment, nonce (empty when absent),
    /// allow_downgrade (`0` or `1`), joined by `\n`, with no trailing newline.
    pub fn signed_message(&self, device_id: &DeviceId) -> String {
        let size = self.size.to_string();
        let nonce = self.nonce.as_ref().map_or("", Nonce::as_str);
        let lines = [
            MESSAGE_TAG,
            device_id.as_str(),
            &self.url,
            self.hash.as_str(),
            &size,
            &self.version,
            &self.deployment,
            nonce,
            if self.allow_downgrade { "1" } else { "0" },
        ];
        lines.join("\n")
    }

    /// Validates the trigger and signs it for `device_id`, setting `sig`. A signed trigger
    /// needs a nonce ([`TriggerError::NonceRequired`] otherwise).
    pub fn sign(&mut self, device_id: &DeviceId, key: &SigningKey) -> Result<(), TriggerError> {
        if self.nonce.is_none() {
            return Err(TriggerError::NonceRequired);
        }
        self.sig = None;
        self.validate()?;
        self.sig = Some(key.sign(self.signed_message(device_id).as_bytes()));
        Ok(())
    }

    /// Checks `sig` for `device_id` against `key`; an absent signature does not verify.
    pub fn verify(&self, device_id: &DeviceId, key: &PublicKey) -> Result<(), SignatureError> {
        let sig = self.sig.as_ref().ok_or(SignatureError)?;
        key.verify(self.signed_message(device_id).as_bytes(), sig)
    }

    /// The JSON body to POST, after validation; fails if it would exceed 4 KiB.
    pub fn to_body(&self) -> Result<String, TriggerError> {
        self.validate()?;
        let body = serde_json::to_string(self).map_err(|e| TriggerError::MalformedJson {
            detail: e.to_string(),
        })?;
        if body.len() > MAX_TRIGGER_BODY {
            return Err(TriggerError::BodyTooLarge { len: body.len() });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trigger {
        Trigger {
            url: "http://10.0.0.5:3001/fw/x.bin".into(),
            hash: Sha256Hex::digest(b"x"),
            version: "2.0.0".into(),
            size: 10,
            deployment: "d1".into(),
            report: None,
            nonce: None,
            allow_downgrade: false,
            sig: None,
        }
    }

    #[test]
    fn unsigned_message_has_empty_nonce_line() {
        let id = DeviceId::parse("240ac4123456").unwrap();
        let msg = sample().signed_message(&id);
        let lines: Vec<&str> = msg.split('\n').collect();
        assert_eq!(lines.len(), 9);
        assert_eq!(lines[7], "");
        assert_eq!(lines[8], "0");
        assert!(!msg.ends_with('\n'));
    }

    #[test]
    fn sign_requires_nonce() {
        let id = DeviceId::parse("240ac4123456").unwrap();
        let mut t = sample();
        assert_eq!(
            t.sign(&id, &SigningKey::generate()),
            Err(TriggerError::NonceRequired)
        );
    }

    #[test]
    fn urls() {
        for ok in ["http://h/x", "https://10.0.0.5:3001/fw/a.bin?x=1"] {
            assert!(check_url("url", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://h",
            "http://",
            "http://h/a b",
            "http://h/\n",
            "http://hé",
        ] {
            assert!(check_url("url", bad).is_err(), "{bad:?}");
        }
    }
}
