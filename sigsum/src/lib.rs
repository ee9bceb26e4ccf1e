//! Sigsum v1 for clients and servers alike: the wire formats byte for byte as sigsum-go
//! reads and writes them (the ASCII codec, leaves, tree heads and checkpoints,
//! cosignatures, proofs, submit tokens), RFC 6962 hashing and proof verification, and trust
//! policies with their quorum rule.
//!
//! It verifies signatures and builds the exact bytes that get signed; it never holds a
//! private key, and it has no storage, networking or async runtime, so a monitor, a
//! witness or the Key Transparency client can depend on it as the log server does.

pub mod ascii;
pub mod checkpoint;
pub mod cosignature;
pub mod crypto;
pub mod leaf;
pub mod merkle;
pub mod policy;
pub mod proofs;
pub mod token;
pub mod tree_head;

#[cfg(test)]
mod vectors;
