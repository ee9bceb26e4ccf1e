//! RFC 6962 Merkle tree hashing and proof verification.

mod hash;
mod verify;

pub use hash::{empty_root, leaf_hash, node_hash, Hash};
pub use verify::{verify_consistency, verify_inclusion, VerifyError};
