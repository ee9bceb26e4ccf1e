//! The encoding of a Raft command for the log: a batch of 128-byte tree leaves, and the
//! applied result: the index of each leaf, in order.

use crate::sigsum::leaf::TreeLeaf;
use quorumlog_raft::types::{Command, CommandResult};
use serde::{Deserialize, Serialize};

/// What applying one command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// The index of each leaf of the batch (an already-present leaf keeps its index).
    Indexes(Vec<u64>),
    /// The command was not a valid batch; nothing was applied.
    Invalid(String),
}

/// A batch of leaves as a command: their encodings, concatenated.
pub fn encode_leaves(leaves: &[TreeLeaf]) -> Command {
    let mut b = Vec::with_capacity(leaves.len() * TreeLeaf::LEN);
    for l in leaves {
        b.extend_from_slice(&l.to_bytes());
    }
    Command(b)
}

/// The leaves of a command, or why it is not a valid batch.
pub fn decode_leaves(c: &Command) -> Result<Vec<TreeLeaf>, String> {
    if c.0.is_empty() || !c.0.len().is_multiple_of(TreeLeaf::LEN) {
        return Err(format!(
            "a batch is a non-empty multiple of {} bytes, got {}",
            TreeLeaf::LEN,
            c.0.len()
        ));
    }
    c.0.chunks(TreeLeaf::LEN)
        .map(|b| TreeLeaf::from_bytes(b).ok_or_else(|| "bad leaf".to_string()))
        .collect()
}

/// Encodes an outcome as a command result.
pub fn encode_result(o: &ApplyOutcome) -> CommandResult {
    // Encoding a plain enum of integers and a string into a Vec cannot fail.
    CommandResult(postcard::to_allocvec(o).unwrap_or_default())
}

/// Decodes a command result.
pub fn decode_result(r: &CommandResult) -> Result<ApplyOutcome, String> {
    postcard::from_bytes(&r.0).map_err(|e| format!("undecodable apply result: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::Hash;
    use crate::sigsum::crypto::Signature;

    #[test]
    fn round_trip_and_rejects_bad_lengths() {
        let leaf = TreeLeaf {
            checksum: Hash([1; 32]),
            signature: Signature([2; 64]),
            key_hash: Hash([3; 32]),
        };
        let c = encode_leaves(&[leaf, leaf]);
        assert_eq!(decode_leaves(&c).unwrap(), vec![leaf, leaf]);
        assert!(decode_leaves(&Command(vec![0; 127])).is_err());
        assert!(decode_leaves(&Command(vec![])).is_err());
        let o = ApplyOutcome::Indexes(vec![4, 5]);
        assert_eq!(decode_result(&encode_result(&o)).unwrap(), o);
        assert!(decode_result(&CommandResult(vec![9, 9, 9])).is_err());
    }
}
