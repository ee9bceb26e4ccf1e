//! Quorumlog: a Raft-replicated transparency log that speaks the Sigsum v1 protocol.
//!
//! - [`merkle`]: the RFC 6962 tree stored in RocksDB, with proofs at any size.
//! - [`sigsum`]: the Sigsum v1 wire formats, signatures, checkpoints and cosignatures
//!   (the `quorumlog-sigsum` crate, which has no storage, networking or runtime).
//! - [`replicated`]: the log's replicated state (leaf batches applied to the tree) and
//!   group commit on the leader; replication itself is the `quorumlog-raft` crate.
//! - [`api`]: the public Sigsum HTTP API, rate limiting and the ops listener.
//! - [`publish`]: tree-head signing and witness cosigning.
//! - [`metrics`]: counters and histograms for the ops listener.
//! - [`status`]: the typed cluster status behind the status page and `admin status`.
//! - [`kt`]: the Key Transparency directory's storage (the formats are `quorumlog-kt`).
//! - [`config`]: a node's configuration file.
//! - [`wire`]: the log's node-to-node messages (proto/log.proto).
//! - [`app`]: all of the above as the one application a node gives its Raft layer.
//! - [`cli`]: the `quorumlog` command.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod kt;
pub mod merkle;
pub mod metrics;
pub mod publish;
pub mod replicated;
pub mod status;
pub mod wire;

/// The Sigsum v1 formats, from the `quorumlog-sigsum` crate.
pub use quorumlog_sigsum as sigsum;
