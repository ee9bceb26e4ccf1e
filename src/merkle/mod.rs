//! The RFC 6962 Merkle tree: hashing, tiles of subtree hashes in RocksDB, and proofs.
//!
//! Leaves are appended in batches ([`MerkleStore::append`]); the root and both proof kinds
//! are available at any size up to the current one, because they are built only from
//! perfect subtrees, which never change once complete.

mod proof;
mod store;
mod tile;

pub use quorumlog_sigsum::merkle::{
    empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, VerifyError,
};
pub use store::{
    AppendOutcome, MerkleError, MerkleStore, TreeColumns, CF_LEAF_INDEX, CF_META, CF_TILES,
};

#[cfg(test)]
mod tests;
