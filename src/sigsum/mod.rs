//! Sigsum v1 wire formats, byte for byte as sigsum-go reads and writes them: the ASCII
//! codec, leaves, tree heads and checkpoints, cosignatures, proofs and submit tokens.
//!
//! This module verifies signatures and builds the exact bytes that get signed; it never
//! holds the log's private key.

pub mod ascii;
pub mod checkpoint;
pub mod cosignature;
pub mod crypto;
pub mod leaf;
pub mod policy;
pub mod proofs;
pub mod token;
pub mod tree_head;

#[cfg(test)]
mod vectors;
