//! Node-to-node gRPC (tonic) over mutual TLS: the client openraft uses to reach peers, the
//! server that feeds their messages to the local Raft node, and the admin service.

pub mod client;
pub mod server;
pub mod tls;

/// Largest gRPC message accepted or sent, in bytes. Raft appends carry up to
/// `max_payload_entries` batches of leaves; snapshot chunks are 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Size of one snapshot file chunk on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Generated protobuf and tonic code for `proto/raft.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quorumlog.raft.v1");
}
