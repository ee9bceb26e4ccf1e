//! The verifiable parts of Quorumlog's Key Transparency directory, shared by the server,
//! the `quorumlog kt` client and monitors: the sparse Merkle map's hashing ([`hasher`]),
//! roots and proofs ([`map`]) and its versioned compressed form ([`trie`]), users' entries and signed changes ([`entry`]), the records
//! of the log of mutations ([`record`]), signed map heads ([`head`]), the replay of an
//! epoch ([`epoch`]), and the VRF that turns a user id into a map index ([`vrf`]). No
//! storage, networking or async runtime (docs/kt.md).

pub mod entry;
pub mod epoch;
pub mod hasher;
pub mod head;
pub mod map;
pub mod record;
pub mod trie;
pub mod vrf;
