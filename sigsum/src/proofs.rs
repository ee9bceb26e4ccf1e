//! Wire forms of the inclusion and consistency proofs (log.md sections 3.2 and 3.3).

use super::ascii::{AsciiError, Parser, Writer};
use crate::merkle::Hash;

/// Most `node_hash` lines a proof may carry (sigsum-go's limit; enough for 2^63 leaves).
pub const MAX_PROOF_HASHES: usize = 63;

/// The `get-inclusion-proof` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// Index of the leaf.
    pub leaf_index: u64,
    /// Audit path, the leaf's sibling first.
    pub path: Vec<Hash>,
}

/// The `get-consistency-proof` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Proof hashes in RFC 9162 order.
    pub path: Vec<Hash>,
}

fn write_path(w: &mut Writer, path: &[Hash]) {
    for h in path {
        w.hex("node_hash", &h.0);
    }
}

fn read_path(p: &mut Parser<'_>) -> Result<Vec<Hash>, AsciiError> {
    p.repeated("node_hash", 1, MAX_PROOF_HASHES, |p| {
        Ok(Hash(p.hex::<32>("node_hash")?))
    })
}

impl InclusionProof {
    /// `leaf_index` then one `node_hash` per path element.
    pub fn to_ascii(&self) -> String {
        let mut w = Writer::new();
        w.int("leaf_index", self.leaf_index);
        write_path(&mut w, &self.path);
        w.finish()
    }

    /// Parses a response with 1 to 63 path hashes.
    pub fn parse(body: &[u8]) -> Result<InclusionProof, AsciiError> {
        let mut p = Parser::new(body)?;
        let leaf_index = p.int("leaf_index")?;
        let path = read_path(&mut p)?;
        Ok(InclusionProof { leaf_index, path })
    }
}

impl ConsistencyProof {
    /// One `node_hash` per path element.
    pub fn to_ascii(&self) -> String {
        let mut w = Writer::new();
        write_path(&mut w, &self.path);
        w.finish()
    }

    /// Parses a response with 1 to 63 path hashes.
    pub fn parse(body: &[u8]) -> Result<ConsistencyProof, AsciiError> {
        let mut p = Parser::new(body)?;
        Ok(ConsistencyProof {
            path: read_path(&mut p)?,
        })
    }
}
