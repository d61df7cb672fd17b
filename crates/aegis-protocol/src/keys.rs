//! ECDSA P-256 keys, fingerprints and signatures, in the forms PROTOCOL.md fixes.
//!
//! - A signature is ECDSA over NIST P-256 with SHA-256 of the message, written as the 64 raw
//!   bytes r||s (big-endian) in hex. Signing is deterministic (RFC 6979), so the same key and
//!   message always give the same signature; the fixed test vector in docs/protocol.md relies
//!   on that.
//! - A public key is the 65-byte uncompressed SEC1 point (`04 || X || Y`).
//! - A key's fingerprint is SHA-256 over those 65 bytes; the TXT `key` value ([`KeyId`]) is the
//!   first 16 hex digits of the fingerprint.
//! - A private key is the 32-byte big-endian scalar; PKCS#8 PEM is offered for files.

use std::fmt;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{HexError, KeyId, check_lower_hex};

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The private key is not a 32-byte scalar in `1..n`.
    #[error(
        "the private key is not a valid P-256 scalar (32 bytes, not zero, below the group order)"
    )]
    InvalidPrivateKey,
    /// The public key is not a 65-byte uncompressed SEC1 point on P-256.
    #[error(
        "the public key is not a 65-byte uncompressed P-256 point (130 hex digits starting with 04)"
    )]
    InvalidPublicKey,
    /// The text is not hex.
    #[error("the key is not valid hex: {0}")]
    Hex(String),
    /// The PEM text could not be decoded.
    #[error("the PEM key could not be read: {0}")]
    Pem(String),
}

/// A signature that does not verify (or cannot be a P-256 signature at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not verify against the trusted public key")]
pub struct SignatureError;

/// A server signing key (ECDSA P-256). Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct SigningKey(p256::ecdsa::SigningKey);

impl SigningKey {
    /// A new random key from the operating system's random number generator (panics only if
    /// the OS cannot provide randomness at all).
    pub fn generate() -> Self {
        Self(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// The key with this 32-byte big-endian scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        p256::ecdsa::SigningKey::from_slice(bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPrivateKey)
    }

    /// The key from 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|e| KeyError::Hex(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// The 32-byte big-endian scalar. Keep it secret.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    /// The key as a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_owned())
            .map_err(|e| KeyError::Pem(e.to_string()))
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| KeyError::Pem(e.to_string()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// Signs `message` (SHA-256, deterministic per RFC 6979).
    pub fn sign(&self, message: &[u8]) -> Signature {
        let sig: p256::ecdsa::Signature = self.0.sign(message);
        Signature(sig.to_bytes().into())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

/// A public key a device trusts (ECDSA P-256).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(p256::ecdsa::VerifyingKey);

impl PublicKey {
    /// Length of the uncompressed SEC1 encoding.
    pub const SEC1_LEN: usize = 65;

    /// Reads the 65-byte uncompressed SEC1 point.
    pub fn from_sec1_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != Self::SEC1_LEN || bytes.first() != Some(&0x04) {
            return Err(KeyError::InvalidPublicKey);
        }
        p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPublicKey)
    }

    /// Reads the 65-byte uncompressed SEC1 point from 130 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|e| KeyError::Hex(e.to_string()))?;
        Self::from_sec1_bytes(&bytes)
    }

    /// Reads a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM document.
    pub fn from_public_key_pem(pem: &str) -> Result<Self, KeyError> {
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(Self)
            .map_err(|e| KeyError::Pem(e.to_string()))
    }

    /// The key as a `-----BEGIN PUBLIC KEY-----` PEM document (what mbedTLS
    /// `mbedtls_pk_parse_public_key` reads).
    pub fn to_public_key_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Pem(e.to_string()))
    }

    /// The 65-byte uncompressed SEC1 point `04 || X || Y`.
    pub fn to_sec1_bytes(&self) -> [u8; 65] {
        let point = self.0.to_encoded_point(false);
        let mut out = [0u8; 65];
        // An uncompressed P-256 point is always 65 bytes.
        if point.as_bytes().len() == out.len() {
            out.copy_from_slice(point.as_bytes());
        }
        out
    }

    /// The uncompressed SEC1 point in lower-case hex (130 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_sec1_bytes())
    }

    /// SHA-256 over the 65-byte uncompressed point.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(Sha256::digest(self.to_sec1_bytes()).into())
    }

    /// The TXT `key` value: first 16 hex digits of the fingerprint.
    pub fn key_id(&self) -> KeyId {
        self.fingerprint().key_id()
    }

    /// The 65 bytes as a C array definition, for firmware built with this key.
    pub fn to_c_array(&self, name: &str) -> String {
        let bytes = self.to_sec1_bytes();
        let mut out = format!("static const unsigned char {name}[65] = {{\n");
        for line in bytes.chunks(12) {
            out.push_str("   ");
            for b in line {
                out.push_str(&format!(" 0x{b:02x},"));
            }
            out.push('\n');
        }
        out.push_str("};\n");
        out
    }

    /// Checks `signature` over `message` (SHA-256). Both low-S and high-S forms verify, as
    /// they do in mbedTLS.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let sig = p256::ecdsa::Signature::from_slice(&signature.0).map_err(|_| SignatureError)?;
        self.0.verify(message, &sig).map_err(|_| SignatureError)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// SHA-256 over a public key's 65-byte uncompressed point.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 hex digits (the TXT `key` value).
    pub fn key_id(&self) -> KeyId {
        KeyId::from_fingerprint_hex(&self.to_hex())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// A signature as it travels: 64 bytes r||s, in JSON as 128 lower-case hex digits.
///
/// Parsing only checks the hex form; whether r and s are valid scalars is part of
/// verification, so a well-formed but impossible signature is "invalid" (401), not
/// "malformed" (400).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Signature([u8; 64]);

impl Signature {
    /// Number of hex digits.
    pub const HEX_LEN: usize = 128;

    /// Parses 128 lower-case hex digits.
    pub fn parse(s: &str) -> Result<Self, HexError> {
        check_lower_hex(s, Self::HEX_LEN, "sig")?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| HexError::NotLowerHex { what: "sig" })?;
        Ok(Self(bytes))
    }

    /// The signature from its 64 bytes r||s.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 bytes r||s.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// 128 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl TryFrom<String> for Signature {
    type Error = HexError;
    fn try_from(s: String) -> Result<Self, HexError> {
        Self::parse(&s)
    }
}

impl From<Signature> for String {
    fn from(s: Signature) -> String {
        s.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6979 appendix A.2.5: P-256 key and the deterministic signature of "sample"
    /// with SHA-256. Proves signing is RFC 6979 and the r||s layout is big-endian.
    #[test]
    fn rfc6979_sample() {
        let key = SigningKey::from_hex(
            "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721",
        )
        .unwrap();
        let public = key.public_key().to_hex();
        assert_eq!(
            public,
            "04\
             60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6\
             7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299"
        );
        let sig = key.sign(b"sample");
        assert_eq!(
            sig.to_hex(),
            "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716\
             f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8"
        );
        assert_eq!(key.public_key().verify(b"sample", &sig), Ok(()));
        assert_eq!(
            key.public_key().verify(b"samplE", &sig),
            Err(SignatureError)
        );
    }

    #[test]
    fn key_forms_round_trip() {
        let key = SigningKey::generate();
        assert_eq!(
            SigningKey::from_bytes(&key.to_bytes()).unwrap().to_bytes(),
            key.to_bytes()
        );
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            SigningKey::from_pkcs8_pem(&pem).unwrap().to_bytes(),
            key.to_bytes()
        );

        let public = key.public_key();
        assert_eq!(PublicKey::from_hex(&public.to_hex()).unwrap(), public);
        let pem = public.to_public_key_pem().unwrap();
        assert_eq!(PublicKey::from_public_key_pem(&pem).unwrap(), public);
        assert!(public.to_c_array("k").contains("0x04,"));
        assert!(!format!("{key:?}").contains(&hex::encode(key.to_bytes())));
    }

    #[test]
    fn bad_keys() {
        assert_eq!(
            SigningKey::from_bytes(&[0u8; 32]).err(),
            Some(KeyError::InvalidPrivateKey)
        );
        assert_eq!(
            SigningKey::from_bytes(&[0xff; 32]).err(),
            Some(KeyError::InvalidPrivateKey)
        );
        let public = SigningKey::generate().public_key().to_sec1_bytes();
        let compressed = &public[..33];
        assert_eq!(
            PublicKey::from_sec1_bytes(compressed).err(),
            Some(KeyError::InvalidPublicKey)
        );
        let mut off_curve = public;
        off_curve[64] ^= 1;
        assert_eq!(
            PublicKey::from_sec1_bytes(&off_curve).err(),
            Some(KeyError::InvalidPublicKey)
        );
        assert!(matches!(PublicKey::from_hex("zz"), Err(KeyError::Hex(_))));
    }

    #[test]
    fn impossible_signature_is_invalid_not_panic() {
        let key = SigningKey::generate().public_key();
        assert_eq!(
            key.verify(b"m", &Signature::from_bytes([0u8; 64])),
            Err(SignatureError)
        );
        assert_eq!(
            key.verify(b"m", &Signature::from_bytes([0xff; 64])),
            Err(SignatureError)
        );
    }
}
