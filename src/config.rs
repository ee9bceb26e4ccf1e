//! A node's configuration file (TOML). Relative paths are resolved against the directory
//! of the configuration file, so a cluster directory can be moved as a whole.

use quorumlog_raft::types::{NodeId, Peer, RaftConfig, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Raft entries per append message.
const PAYLOAD_ENTRIES: u64 = 64;

/// Largest `batch.max_leaves`: an append of [`PAYLOAD_ENTRIES`] full batches stays under
/// half the gRPC message limit (4096 leaves of 128 bytes make 512 KiB per entry).
const MAX_BATCH_LEAVES: usize = quorumlog_raft::network::MAX_MESSAGE_BYTES
    / 2
    / (PAYLOAD_ENTRIES as usize * crate::sigsum::leaf::TreeLeaf::LEN);

/// A configuration file that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid configuration {path}: {reason}")]
    Invalid {
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node.
    pub node: NodeSection,
    /// Certificates for node-to-node mutual TLS.
    pub tls: TlsSection,
    /// The log's identity.
    pub log: LogSection,
    /// The initial members, used only by the node that bootstraps the cluster.
    #[serde(default)]
    pub members: Vec<MemberSection>,
    /// Group commit.
    #[serde(default)]
    pub batch: BatchSection,
    /// Raft timing and log compaction.
    #[serde(default)]
    pub raft: RaftSection,
    /// Tree-head publication.
    #[serde(default)]
    pub publish: PublishSection,
    /// The public HTTP API.
    #[serde(default)]
    pub api: ApiSection,
    /// Rate limits for add-leaf.
    #[serde(default)]
    pub rate_limit: RateLimitSection,
    /// The Key Transparency directory (docs/kt.md); none if absent.
    #[serde(default)]
    pub kt: Option<KtSection>,
    /// Directory the relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[node]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node id, unique in the cluster and never reused.
    pub id: NodeId,
    /// Data directory (Raft log, state, snapshots).
    pub data_dir: PathBuf,
    /// `host:port` of the node-to-node gRPC listener, as peers reach it.
    pub raft_addr: String,
    /// `host:port` of the public HTTP API.
    pub api_addr: String,
    /// `host:port` of the ops listener (`/metrics`, `/health`); none if absent.
    #[serde(default)]
    pub ops_addr: Option<String>,
    /// Initialise a new cluster from `[[members]]` if this node has no Raft state yet.
    #[serde(default)]
    pub bootstrap: bool,
}

/// `[tls]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The cluster CA's certificate revocation list (PEM), written by `quorumlog
    /// revoke-cert`; re-read when it changes. Without it no certificate can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// The log's Ed25519 public key, hex.
    pub public_key: String,
    /// The log's private key file (hex seed, mode 0600), for nodes that sign.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Sigsum policy file naming the witnesses to collect cosignatures from.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// Key custody: `file` (every node reads `key_file`) or `handoff` (one node holds the
    /// key in memory; transfers hand it over).
    #[serde(default)]
    pub custody: crate::publish::custody::Custody,
    /// In custody `handoff`: delete `key_file` once the key is loaded into memory.
    #[serde(default)]
    pub delete_key_file: bool,
}

/// `[publish]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishSection {
    /// A new checkpoint is signed and sent to the witnesses this often.
    pub interval_ms: u64,
    /// Longest a publication round waits for the witnesses (at most the interval).
    pub witness_timeout_ms: u64,
}

impl Default for PublishSection {
    fn default() -> Self {
        PublishSection {
            interval_ms: 3000,
            witness_timeout_ms: 3000,
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Path prefix of the public API (`""` serves `/add-leaf`, `"log"` serves `/log/add-leaf`).
    pub url_prefix: String,
    /// add-leaf answers 202 if its leaf is not committed within this time.
    pub add_leaf_wait_ms: u64,
    /// Which node checks an add-leaf request's token and signature.
    pub check_submissions_on: CheckSubmissionsOn,
    /// Most leaves one get-leaves answer carries.
    pub max_range: u64,
    /// Most reads (GET) served at once; more get 503.
    pub max_in_flight: usize,
    /// Most writes (add-leaf) served at once; more get 503.
    pub max_writes_in_flight: usize,
    /// Most open connections from one client address; more are closed at once.
    pub max_connections_per_client: usize,
    /// Longest a client may take to send its request headers.
    pub header_timeout_ms: u64,
    /// Longest a client may take to send a request body (no budget is held meanwhile).
    pub body_timeout_ms: u64,
    /// Longest one request may take once its body is in; also the longest a response
    /// write may stall on a client that does not read.
    pub request_timeout_ms: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            url_prefix: String::new(),
            add_leaf_wait_ms: 5000,
            check_submissions_on: CheckSubmissionsOn::ReceivingNode,
            max_range: 512,
            max_in_flight: 4096,
            max_writes_in_flight: 1024,
            max_connections_per_client: 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// `[kt]`: the directory's identity and epochs. Its keys derive from the log key
/// (`quorumlog init-cluster --kt` writes their public halves here).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KtSection {
    /// Binds map hashes to this directory (any number; never change it).
    #[serde(default = "default_map_id")]
    pub map_id: u64,
    /// The directory's Ed25519 public key, hex.
    pub directory_key: String,
    /// The directory's VRF public key (ristretto255), hex.
    pub vrf_key: String,
    /// The leader closes an epoch this often when updates are waiting.
    #[serde(default = "default_epoch_interval_ms")]
    pub epoch_interval_ms: u64,
    /// ... or as soon as this many updates are waiting.
    #[serde(default = "default_max_epoch_mutations")]
    pub max_epoch_mutations: u64,
    /// Longest user id, in bytes.
    #[serde(default = "default_max_id_bytes")]
    pub max_id_bytes: usize,
    /// Longest value, in bytes.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
}

fn default_map_id() -> u64 {
    1
}
fn default_epoch_interval_ms() -> u64 {
    1000
}
fn default_max_epoch_mutations() -> u64 {
    10_000
}
fn default_max_id_bytes() -> usize {
    256
}
fn default_max_value_bytes() -> usize {
    8192
}

/// Where add-leaf requests are checked (`[api] check_submissions_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckSubmissionsOn {
    /// The node the client sent the request to; followers forward checked leaves in
    /// batches, so every node spends CPU on signatures, not only the leader.
    ReceivingNode,
    /// Only the leader; followers forward the raw request.
    Leader,
}

/// `[rate_limit]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// Rate-limit rules (`key`, `domain`, `public` lines); no file means no limit.
    pub file: Option<PathBuf>,
    /// Accept submit tokens for the test domain `test.sigsum.org`.
    pub allow_test_domain: bool,
    /// Answer submit-token TXT lookups from this file (`<name> <record>` lines) instead of
    /// DNS; for tests and air-gapped deployments.
    pub static_txt_file: Option<PathBuf>,
}

/// `[[members]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    /// Node id.
    pub id: NodeId,
    /// gRPC address.
    pub raft_addr: String,
    /// HTTP address.
    pub api_addr: String,
}

/// `[batch]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// A Raft entry closes at this many leaves.
    pub max_leaves: usize,
    /// ... or this many microseconds after its first leaf.
    pub max_delay_us: u64,
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            max_leaves: 1024,
            max_delay_us: 1000,
        }
    }
}

/// `[raft]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log after a snapshot, for followers that lag a little.
    pub keep_entries_after_snapshot: u64,
    /// Longest a snapshot transfer to one follower may take.
    pub snapshot_timeout_ms: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 10_000,
            keep_entries_after_snapshot: 1_000,
            snapshot_timeout_ms: 600_000,
        }
    }
}

impl NodeConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        NodeConfig::parse(&text, &p, base_dir)
    }

    /// Parses and checks config text; `path` names it in errors, relative paths in it are
    /// relative to `base_dir`.
    pub fn parse(text: &str, path: &str, base_dir: PathBuf) -> Result<NodeConfig, ConfigError> {
        let mut c: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            source: Box::new(e),
        })?;
        c.base_dir = base_dir;
        c.check().map_err(|reason| ConfigError::Invalid {
            path: path.to_string(),
            reason,
        })?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        if self.batch.max_leaves == 0 {
            return Err("batch.max_leaves must be at least 1".into());
        }
        if self.batch.max_leaves > MAX_BATCH_LEAVES {
            return Err(format!(
                "batch.max_leaves must be at most {MAX_BATCH_LEAVES}: a Raft append carries up \
                 to {PAYLOAD_ENTRIES} batches and must fit a {} MiB gRPC message with room to spare",
                quorumlog_raft::network::MAX_MESSAGE_BYTES >> 20
            ));
        }
        if self.publish.interval_ms == 0 {
            return Err("publish.interval_ms must be at least 1".into());
        }
        if self.api.max_range == 0
            || self.api.max_in_flight == 0
            || self.api.max_writes_in_flight == 0
            || self.api.max_connections_per_client == 0
        {
            return Err(
                "api.max_range, api.max_in_flight, api.max_writes_in_flight and \
                 api.max_connections_per_client must be at least 1"
                    .into(),
            );
        }
        if self
            .api
            .url_prefix
            .contains(|c: char| c == '?' || c == '#' || c.is_whitespace())
        {
            return Err("api.url_prefix must be a plain path".into());
        }
        if hex_key(&self.log.public_key).is_none() {
            return Err("log.public_key must be 64 hex characters".into());
        }
        if let Some(kt) = &self.kt {
            if hex_key(&kt.directory_key).is_none() || hex_key(&kt.vrf_key).is_none() {
                return Err("kt.directory_key and kt.vrf_key must be 64 hex characters".into());
            }
            if kt.epoch_interval_ms == 0 || kt.max_epoch_mutations == 0 {
                return Err(
                    "kt.epoch_interval_ms and kt.max_epoch_mutations must be at least 1".into(),
                );
            }
            if kt.max_id_bytes == 0 || kt.max_value_bytes == 0 || kt.max_value_bytes > 16 << 10 {
                return Err(
                    "kt.max_id_bytes must be at least 1 and kt.max_value_bytes between 1 and 16384 \
                     (an update travels hex-encoded in one request body)"
                        .into(),
                );
            }
        }
        if self.node.bootstrap && !self.members.iter().any(|m| m.id == self.node.id) {
            return Err("a bootstrapping node must list itself in [[members]]".into());
        }
        Ok(())
    }

    /// The log's public key.
    pub fn log_public_key(&self) -> crate::sigsum::crypto::PublicKey {
        // Checked when the file was loaded.
        crate::sigsum::crypto::PublicKey(hex_key(&self.log.public_key).unwrap_or([0; 32]))
    }

    /// A path from the file, resolved against the file's directory.
    /// The directory's parameters, if this node runs one.
    pub fn kt_params(&self) -> Option<crate::kt::directory::Params> {
        let kt = self.kt.as_ref()?;
        Some(crate::kt::directory::Params {
            map_id: kt.map_id,
            signing_key: crate::sigsum::crypto::PublicKey(hex_key(&kt.directory_key)?),
            vrf_key: hex_key(&kt.vrf_key)?,
        })
    }

    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The node's certificates, read from the files the config names.
    pub fn tls_files(&self) -> std::io::Result<quorumlog_raft::network::tls::TlsFiles> {
        quorumlog_raft::network::tls::TlsFiles::load(
            &self.path(&self.tls.ca_cert),
            &self.path(&self.tls.cert),
            &self.path(&self.tls.key),
        )
        .map(|t| t.with_crl(self.tls.crl.as_deref().map(|p| self.path(p))))
    }

    /// The initial membership.
    pub fn members(&self) -> BTreeMap<NodeId, Peer> {
        self.members
            .iter()
            .map(|m| {
                (
                    m.id,
                    Peer {
                        raft_addr: m.raft_addr.clone(),
                        api_addr: m.api_addr.clone(),
                    },
                )
            })
            .collect()
    }

    /// openraft settings derived from `[raft]`.
    pub fn raft_config(&self) -> RaftConfig {
        let r = &self.raft;
        RaftConfig {
            cluster_name: "quorumlog".into(),
            heartbeat_interval: r.heartbeat_interval_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            install_snapshot_timeout: r.snapshot_timeout_ms,
            // Nodes apply the same log, so with one threshold they would all snapshot (and
            // flush their memtables) at the same moment; spread them over a fifth of the
            // interval by node id.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(
                r.snapshot_every_entries + (self.node.id % 5) * r.snapshot_every_entries / 25,
            ),
            max_in_snapshot_log_to_keep: r.keep_entries_after_snapshot,
            // A follower further behind than this is sent a snapshot instead of entries.
            replication_lag_threshold: r.snapshot_every_entries + r.keep_entries_after_snapshot,
            max_payload_entries: PAYLOAD_ENTRIES,
            ..RaftConfig::default()
        }
    }

    /// Group-commit settings derived from `[batch]`.
    pub fn batch_config(&self) -> crate::replicated::BatchConfig {
        crate::replicated::BatchConfig {
            max_leaves: self.batch.max_leaves,
            max_delay: Duration::from_micros(self.batch.max_delay_us),
        }
    }
}

fn hex_key(s: &str) -> Option<[u8; 32]> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(s, &mut k).ok().map(|_| k)
}
