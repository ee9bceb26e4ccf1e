//! The 128-byte Sigsum tree leaf, the add-leaf request that produces it, and the
//! get-leaves response.

use super::ascii::{parse_hex, AsciiError, Parser, Writer};
use super::crypto::{namespaced, BadSignature, PublicKey, Signature};
use crate::merkle::{leaf_hash, Hash};

/// Namespace of the submitter's leaf signature.
pub const LEAF_NAMESPACE: &str = "sigsum.org/v1/tree-leaf";

/// `checksum[32] || signature[64] || key_hash[32]` (log.md section 2.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLeaf {
    /// SHA-256 of the submitted 32-byte message.
    pub checksum: Hash,
    /// The submitter's signature over the namespaced checksum.
    pub signature: Signature,
    /// SHA-256 of the submitter's public key.
    pub key_hash: Hash,
}

impl TreeLeaf {
    /// Encoded size.
    pub const LEN: usize = 128;

    /// The 128-byte encoding.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..32].copy_from_slice(&self.checksum.0);
        b[32..96].copy_from_slice(&self.signature.0);
        b[96..].copy_from_slice(&self.key_hash.0);
        b
    }

    /// Decodes the 128-byte encoding.
    pub fn from_bytes(b: &[u8]) -> Option<TreeLeaf> {
        if b.len() != Self::LEN {
            return None;
        }
        Some(TreeLeaf {
            checksum: Hash::from_slice(&b[..32])?,
            signature: Signature(b[32..96].try_into().ok()?),
            key_hash: Hash::from_slice(&b[96..])?,
        })
    }

    /// RFC 6962 leaf hash of the encoding: what the Merkle tree stores.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.to_bytes())
    }

    /// Checks the signature under `key`, which must be the key `key_hash` names.
    pub fn verify(&self, key: &PublicKey) -> Result<(), BadSignature> {
        if key.key_hash() != self.key_hash {
            return Err(BadSignature("leaf (key hash mismatch)"));
        }
        key.verify(
            &leaf_signed_message(&self.checksum),
            &self.signature,
            "leaf",
        )
    }
}

/// The bytes a submitter signs: `"sigsum.org/v1/tree-leaf" || 0x00 || checksum`.
pub fn leaf_signed_message(checksum: &Hash) -> Vec<u8> {
    namespaced(LEAF_NAMESPACE, &checksum.0)
}

/// A parsed `add-leaf` body (log.md section 3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddLeafRequest {
    /// The 32-byte message (usually SHA-256 of the submitted data).
    pub message: [u8; 32],
    /// Signature over the namespaced SHA-256 of `message`.
    pub signature: Signature,
    /// The submitter's public key.
    pub public_key: PublicKey,
}

impl AddLeafRequest {
    /// Parses the three-line body; any deviation is an encoding error (400).
    pub fn parse(body: &[u8]) -> Result<AddLeafRequest, AsciiError> {
        let mut p = Parser::new(body)?;
        let message = p.hex::<32>("message")?;
        let signature = Signature(p.hex::<64>("signature")?);
        let public_key = PublicKey(p.hex::<32>("public_key")?);
        p.end()?;
        Ok(AddLeafRequest {
            message,
            signature,
            public_key,
        })
    }

    /// The body as a client sends it.
    pub fn to_ascii(&self) -> String {
        Writer::new()
            .hex("message", &self.message)
            .hex("signature", &self.signature.0)
            .hex("public_key", &self.public_key.0)
            .finish()
    }

    /// The leaf this request asks for, without checking the signature.
    pub fn leaf(&self) -> TreeLeaf {
        TreeLeaf {
            checksum: Hash::digest(&self.message),
            signature: self.signature,
            key_hash: self.public_key.key_hash(),
        }
    }

    /// Checks the submitter's signature (a failure is a 403) and returns the leaf.
    pub fn verify(&self) -> Result<TreeLeaf, BadSignature> {
        let leaf = self.leaf();
        leaf.verify(&self.public_key)?;
        Ok(leaf)
    }
}

/// The get-leaves response: one `leaf=<checksum> <signature> <key_hash>` line per leaf.
pub fn leaves_to_ascii(leaves: &[TreeLeaf]) -> String {
    let mut w = Writer::new();
    for l in leaves {
        w.values(
            "leaf",
            &[
                &l.checksum.to_hex(),
                &hex::encode(l.signature.0),
                &l.key_hash.to_hex(),
            ],
        );
    }
    w.finish()
}

/// Parses a get-leaves response (at least one leaf).
pub fn parse_leaves(body: &[u8]) -> Result<Vec<TreeLeaf>, AsciiError> {
    let mut p = Parser::new(body)?;
    p.repeated("leaf", 1, usize::MAX, |p| {
        let v = p.values("leaf", 3)?;
        let bad = |reason| p.invalid("leaf", reason);
        Ok(TreeLeaf {
            checksum: Hash(parse_hex::<32>(v[0]).map_err(bad)?),
            signature: Signature(parse_hex::<64>(v[1]).map_err(bad)?),
            key_hash: Hash(parse_hex::<32>(v[2]).map_err(bad)?),
        })
    })
}
