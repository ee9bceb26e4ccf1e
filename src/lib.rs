//! Quorumlog: a Raft-replicated transparency log that speaks the Sigsum v1 protocol.
//!
//! - [`merkle`]: the RFC 6962 tree stored in RocksDB, with proofs at any size.
//! - [`sigsum`]: the Sigsum v1 wire formats, signatures, checkpoints and cosignatures.
#![warn(missing_docs)]

pub mod merkle;
pub mod sigsum;
