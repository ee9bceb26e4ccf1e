//! The one boundary between openraft's types and Quorumlog's own encoding of them.
//!
//! Everything the replication layer persists (log entries, the vote, the committed log id,
//! the applied position and membership, snapshot metadata) and everything it sends to
//! peers is one of the protobuf messages of proto/raft.proto, converted here. openraft's
//! structs may change between alphas; these messages change only by adding fields, so a
//! data directory or a peer from an adjacent version stays readable (docs/operations.md).

use crate::network::pb;
use crate::types::{
    msg, CommittedLeaderId, Entry, EntryPayload, LeaderId, LogId, Membership, Peer, SnapshotMeta,
    StoredMembership, Vote,
};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// A message that is not a valid encoding of what it should be.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("undecodable {what}: {reason}")]
pub struct CodecError {
    what: &'static str,
    reason: String,
}

impl CodecError {
    fn new(what: &'static str, reason: impl std::fmt::Display) -> CodecError {
        CodecError {
            what,
            reason: reason.to_string(),
        }
    }
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// An openraft type with an owned protobuf form.
pub trait Owned: Sized {
    /// The protobuf message.
    type Pb: Message + Default;
    /// What to call it in an error.
    const WHAT: &'static str;
    fn to_pb(&self) -> Self::Pb;
    fn from_pb(pb: Self::Pb) -> Result<Self, CodecError>;
}

/// Encodes `v` as its protobuf message.
pub fn encode<T: Owned>(v: &T) -> Vec<u8> {
    v.to_pb().encode_to_vec()
}

/// Decodes bytes written by [`encode`] (by this version or an adjacent one).
pub fn decode<T: Owned>(bytes: &[u8]) -> Result<T, CodecError> {
    let pb = T::Pb::decode(bytes).map_err(|e| CodecError::new(T::WHAT, e))?;
    T::from_pb(pb)
}

fn required<T>(v: Option<T>, what: &'static str, field: &str) -> Result<T, CodecError> {
    v.ok_or_else(|| CodecError::new(what, format!("{field} is missing")))
}

fn log_id_pb(l: &LogId) -> pb::LogId {
    pb::LogId {
        term: l.leader_id.term,
        node_id: l.leader_id.node_id,
        index: l.index,
    }
}

fn log_id(p: pb::LogId) -> LogId {
    LogId {
        leader_id: CommittedLeaderId {
            term: p.term,
            node_id: p.node_id,
        },
        index: p.index,
    }
}

fn opt_log_id_pb(l: &Option<LogId>) -> Option<pb::LogId> {
    l.as_ref().map(log_id_pb)
}

fn opt_log_id(p: Option<pb::LogId>) -> Option<LogId> {
    p.map(log_id)
}

fn vote_pb(v: &Vote) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

fn vote(p: pb::Vote) -> Vote {
    Vote {
        leader_id: LeaderId {
            term: p.term,
            node_id: p.node_id,
        },
        committed: p.committed,
    }
}

fn req_vote(p: Option<pb::Vote>, what: &'static str) -> Result<Vote, CodecError> {
    required(p, what, "vote").map(vote)
}

fn membership_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::NodeIds {
                ids: c.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, p)| {
                (
                    *id,
                    pb::Peer {
                        raft_addr: p.raft_addr.clone(),
                        api_addr: p.api_addr.clone(),
                    },
                )
            })
            .collect(),
    }
}

fn membership(p: pb::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<u64>> = p
        .configs
        .into_iter()
        .map(|c| c.ids.into_iter().collect())
        .collect();
    let nodes: BTreeMap<u64, Peer> = p
        .nodes
        .into_iter()
        .map(|(id, m)| {
            (
                id,
                Peer {
                    raft_addr: m.raft_addr,
                    api_addr: m.api_addr,
                },
            )
        })
        .collect();
    Membership::new(configs, nodes).map_err(|e| CodecError::new("membership", e))
}

fn stored_membership_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_pb(m.log_id()),
        membership: Some(membership_pb(m.membership())),
    }
}

fn stored_membership(p: pb::StoredMembership) -> Result<StoredMembership, CodecError> {
    let m = required(p.membership, "stored membership", "membership")?;
    Ok(StoredMembership::new(opt_log_id(p.log_id), membership(m)?))
}

fn entry_pb(e: &Entry) -> pb::Entry {
    use pb::entry::Payload as P;
    let payload = match &e.payload {
        EntryPayload::Blank => P::Blank(pb::Blank {}),
        EntryPayload::Normal(c) => P::Command(c.0.clone()),
        EntryPayload::Membership(m) => P::Membership(membership_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_pb(&e.log_id)),
        payload: Some(payload),
    }
}

fn entry(p: pb::Entry) -> Result<Entry, CodecError> {
    use pb::entry::Payload as P;
    let log_id = log_id(required(p.log_id, "log entry", "log_id")?);
    let payload = match required(p.payload, "log entry", "payload")? {
        P::Blank(_) => EntryPayload::Blank,
        P::Command(c) => EntryPayload::Normal(crate::types::Command(c)),
        P::Membership(m) => EntryPayload::Membership(membership(m)?),
    };
    Ok(Entry { log_id, payload })
}

impl Owned for LogId {
    type Pb = pb::LogId;
    const WHAT: &'static str = "log id";
    fn to_pb(&self) -> pb::LogId {
        log_id_pb(self)
    }
    fn from_pb(p: pb::LogId) -> Result<LogId, CodecError> {
        Ok(log_id(p))
    }
}

/// The committed log id (none before anything is committed).
impl Owned for Option<LogId> {
    type Pb = pb::Committed;
    const WHAT: &'static str = "committed log id";
    fn to_pb(&self) -> pb::Committed {
        pb::Committed {
            log_id: opt_log_id_pb(self),
        }
    }
    fn from_pb(p: pb::Committed) -> Result<Option<LogId>, CodecError> {
        Ok(opt_log_id(p.log_id))
    }
}

impl Owned for Vote {
    type Pb = pb::Vote;
    const WHAT: &'static str = "vote";
    fn to_pb(&self) -> pb::Vote {
        vote_pb(self)
    }
    fn from_pb(p: pb::Vote) -> Result<Vote, CodecError> {
        Ok(vote(p))
    }
}

impl Owned for Entry {
    type Pb = pb::Entry;
    const WHAT: &'static str = "log entry";
    fn to_pb(&self) -> pb::Entry {
        entry_pb(self)
    }
    fn from_pb(p: pb::Entry) -> Result<Entry, CodecError> {
        entry(p)
    }
}

impl Owned for StoredMembership {
    type Pb = pb::StoredMembership;
    const WHAT: &'static str = "stored membership";
    fn to_pb(&self) -> pb::StoredMembership {
        stored_membership_pb(self)
    }
    fn from_pb(p: pb::StoredMembership) -> Result<StoredMembership, CodecError> {
        stored_membership(p)
    }
}

impl Owned for SnapshotMeta {
    type Pb = pb::SnapshotMeta;
    const WHAT: &'static str = "snapshot metadata";
    fn to_pb(&self) -> pb::SnapshotMeta {
        pb::SnapshotMeta {
            last_log_id: opt_log_id_pb(&self.last_log_id),
            last_membership: Some(stored_membership_pb(&self.last_membership)),
        }
    }
    fn from_pb(p: pb::SnapshotMeta) -> Result<SnapshotMeta, CodecError> {
        let m = required(p.last_membership, Self::WHAT, "last_membership")?;
        Ok(SnapshotMeta {
            last_log_id: opt_log_id(p.last_log_id),
            last_membership: stored_membership(m)?,
        })
    }
}

impl Owned for msg::AppendEntriesRequest {
    type Pb = pb::AppendRequest;
    const WHAT: &'static str = "append request";
    fn to_pb(&self) -> pb::AppendRequest {
        pb::AppendRequest {
            vote: Some(vote_pb(&self.vote)),
            prev_log_id: opt_log_id_pb(&self.prev_log_id),
            entries: self.entries.iter().map(entry_pb).collect(),
            leader_commit: opt_log_id_pb(&self.leader_commit),
        }
    }
    fn from_pb(p: pb::AppendRequest) -> Result<Self, CodecError> {
        Ok(msg::AppendEntriesRequest {
            vote: req_vote(p.vote, Self::WHAT)?,
            prev_log_id: opt_log_id(p.prev_log_id),
            entries: p.entries.into_iter().map(entry).collect::<Result<_, _>>()?,
            leader_commit: opt_log_id(p.leader_commit),
        })
    }
}

impl Owned for msg::AppendEntriesResponse {
    type Pb = pb::AppendResponse;
    const WHAT: &'static str = "append response";
    fn to_pb(&self) -> pb::AppendResponse {
        use pb::append_response::Result as R;
        let r = match self {
            msg::AppendEntriesResponse::Success => R::Success(pb::Blank {}),
            msg::AppendEntriesResponse::PartialSuccess(l) => {
                R::PartialSuccess(pb::PartialSuccess {
                    matched: opt_log_id_pb(l),
                })
            }
            msg::AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
            msg::AppendEntriesResponse::HigherVote(v) => R::HigherVote(vote_pb(v)),
        };
        pb::AppendResponse { result: Some(r) }
    }
    fn from_pb(p: pb::AppendResponse) -> Result<Self, CodecError> {
        use pb::append_response::Result as R;
        Ok(match required(p.result, Self::WHAT, "result")? {
            R::Success(_) => msg::AppendEntriesResponse::Success,
            R::PartialSuccess(s) => {
                msg::AppendEntriesResponse::PartialSuccess(opt_log_id(s.matched))
            }
            R::Conflict(_) => msg::AppendEntriesResponse::Conflict,
            R::HigherVote(v) => msg::AppendEntriesResponse::HigherVote(vote(v)),
        })
    }
}

impl Owned for msg::StreamAppendResult {
    type Pb = pb::StreamAppendResponse;
    const WHAT: &'static str = "stream append response";
    fn to_pb(&self) -> pb::StreamAppendResponse {
        use pb::stream_append_response::Result as R;
        let r = match self {
            Ok(l) => R::Ok(pb::PartialSuccess {
                matched: opt_log_id_pb(l),
            }),
            Err(msg::StreamAppendError::Conflict(l)) => R::Conflict(log_id_pb(l)),
            Err(msg::StreamAppendError::HigherVote(v)) => R::HigherVote(vote_pb(v)),
        };
        pb::StreamAppendResponse { result: Some(r) }
    }
    fn from_pb(p: pb::StreamAppendResponse) -> Result<Self, CodecError> {
        use pb::stream_append_response::Result as R;
        Ok(match required(p.result, Self::WHAT, "result")? {
            R::Ok(s) => Ok(opt_log_id(s.matched)),
            R::Conflict(l) => Err(msg::StreamAppendError::Conflict(log_id(l))),
            R::HigherVote(v) => Err(msg::StreamAppendError::HigherVote(vote(v))),
        })
    }
}

impl Owned for msg::VoteRequest {
    type Pb = pb::VoteRequest;
    const WHAT: &'static str = "vote request";
    fn to_pb(&self) -> pb::VoteRequest {
        pb::VoteRequest {
            vote: Some(vote_pb(&self.vote)),
            last_log_id: opt_log_id_pb(&self.last_log_id),
            leadership_transfer: self.leadership_transfer,
        }
    }
    fn from_pb(p: pb::VoteRequest) -> Result<Self, CodecError> {
        Ok(msg::VoteRequest {
            vote: req_vote(p.vote, Self::WHAT)?,
            last_log_id: opt_log_id(p.last_log_id),
            leadership_transfer: p.leadership_transfer,
        })
    }
}

impl Owned for msg::VoteResponse {
    type Pb = pb::VoteResponse;
    const WHAT: &'static str = "vote response";
    fn to_pb(&self) -> pb::VoteResponse {
        pb::VoteResponse {
            vote: Some(vote_pb(&self.vote)),
            vote_granted: self.vote_granted,
            last_log_id: opt_log_id_pb(&self.last_log_id),
        }
    }
    fn from_pb(p: pb::VoteResponse) -> Result<Self, CodecError> {
        Ok(msg::VoteResponse {
            vote: req_vote(p.vote, Self::WHAT)?,
            vote_granted: p.vote_granted,
            last_log_id: opt_log_id(p.last_log_id),
        })
    }
}

impl Owned for msg::TransferLeaderRequest {
    type Pb = pb::TransferRequest;
    const WHAT: &'static str = "transfer request";
    fn to_pb(&self) -> pb::TransferRequest {
        pb::TransferRequest {
            from_leader: Some(vote_pb(self.from_leader())),
            to: *self.to_node_id(),
            last_log_id: self.last_log_id().map(log_id_pb),
        }
    }
    fn from_pb(p: pb::TransferRequest) -> Result<Self, CodecError> {
        let from = required(p.from_leader, Self::WHAT, "from_leader")?;
        Ok(msg::TransferLeaderRequest::new(
            vote(from),
            p.to,
            opt_log_id(p.last_log_id),
        ))
    }
}

impl Owned for msg::TransferLeaderResponse {
    type Pb = pb::TransferResponse;
    const WHAT: &'static str = "transfer response";
    fn to_pb(&self) -> pb::TransferResponse {
        use pb::transfer_response::Result as R;
        let r = match self {
            Ok(()) => R::Ok(pb::Blank {}),
            Err(msg::TransferLeaderError::VoteChanged { expected, actual }) => {
                R::VoteChanged(pb::VoteChanged {
                    expected: Some(vote_pb(expected)),
                    actual: Some(vote_pb(actual)),
                })
            }
            Err(msg::TransferLeaderError::LogNotFlushed { expected, actual }) => {
                R::LogNotFlushed(pb::LogNotFlushed {
                    expected: opt_log_id_pb(expected),
                    actual: opt_log_id_pb(actual),
                })
            }
        };
        pb::TransferResponse { result: Some(r) }
    }
    fn from_pb(p: pb::TransferResponse) -> Result<Self, CodecError> {
        use pb::transfer_response::Result as R;
        Ok(match required(p.result, Self::WHAT, "result")? {
            R::Ok(_) => Ok(()),
            R::VoteChanged(v) => Err(msg::TransferLeaderError::VoteChanged {
                expected: req_vote(v.expected, Self::WHAT)?,
                actual: req_vote(v.actual, Self::WHAT)?,
            }),
            R::LogNotFlushed(l) => Err(msg::TransferLeaderError::LogNotFlushed {
                expected: opt_log_id(l.expected),
                actual: opt_log_id(l.actual),
            }),
        })
    }
}

impl Owned for msg::SnapshotResponse {
    type Pb = pb::SnapshotResponse;
    const WHAT: &'static str = "snapshot response";
    fn to_pb(&self) -> pb::SnapshotResponse {
        pb::SnapshotResponse {
            vote: Some(vote_pb(&self.vote)),
        }
    }
    fn from_pb(p: pb::SnapshotResponse) -> Result<Self, CodecError> {
        Ok(msg::SnapshotResponse::new(req_vote(p.vote, Self::WHAT)?))
    }
}
