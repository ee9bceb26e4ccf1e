//! Quorumlog's replication layer: openraft over RocksDB and mutually authenticated gRPC.
//!
//! - [`types`]: the openraft type configuration and every openraft type alias (the one
//!   place an openraft upgrade touches).
//! - [`codec`]: Quorumlog's own encoding of everything persisted or sent (the one place
//!   openraft's types meet bytes); [`data_format`]: the data directory's version.
//! - [`log_store`]: the Raft log and vote on RocksDB, with group-committed fsyncs.
//! - [`application`]: the one trait the application implements, given at start.
//! - [`state_machine`]: applies committed entries through an [`Application`] atomically
//!   with `last_applied`; snapshots are RocksDB checkpoints ([`snapshot`]).
//! - [`network`]: tonic client and server over mutual TLS ([`pki`] makes the certificates).
//! - [`node`]: a running node and its operations.

pub mod application;
pub mod codec;
pub mod data_format;
pub mod log_store;
pub mod network;
pub mod node;
pub mod pki;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use application::{Application, Refusal};
pub use node::{Node, NodeHandle, NodeOptions, StartError, WriteError};
