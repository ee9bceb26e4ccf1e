//! The log's replicated state: what a Raft entry means for the log (a batch of leaves),
//! how committed batches are applied to the Merkle tree and the leaf store on every node,
//! and how the leader groups concurrent submissions into one entry (group commit).

pub mod command;
pub mod group_commit;
pub mod state;

pub use command::{
    decode, decode_leaves, decode_result, encode, encode_leaves, encode_result, ApplyOutcome,
    LogCommand,
};
pub use group_commit::{BatchConfig, Batcher, GroupCommit, ProposeError};
pub use state::LeafState;
