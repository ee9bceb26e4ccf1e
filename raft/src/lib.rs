//! Quorumlog's replication layer: openraft over RocksDB and mutually authenticated gRPC.
//!
//! - [`types`]: the openraft type configuration and every openraft type alias (the one
//!   place an openraft upgrade touches).
//! - [`log_store`]: the Raft log and vote on RocksDB, with group-committed fsyncs.
//! - [`state_machine`]: applies committed entries through an [`Application`] atomically
//!   with `last_applied`; snapshots are RocksDB checkpoints ([`snapshot`]).
//! - [`network`]: tonic client and server over mutual TLS ([`pki`] makes the certificates).
//! - [`node`]: a running node and its operations.
#![warn(missing_docs)]

pub mod log_store;
pub mod network;
pub mod node;
pub mod pki;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use node::{
    ForwardFn, KeyFn, Node, NodeHandle, NodeOptions, ProposeFn, StartError, TransferHooks,
    WriteError,
};
pub use state_machine::Application;
