//! The C2SP checkpoint a Sigsum log signs (log.md section 2.2.2) and its signed-note form
//! used toward witnesses.

use super::crypto::{PublicKey, Signature};
use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Prefix of a Sigsum log's checkpoint origin.
pub const ORIGIN_PREFIX: &str = "sigsum.org/v1/tree/";
/// Signed-note signature type of an Ed25519 signature.
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Signed-note signature type of a timestamped Ed25519 cosignature.
pub const SIG_TYPE_COSIGNATURE: u8 = 0x04;

/// The checkpoint origin of the log whose key hash is `log_key_hash`.
pub fn origin(log_key_hash: &Hash) -> String {
    format!("{ORIGIN_PREFIX}{}", log_key_hash.to_hex())
}

/// A tree head as the log signs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Key hash of the log's public key; determines the origin line.
    pub log_key_hash: Hash,
    /// Number of leaves.
    pub size: u64,
    /// Root hash at that size.
    pub root_hash: Hash,
}

impl Checkpoint {
    /// The signed body: origin, decimal size and base64 root, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            origin(&self.log_key_hash),
            self.size,
            B64.encode(self.root_hash.0)
        )
    }

    /// The checkpoint as a signed note: body, blank line, one signature line by the log.
    pub fn signed_note(&self, log_key: &PublicKey, signature: &Signature) -> String {
        let name = origin(&self.log_key_hash);
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&key_id(&name, SIG_TYPE_ED25519, log_key));
        blob.extend_from_slice(&signature.0);
        format!("{}\n\u{2014} {} {}\n", self.body(), name, B64.encode(blob))
    }
}

/// Signed-note key ID: the first four bytes of `SHA-256(name || 0x0a || type || key)`.
pub fn key_id(name: &str, sig_type: u8, key: &PublicKey) -> [u8; 4] {
    let mut m = Vec::with_capacity(name.len() + 34);
    m.extend_from_slice(name.as_bytes());
    m.push(b'\n');
    m.push(sig_type);
    m.extend_from_slice(&key.0);
    let h = Hash::digest(&m);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}
