//! The one module that names openraft types. Everything else in Quorumlog uses these
//! aliases, so an openraft alpha upgrade (the crate is pinned exactly) changes this file.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A replicated command: opaque bytes the application encodes and decodes (for the log,
/// a batch of leaves). Keeping it opaque keeps the replication layer application-agnostic.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<u8>);

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The application's answer to one applied command, returned to the proposer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult(pub Vec<u8>);

/// How to reach a cluster member: its node-to-node gRPC address and its public HTTP address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// `host:port` of the node's gRPC (Raft and admin) listener.
    pub raft_addr: String,
    /// `host:port` of the node's public HTTP API.
    pub api_addr: String,
}

openraft::declare_raft_types!(
    /// Quorumlog's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = Peer,
);

pub type NodeId = u64;
/// A leader's identity in a vote: term and node.
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, NodeId>;
/// A leader's identity in a log id (the same, in openraft's advanced leader-id mode).
pub type CommittedLeaderId = LeaderId;
/// openraft's node handle, with the state machine type fixed.
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
/// Position of an entry in the Raft log.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A Raft log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A vote (term, candidate or leader, committed flag).
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// The voter sets and the members' addresses.
pub type Membership = openraft::Membership<NodeId, Peer>;
/// Membership with the log id that introduced it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot whose data is a directory on disk.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, crate::snapshot::SnapshotDir>;
/// The log state reported to openraft.
pub type LogState = openraft::storage::LogState<TypeConfig>;
/// Entry payloads.
pub type EntryPayload = openraft::EntryPayload<Command, NodeId, Peer>;
/// Callback fired when appended entries are durable.
pub type IoFlushed = openraft::storage::IOFlushed<TypeConfig>;
/// openraft's metrics snapshot.
pub type Metrics = openraft::RaftMetrics<TypeConfig>;
/// Raft configuration.
pub use openraft::{Config as RaftConfig, ReadPolicy, ServerState, SnapshotPolicy};
/// Entry and responder pairs handed to the state machine.
pub type EntryResponder = openraft::storage::EntryResponder<TypeConfig>;
/// Requests and responses exchanged between nodes.
pub mod msg {
    use super::TypeConfig;
    /// AppendEntries request.
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    /// AppendEntries response.
    pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
    /// Why one request of a stream of appends was not taken.
    pub type StreamAppendError = openraft::raft::StreamAppendError<TypeConfig>;
    /// Result of one request of a stream of appends.
    pub type StreamAppendResult = openraft::raft::StreamAppendResult<TypeConfig>;
    /// Vote request.
    pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
    /// Vote response.
    pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
    /// Snapshot install response.
    pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
    /// Leadership transfer request.
    pub type TransferLeaderRequest = openraft::raft::TransferLeaderRequest<TypeConfig>;
    /// Leadership transfer response.
    pub type TransferLeaderResponse = openraft::raft::TransferLeaderResponse<TypeConfig>;
    /// Why a transfer target refused.
    pub type TransferLeaderError = openraft::raft::TransferLeaderError<TypeConfig>;
}
/// Errors openraft returns.
pub mod err {
    use super::TypeConfig;
    /// Transport error of an RPC.
    pub type RpcError = openraft::errors::RPCError<TypeConfig>;
    /// Transport error of a snapshot transfer.
    pub type StreamingError = openraft::errors::StreamingError<TypeConfig>;
    /// Peer not reachable: openraft backs off.
    pub type Unreachable = openraft::errors::Unreachable<TypeConfig>;
    /// Other transport failure.
    pub type NetworkError = openraft::errors::NetworkError<TypeConfig>;
    /// Raft stopped.
    pub type Fatal = openraft::errors::Fatal<TypeConfig>;
    /// Error of a client write.
    pub type ClientWriteError =
        openraft::errors::RaftError<TypeConfig, openraft::errors::ClientWriteError<TypeConfig>>;
    /// Error of a linearizable read (the leader could not confirm it still leads).
    pub type ReadError = openraft::errors::RaftError<
        TypeConfig,
        openraft::errors::LinearizableReadError<TypeConfig>,
    >;
    /// Why waiting on the node's metrics ended.
    pub use openraft::metrics::WaitError;
    /// Storage error.
    pub type StorageError = openraft::StorageError<TypeConfig>;
}
