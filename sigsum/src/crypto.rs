//! Ed25519 keys and signatures as Sigsum uses them: raw 32-byte public keys, 64-byte
//! signatures, key hashes, and the `namespace || 0x00 || data` signing form.

use crate::merkle::Hash;
use ed25519_dalek::{Signature as DalekSignature, Verifier, VerifyingKey};
use std::fmt;
use thiserror::Error;

/// A raw Ed25519 public key (RFC 8032 encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// A raw Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// A signature did not verify.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {0} signature")]
pub struct BadSignature(pub &'static str);

impl PublicKey {
    /// The key as an OpenSSH public key line (`ssh-ed25519 <base64>`), the format the
    /// sigsum-go tools read.
    pub fn to_openssh(&self) -> String {
        use base64::Engine as _;
        let mut blob = Vec::with_capacity(51);
        for part in [&b"ssh-ed25519"[..], &self.0[..]] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        format!(
            "ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// SHA-256 of the 32 key bytes, the key's identity on the wire.
    pub fn key_hash(&self) -> Hash {
        Hash::digest(&self.0)
    }

    /// Checks `signature` over `message` the way Go's `crypto/ed25519` does (cofactorless,
    /// canonical S required). `what` names the signature in the error.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &Signature,
        what: &'static str,
    ) -> Result<(), BadSignature> {
        let key = decompressed(&self.0).ok_or(BadSignature(what))?;
        key.verify(message, &DalekSignature::from_bytes(&signature.0))
            .map_err(|_| BadSignature(what))
    }
}

/// Decompressed keys most recently used on this thread, at most this many.
const KEY_CACHE: usize = 1024;

thread_local! {
    static KEYS: std::cell::RefCell<std::collections::HashMap<[u8; 32], VerifyingKey>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The decompressed form of a public key. Decompressing costs about a quarter of a
/// verification and submitters reuse their keys, so recent keys are kept per thread.
fn decompressed(key: &[u8; 32]) -> Option<VerifyingKey> {
    if let Some(k) = KEYS.with(|c| c.borrow().get(key).copied()) {
        return Some(k);
    }
    let k = VerifyingKey::from_bytes(key).ok()?;
    KEYS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= KEY_CACHE {
            c.clear();
        }
        c.insert(*key, k);
    });
    Some(k)
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// `namespace || 0x00 || data`: the bytes signed for leaves and submit tokens.
pub fn namespaced(namespace: &str, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(namespace.len() + 1 + data.len());
    m.extend_from_slice(namespace.as_bytes());
    m.push(0);
    m.extend_from_slice(data);
    m
}
