//! The RFC 6962 Merkle tree: hashing, tiles of subtree hashes in RocksDB, and proofs.
//!
//! Leaves are appended in batches ([`MerkleStore::append`]); the root and both proof kinds
//! are available at any size up to the current one, because they are built only from
//! perfect subtrees, which never change once complete.

mod hash;
mod proof;
mod store;
mod tile;

pub use hash::{empty_root, leaf_hash, node_hash, Hash};
pub use proof::{verify_consistency, verify_inclusion, VerifyError};
pub use store::{AppendOutcome, MerkleError, MerkleStore, CF_LEAF_INDEX, CF_META, CF_TILES};

#[cfg(test)]
mod tests;
