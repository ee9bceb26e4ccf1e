//! The encoding of a Raft command for the log, and of the result of applying it.
//!
//! A command is one tag byte and a payload:
//! - `0x01` a batch of 128-byte tree leaves, concatenated;
//! - `0x02` a signed tree head (Sigsum ASCII), recorded before any witness sees it;
//! - `0x03` a cosigned tree head (Sigsum ASCII), the head every node then publishes.

use crate::sigsum::leaf::TreeLeaf;
use crate::sigsum::tree_head::{CosignedTreeHead, SignedTreeHead};
use quorumlog_raft::types::{Command, CommandResult};
use serde::{Deserialize, Serialize};

const TAG_LEAVES: u8 = 0x01;
const TAG_SIGNED_HEAD: u8 = 0x02;
const TAG_PUBLISHED_HEAD: u8 = 0x03;

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogCommand {
    /// Append these leaves (an already-present leaf is not appended again).
    Leaves(Vec<TreeLeaf>),
    /// Record a head the leader signed, before it is sent to witnesses.
    SignedHead(SignedTreeHead),
    /// Publish a signed head with the cosignatures collected for it.
    PublishedHead(CosignedTreeHead),
}

/// What applying one command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// The index of each leaf of the batch (an already-present leaf keeps its index).
    Indexes(Vec<u64>),
    /// A tree head was recorded.
    HeadRecorded,
    /// The command was not valid; nothing was applied.
    Invalid(String),
}

/// A batch of leaves as a command.
pub fn encode_leaves(leaves: &[TreeLeaf]) -> Command {
    let mut b = Vec::with_capacity(1 + leaves.len() * TreeLeaf::LEN);
    b.push(TAG_LEAVES);
    for l in leaves {
        b.extend_from_slice(&l.to_bytes());
    }
    Command(b)
}

/// Encodes any command.
pub fn encode(c: &LogCommand) -> Command {
    match c {
        LogCommand::Leaves(l) => encode_leaves(l),
        LogCommand::SignedHead(h) => tagged(TAG_SIGNED_HEAD, h.to_ascii()),
        LogCommand::PublishedHead(h) => tagged(TAG_PUBLISHED_HEAD, h.to_ascii()),
    }
}

fn tagged(tag: u8, ascii: String) -> Command {
    let mut b = Vec::with_capacity(1 + ascii.len());
    b.push(tag);
    b.extend_from_slice(ascii.as_bytes());
    Command(b)
}

/// Decodes a command, or says why it is not one.
pub fn decode(c: &Command) -> Result<LogCommand, String> {
    let Some((&tag, payload)) = c.0.split_first() else {
        return Err("empty command".into());
    };
    match tag {
        TAG_LEAVES => decode_leaf_payload(payload).map(LogCommand::Leaves),
        TAG_SIGNED_HEAD => SignedTreeHead::parse(payload)
            .map(LogCommand::SignedHead)
            .map_err(|e| format!("bad signed tree head: {e}")),
        TAG_PUBLISHED_HEAD => CosignedTreeHead::parse(payload)
            .map(LogCommand::PublishedHead)
            .map_err(|e| format!("bad cosigned tree head: {e}")),
        other => Err(format!("unknown command tag {other:#04x}")),
    }
}

/// The leaves of a command that must be a leaf batch.
pub fn decode_leaves(c: &Command) -> Result<Vec<TreeLeaf>, String> {
    match decode(c)? {
        LogCommand::Leaves(l) => Ok(l),
        _ => Err("not a leaf batch".into()),
    }
}

fn decode_leaf_payload(p: &[u8]) -> Result<Vec<TreeLeaf>, String> {
    if p.is_empty() || !p.len().is_multiple_of(TreeLeaf::LEN) {
        return Err(format!(
            "a batch is a non-empty multiple of {} bytes, got {}",
            TreeLeaf::LEN,
            p.len()
        ));
    }
    p.chunks(TreeLeaf::LEN)
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
    use crate::sigsum::cosignature::Cosignature;
    use crate::sigsum::crypto::Signature;

    #[test]
    fn round_trip_and_rejects_bad_input() {
        let leaf = TreeLeaf {
            checksum: Hash([1; 32]),
            signature: Signature([2; 64]),
            key_hash: Hash([3; 32]),
        };
        let c = encode_leaves(&[leaf, leaf]);
        assert_eq!(decode_leaves(&c).unwrap(), vec![leaf, leaf]);
        let head = SignedTreeHead {
            size: 7,
            root_hash: Hash([4; 32]),
            signature: Signature([5; 64]),
        };
        let cosigned = CosignedTreeHead {
            head,
            cosignatures: vec![Cosignature {
                key_hash: Hash([6; 32]),
                timestamp: 9,
                signature: Signature([7; 64]),
            }],
        };
        for cmd in [
            LogCommand::SignedHead(head),
            LogCommand::PublishedHead(cosigned),
        ] {
            assert_eq!(decode(&encode(&cmd)).unwrap(), cmd);
            assert!(decode_leaves(&encode(&cmd)).is_err());
        }
        let mut short = vec![TAG_LEAVES];
        short.extend([0; 127]);
        assert!(decode(&Command(short)).is_err());
        assert!(decode(&Command(vec![TAG_LEAVES])).is_err());
        assert!(decode(&Command(vec![])).is_err());
        assert!(decode(&Command(vec![0x09, 1, 2])).is_err());
        assert!(decode(&Command(b"\x02size=1\n".to_vec())).is_err());
        let o = ApplyOutcome::Indexes(vec![4, 5]);
        assert_eq!(decode_result(&encode_result(&o)).unwrap(), o);
        assert!(decode_result(&CommandResult(vec![9, 9, 9])).is_err());
    }
}
