//! The Key Transparency directory's server side (docs/kt.md). The verifiable formats and
//! algorithms are the `quorumlog-kt` crate; here is what runs in the node.
//!
//! - [`directory`]: the replicated state (entries, the versioned map, the log of
//!   mutations, signed map heads) and how commands apply to it;
//! - [`trie_store`]: the map's versioned trie records in RocksDB;
//! - [`updates`]: queueing an update (followers forward, the leader checks and commits);
//! - [`epochs`]: the leader's loop that closes epochs and signs their heads;
//! - [`api`] and [`wire`]: the HTTP API and its JSON messages;
//! - [`verify`]: what a client checks in an answer.

pub mod api;
pub mod directory;
pub mod epochs;
pub mod trie_store;
pub mod updates;
pub mod verify;
pub mod wire;
