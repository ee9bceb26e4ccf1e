//! Signed map heads: the directory's statement of its map at one epoch.
//!
//! A head binds the map root to the log of mutations that produced it (its size and RFC
//! 6962 root at the epoch's marker), so a monitor replaying the log can recompute the root,
//! and a client holding a head can ask for proof of anything it covers. Its
//! [`SignedMapHead::checksum`] goes into the Sigsum log as a leaf, so witnesses cosign a
//! log that holds every head and a split view of the directory is a split view of the log.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapHead {
    pub map_id: u64,
    pub epoch: u64,
    pub map_root: [u8; 32],
    /// Size of the log of mutations up to and including this epoch's marker.
    pub log_size: u64,
    pub log_root: [u8; 32],
    /// Milliseconds since the Unix epoch, from the epoch's marker.
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedMapHead {
    pub head: MapHead,
    pub signature: [u8; 64],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("a signed map head is {HEAD_LEN} + 64 bytes, not {0}")]
    Length(usize),
    #[error("not a signed map head (wrong prefix)")]
    Prefix,
    #[error("the map head's signature does not verify")]
    BadSignature,
}

const PREFIX: &[u8] = b"quorumlog-kt map head v1\0";
/// Bytes of an encoded [`MapHead`].
pub const HEAD_LEN: usize = PREFIX.len() + 8 + 8 + 32 + 8 + 32 + 8;

impl MapHead {
    /// The bytes that are signed: a fixed prefix, then the fields in order, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD_LEN);
        b.extend_from_slice(PREFIX);
        b.extend_from_slice(&self.map_id.to_be_bytes());
        b.extend_from_slice(&self.epoch.to_be_bytes());
        b.extend_from_slice(&self.map_root);
        b.extend_from_slice(&self.log_size.to_be_bytes());
        b.extend_from_slice(&self.log_root);
        b.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        b
    }

    pub fn sign(self, key: &SigningKey) -> SignedMapHead {
        SignedMapHead {
            head: self,
            signature: key.sign(&self.encode()).to_bytes(),
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn array_at(b: &[u8], at: usize) -> [u8; 32] {
    b[at..at + 32].try_into().expect("32 bytes")
}

impl SignedMapHead {
    /// The head's encoding followed by the 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.head.encode();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Decodes without checking the signature (see [`SignedMapHead::verify`]).
    pub fn decode(b: &[u8]) -> Result<SignedMapHead, HeadError> {
        if b.len() != HEAD_LEN + 64 {
            return Err(HeadError::Length(b.len()));
        }
        if !b.starts_with(PREFIX) {
            return Err(HeadError::Prefix);
        }
        let p = PREFIX.len();
        Ok(SignedMapHead {
            head: MapHead {
                map_id: u64_at(b, p),
                epoch: u64_at(b, p + 8),
                map_root: array_at(b, p + 16),
                log_size: u64_at(b, p + 48),
                log_root: array_at(b, p + 56),
                timestamp_ms: u64_at(b, p + 88),
            },
            signature: b[HEAD_LEN..].try_into().expect("64 bytes"),
        })
    }

    pub fn verify(&self, key: &VerifyingKey) -> Result<(), HeadError> {
        key.verify(&self.head.encode(), &Signature::from_bytes(&self.signature))
            .map_err(|_| HeadError::BadSignature)
    }

    /// The 32-byte message the directory submits to the Sigsum log for this head:
    /// SHA-256 of the signed head's encoding.
    pub fn checksum(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> MapHead {
        MapHead {
            map_id: 1,
            epoch: 2,
            map_root: [3; 32],
            log_size: 4,
            log_root: [5; 32],
            timestamp_ms: 6,
        }
    }

    #[test]
    fn signed_heads_round_trip_and_verify() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let s = head().sign(&key);
        let back = SignedMapHead::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        back.verify(&key.verifying_key()).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert_eq!(back.verify(&other), Err(HeadError::BadSignature));
    }

    #[test]
    fn every_field_is_signed_and_hashed() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let s = head().sign(&key);
        let bytes = s.encode();
        // Flipping any byte of the head breaks the signature and changes the checksum.
        for i in PREFIX.len()..HEAD_LEN {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let t = SignedMapHead::decode(&b).unwrap();
            assert_eq!(
                t.verify(&key.verifying_key()),
                Err(HeadError::BadSignature),
                "byte {i}"
            );
            assert_ne!(t.checksum(), s.checksum());
        }
        assert_eq!(
            SignedMapHead::decode(&bytes[1..]),
            Err(HeadError::Length(bytes.len() - 1))
        );
        let mut b = bytes.clone();
        b[0] ^= 1;
        assert_eq!(SignedMapHead::decode(&b), Err(HeadError::Prefix));
    }
}
