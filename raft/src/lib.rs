//! Quorumlog's replication layer: openraft over RocksDB and mutually authenticated gRPC.
//!
//! - [`types`]: the openraft type configuration and every openraft type alias (the one
//!   place an openraft upgrade touches).
//! - [`log_store`]: the Raft log and vote on RocksDB, with group-committed fsyncs.
//! - [`state_machine`]: applies committed entries through an [`Application`] atomically
//!   with `last_applied`; snapshots are RocksDB checkpoints ([`snapshot`]).
//! - [`network`]: tonic client and server over mutual TLS ([`pki`] makes the certificates).
//! - [`node`]: a running node and its operations.

pub mod log_store;
pub mod network;
pub mod node;
pub mod pki;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use node::{
    ForwardFn, KeyFn, Node, NodeHandle, NodeOptions, StartError, TransferHooks, WriteError,
};
pub use state_machine::Application;

/// Entry points for `fuzz/` (built with `--cfg fuzzing` only).
#[cfg(fuzzing)]
pub mod fuzzing {
    /// The decoding the gRPC server applies to a Raft payload.
    pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> std::io::Result<T> {
        crate::log_store::decode(b)
    }

    /// The encoding the gRPC client applies.
    pub fn encode<T: serde::Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
        crate::log_store::encode(v)
    }
}
