//! The encoding of a Raft command for the log, and of the result of applying it.
//!
//! A command is one tag byte and a payload:
//! - `0x01` a batch of 128-byte tree leaves, concatenated;
//! - `0x02` a signed tree head (Sigsum ASCII), recorded before any witness sees it;
//! - `0x03` a cosigned tree head (Sigsum ASCII), the head every node then publishes;
//! - `0x10` a Key Transparency update (docs/kt.md): a signed mutation and its opening;
//! - `0x11` an epoch marker: epoch and timestamp (ms), 8 bytes each, big-endian;
//! - `0x12` a signed map head and the 128-byte Sigsum leaf that submits it to the log.

use crate::kt::directory::Update;
use crate::sigsum::leaf::TreeLeaf;
use crate::sigsum::tree_head::{CosignedTreeHead, SignedTreeHead};
use quorumlog_kt::head::{SignedMapHead, HEAD_LEN};
use quorumlog_raft::types::{Command, CommandResult};
use serde::{Deserialize, Serialize};

const TAG_LEAVES: u8 = 0x01;
const TAG_SIGNED_HEAD: u8 = 0x02;
const TAG_PUBLISHED_HEAD: u8 = 0x03;
const TAG_KT_UPDATE: u8 = 0x10;
const TAG_KT_MARKER: u8 = 0x11;
const TAG_KT_HEAD: u8 = 0x12;

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogCommand {
    /// Append these leaves (an already-present leaf is not appended again).
    Leaves(Vec<TreeLeaf>),
    /// Record a head the leader signed, before it is sent to witnesses.
    SignedHead(SignedTreeHead),
    /// Publish a signed head with the cosignatures collected for it.
    PublishedHead(CosignedTreeHead),
    /// Queue a directory update.
    KtUpdate(Update),
    /// Close the directory's open epoch as `epoch`.
    KtMarker { epoch: u64, timestamp_ms: u64 },
    /// Record an epoch's signed map head and add its Sigsum leaf to the log.
    KtHead { head: SignedMapHead, leaf: TreeLeaf },
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
    /// A directory update was logged at `log_index` of the log of mutations; `verdict` is
    /// 0 if it was applied, else the rejection's code.
    KtUpdate { log_index: u64, verdict: u8 },
    /// A marker closed this epoch.
    KtEpoch(u64),
    /// A map head was recorded; its Sigsum leaf has this index.
    KtHead { leaf_index: u64 },
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
        LogCommand::SignedHead(h) => tagged(TAG_SIGNED_HEAD, h.to_ascii().as_bytes()),
        LogCommand::PublishedHead(h) => tagged(TAG_PUBLISHED_HEAD, h.to_ascii().as_bytes()),
        LogCommand::KtUpdate(u) => tagged(TAG_KT_UPDATE, &u.encode()),
        LogCommand::KtMarker {
            epoch,
            timestamp_ms,
        } => {
            let mut b = epoch.to_be_bytes().to_vec();
            b.extend_from_slice(&timestamp_ms.to_be_bytes());
            tagged(TAG_KT_MARKER, &b)
        }
        LogCommand::KtHead { head, leaf } => {
            let mut b = head.encode();
            b.extend_from_slice(&leaf.to_bytes());
            tagged(TAG_KT_HEAD, &b)
        }
    }
}

fn tagged(tag: u8, payload: &[u8]) -> Command {
    let mut b = Vec::with_capacity(1 + payload.len());
    b.push(tag);
    b.extend_from_slice(payload);
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
        TAG_KT_UPDATE => Update::decode(payload).map(LogCommand::KtUpdate),
        TAG_KT_MARKER if payload.len() == 16 => Ok(LogCommand::KtMarker {
            epoch: u64::from_be_bytes(payload[..8].try_into().expect("8 bytes")),
            timestamp_ms: u64::from_be_bytes(payload[8..].try_into().expect("8 bytes")),
        }),
        TAG_KT_MARKER => Err(format!(
            "an epoch marker is 16 bytes, not {}",
            payload.len()
        )),
        TAG_KT_HEAD => {
            let head_len = HEAD_LEN + 64;
            if payload.len() != head_len + TreeLeaf::LEN {
                return Err(format!(
                    "a map head command is {} bytes, not {}",
                    head_len + TreeLeaf::LEN,
                    payload.len()
                ));
            }
            let head = SignedMapHead::decode(&payload[..head_len])
                .map_err(|e| format!("bad map head: {e}"))?;
            let leaf = TreeLeaf::from_bytes(&payload[head_len..]).ok_or("bad leaf")?;
            Ok(LogCommand::KtHead { head, leaf })
        }
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
