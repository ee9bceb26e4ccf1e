//! Signed and cosigned tree heads: the `get-tree-head` response (log.md section 3.1).

use super::ascii::{AsciiError, Parser, Writer};
use super::checkpoint::Checkpoint;
use super::cosignature::Cosignature;
use super::crypto::{BadSignature, PublicKey, Signature};
use crate::merkle::Hash;

/// A tree head with the log's signature over its checkpoint body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedTreeHead {
    /// Number of leaves.
    pub size: u64,
    /// Root hash at that size.
    pub root_hash: Hash,
    /// The log's Ed25519 signature over the checkpoint body.
    pub signature: Signature,
}

impl SignedTreeHead {
    /// The checkpoint this head signs, for the log whose key hash is `log_key_hash`.
    pub fn checkpoint(&self, log_key_hash: &Hash) -> Checkpoint {
        Checkpoint {
            log_key_hash: *log_key_hash,
            size: self.size,
            root_hash: self.root_hash,
        }
    }

    /// Checks the log's signature.
    pub fn verify(&self, log_key: &PublicKey) -> Result<(), BadSignature> {
        let body = self.checkpoint(&log_key.key_hash()).body();
        log_key.verify(body.as_bytes(), &self.signature, "tree head")
    }

    fn write(&self, w: &mut Writer) {
        w.int("size", self.size)
            .hex("root_hash", &self.root_hash.0)
            .hex("signature", &self.signature.0);
    }

    fn read(p: &mut Parser<'_>) -> Result<SignedTreeHead, AsciiError> {
        Ok(SignedTreeHead {
            size: p.int("size")?,
            root_hash: Hash(p.hex::<32>("root_hash")?),
            signature: Signature(p.hex::<64>("signature")?),
        })
    }

    /// `size`, `root_hash`, `signature` lines.
    pub fn to_ascii(&self) -> String {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }

    /// Parses the three lines and nothing else.
    pub fn parse(body: &[u8]) -> Result<SignedTreeHead, AsciiError> {
        let mut p = Parser::new(body)?;
        let h = Self::read(&mut p)?;
        p.end()?;
        Ok(h)
    }
}

/// A signed tree head and the witness cosignatures collected for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignedTreeHead {
    /// The log-signed head.
    pub head: SignedTreeHead,
    /// At most one cosignature per witness key hash.
    pub cosignatures: Vec<Cosignature>,
}

impl CosignedTreeHead {
    /// The `get-tree-head` response body.
    pub fn to_ascii(&self) -> String {
        let mut w = Writer::new();
        self.head.write(&mut w);
        for c in &self.cosignatures {
            w.values("cosignature", &[&c.wire_value()]);
        }
        w.finish()
    }

    /// Parses a `get-tree-head` response; duplicate witness key hashes are rejected, as
    /// sigsum-go does.
    pub fn parse(body: &[u8]) -> Result<CosignedTreeHead, AsciiError> {
        let mut p = Parser::new(body)?;
        let head = SignedTreeHead::read(&mut p)?;
        let cosignatures = p.repeated("cosignature", 0, usize::MAX, |p| {
            let v = p.values("cosignature", 3)?;
            Cosignature::parse_wire_value(&v).map_err(|r| p.invalid("cosignature", r))
        })?;
        for (i, c) in cosignatures.iter().enumerate() {
            if cosignatures[..i].iter().any(|o| o.key_hash == c.key_hash) {
                return Err(AsciiError::BadValue {
                    line: 4 + i,
                    key: "cosignature",
                    reason: format!("duplicate cosignature key hash {}", c.key_hash),
                });
            }
        }
        Ok(CosignedTreeHead { head, cosignatures })
    }
}
