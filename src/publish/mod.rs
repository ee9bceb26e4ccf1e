//! Tree-head publication: signing checkpoints, collecting witness cosignatures, and
//! committing the cosigned head through Raft.

pub mod custody;
pub mod publisher;
pub mod signer;
pub mod witness;
