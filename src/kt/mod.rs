//! The Key Transparency directory's server side (docs/kt.md). The verifiable formats and
//! algorithms are the `quorumlog-kt` crate; here is what needs the node's storage.
//!
//! - [`trie_store`]: the map's versioned trie records in RocksDB.

pub mod trie_store;
