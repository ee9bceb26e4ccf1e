//! Quorumlog: a Raft-replicated transparency log that speaks the Sigsum v1 protocol.
//!
//! - [`merkle`]: the RFC 6962 tree stored in RocksDB, with proofs at any size.
//! - [`sigsum`]: the Sigsum v1 wire formats, signatures, checkpoints and cosignatures.
//! - [`replicated`]: the log's replicated state (leaf batches applied to the tree) and
//!   group commit on the leader; replication itself is the `quorumlog-raft` crate.
//! - [`api`]: the public Sigsum HTTP API, rate limiting and the ops listener.
//! - [`publish`]: tree-head signing and witness cosigning.
//! - [`metrics`]: counters and histograms for the ops listener.
//! - [`status`]: the typed cluster status behind the status page and `admin status`.
//! - [`config`]: a node's configuration file.
//! - [`cli`]: the `quorumlog` command.

pub mod api;
pub mod cli;
pub mod config;
pub mod merkle;
pub mod metrics;
pub mod publish;
pub mod replicated;
pub mod sigsum;
pub mod status;
