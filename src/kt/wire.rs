//! The directory's HTTP API messages (JSON; binary fields hex), shared by the server and
//! the `quorumlog kt` client. docs/kt.md describes each field and how it is verified.

use serde::{Deserialize, Serialize};

/// `GET /kt/v1/parameters`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    pub map_id: u64,
    pub directory_key: String,
    pub vrf_key: String,
    /// The Sigsum log that holds the directory's map heads.
    pub log_key: String,
    pub epoch_interval_ms: u64,
    pub max_epoch_mutations: u64,
    pub max_id_bytes: usize,
    pub max_value_bytes: usize,
}

/// `POST /kt/v1/update`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The user id (UTF-8).
    pub id: String,
    pub value: String,
    pub nonce: String,
    /// The signed mutation (`Mutation::encode`).
    pub mutation: String,
}

/// The answer to an update the directory queued (200, or 409/403 with the same body if
/// the mutation was logged and rejected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAnswer {
    /// Its place in the log of mutations.
    pub log_index: u64,
    /// `applied`, `stale`, `not-authorised` or `new-keys-unproven`.
    pub verdict: String,
}

/// `GET /kt/v1/index?id=..`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexAnswer {
    pub id: String,
    pub index: String,
    pub vrf_proof: String,
}

/// `GET /kt/v1/lookup?id=..[&epoch=..]`: a user's entry at an epoch, with everything that
/// proves it, up to a cosigned tree head of the Sigsum log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    pub id: String,
    pub index: String,
    pub vrf_proof: String,
    pub epoch: u64,
    /// The user's entry, value and nonce; absent if the user has none at this epoch.
    pub entry: Option<String>,
    pub value: Option<String>,
    pub nonce: Option<String>,
    /// The map proof of `index` under the head's map root (`map::Proof::encode`).
    pub map_proof: String,
    pub head: SmhWithLeaf,
    /// The Sigsum log's published head (Sigsum ASCII, with cosignatures) ...
    pub tree_head: String,
    /// ... and the inclusion path of the head's leaf in it, sibling first.
    pub inclusion_path: Vec<String>,
}

/// A signed map head and the Sigsum leaf that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmhWithLeaf {
    pub epoch: u64,
    /// `SignedMapHead::encode`.
    pub signed_head: String,
    /// The 128-byte Sigsum leaf.
    pub leaf: String,
    pub leaf_index: u64,
}

/// `GET /kt/v1/history?id=..&from=..&to=..`: lookups at each epoch in the range where the
/// user's entry changed, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub changes: Vec<Lookup>,
}

/// `GET /kt/v1/heads?start=..&end=..`: heads of epochs `[start, end)` that are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heads {
    pub heads: Vec<SmhWithLeaf>,
    /// The newest epoch with a head.
    pub latest: u64,
}

/// `GET /kt/v1/records?start=..&end=..`: records of the log of mutations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    pub start: u64,
    pub records: Vec<String>,
}

/// `GET /kt/v1/epochs/{n}`: one epoch for a monitor: its head and the records between
/// the previous epoch's marker and its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub head: SmhWithLeaf,
    pub first_record: u64,
    pub records: Vec<String>,
}

/// `GET /kt/v1/log/inclusion?index=..&size=..` and `GET /kt/v1/log/consistency?old=..&new=..`:
/// an RFC 6962 proof in the log of mutations (sizes up to the newest published head's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogProof {
    /// Hashes, hex, in RFC 9162 order.
    pub path: Vec<String>,
}
