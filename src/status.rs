//! The cluster status: one typed structure behind the status page (`GET /`), its JSON form
//! (`GET /status.json`) and `quorumlog admin status --json`. Scripts and tests read the
//! JSON; nothing parses the page or the text table.
//!
//! Each node reports a [`NodeAppStatus`] (the log's part of the Raft `NodeStatus`); the node
//! that answers asks every member for its status over the cluster's authenticated channel
//! and [`assemble`]s the view. Nothing secret is in it: keys appear only as public keys.

use crate::publish::custody::Custody;
use crate::sigsum::checkpoint::origin;
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::policy::PolicyWitness;
use crate::sigsum::tree_head::CosignedTreeHead;
use quorumlog_raft::network::pb::{NodeStatus, Role};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether a node runs publication rounds, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Publishing {
    /// The node has not run its first publication tick yet.
    Starting,
    /// Leader with the signing key: signs, collects cosignatures and publishes.
    Publishing,
    /// Not the leader.
    Follower,
    /// Leader without the signing key (custody `handoff` after an unplanned loss).
    NoSigningKey,
    /// Leader, paused while leadership and the key move to another node.
    TransferInProgress,
}

/// The published head as a node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedHead {
    /// Number of leaves.
    pub size: u64,
    /// Root hash, hex.
    pub root_hash: String,
    /// The witness cosignatures it carries.
    pub cosignatures: Vec<CosignatureInfo>,
}

/// One cosignature of the published head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignatureInfo {
    /// SHA-256 of the witness key, hex.
    pub key_hash: String,
    /// Unix seconds at which the witness cosigned.
    pub timestamp: u64,
}

impl From<&CosignedTreeHead> for PublishedHead {
    fn from(h: &CosignedTreeHead) -> PublishedHead {
        PublishedHead {
            size: h.head.size,
            root_hash: h.head.root_hash.to_hex(),
            cosignatures: h
                .cosignatures
                .iter()
                .map(|c| CosignatureInfo {
                    key_hash: c.key_hash.to_hex(),
                    timestamp: c.timestamp,
                })
                .collect(),
        }
    }
}

/// The log's part of one node's status (JSON in `NodeStatus.app_status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAppStatus {
    /// Leaves in the node's applied tree.
    pub tree_size: u64,
    /// Root of the applied tree, hex; none before the state is opened.
    pub root_hash: Option<String>,
    /// Size of the latest signed head in the replicated state.
    pub signed_size: Option<u64>,
    /// The latest published head this node has applied.
    pub published: Option<PublishedHead>,
    /// Whether this node publishes (node-local).
    pub publishing: Publishing,
    /// Whether this node holds the signing key in memory (node-local).
    pub key_loaded: bool,
    /// The Key Transparency directory's progress, if this log runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryStatus>,
}

/// The directory's progress on one node (docs/kt.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryStatus {
    /// The last closed epoch.
    pub epoch: u64,
    /// The last epoch with a signed map head.
    pub signed_epoch: u64,
    /// Updates waiting in the open epoch.
    pub pending: u64,
    /// Records in the log of mutations.
    pub log_size: u64,
}

impl NodeAppStatus {
    /// The JSON carried in `NodeStatus.app_status`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads `NodeStatus.app_status`; none if it is missing or not this schema.
    pub fn decode(bytes: &[u8]) -> Option<NodeAppStatus> {
        serde_json::from_slice(bytes).ok()
    }
}

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRole {
    /// Leads the cluster.
    Leader,
    /// Voter following a leader.
    Follower,
    /// Voter asking for votes.
    Candidate,
    /// Non-voting member catching up.
    Learner,
    /// Raft has stopped on this node.
    Shutdown,
    /// The node reported a role this version does not know.
    Unknown,
}

impl RaftRole {
    /// The role a node reported.
    pub fn of(s: &NodeStatus) -> RaftRole {
        match s.role() {
            Role::Leader => RaftRole::Leader,
            Role::Follower => RaftRole::Follower,
            Role::Candidate => RaftRole::Candidate,
            Role::Learner => RaftRole::Learner,
            Role::Shutdown => RaftRole::Shutdown,
            Role::Unknown => RaftRole::Unknown,
        }
    }

    /// The name used in the JSON and on the page.
    pub fn as_str(self) -> &'static str {
        match self {
            RaftRole::Leader => "leader",
            RaftRole::Follower => "follower",
            RaftRole::Candidate => "candidate",
            RaftRole::Learner => "learner",
            RaftRole::Shutdown => "shutdown",
            RaftRole::Unknown => "unknown",
        }
    }
}

/// What the status needs to know about the log beyond the nodes' reports.
#[derive(Debug, Clone)]
pub struct StatusContext {
    /// The log's public key.
    pub log_key: PublicKey,
    /// Key custody mode.
    pub custody: Custody,
    /// The witnesses of the policy, to name cosignatures.
    pub witnesses: Vec<PolicyWitness>,
}

/// The whole cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that assembled this view.
    pub reported_by: u64,
    /// When, in Unix milliseconds.
    pub at_unix_ms: u64,
    /// The log's identity.
    pub log: LogIdentity,
    /// The published head the reporting node serves.
    pub published: Option<PublishedView>,
    /// Every witness of the policy and its cosignature in that head.
    pub witnesses: Vec<WitnessView>,
    /// The leader, as the reporting node knows it.
    pub leader: Option<u64>,
    /// The reporting node's current term.
    pub term: u64,
    /// The node that runs publication rounds (the leader holding the key), if any answered.
    pub publisher: Option<u64>,
    /// The nodes that hold the signing key in memory.
    pub key_holders: Vec<u64>,
    /// Every member, in id order.
    pub members: Vec<MemberView>,
    /// Leader changes the reporting node saw, oldest first.
    pub leader_changes: Vec<LeaderChangeView>,
}

/// The log's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogIdentity {
    /// The checkpoint origin (`sigsum.org/v1/tree/<key hash>`).
    pub origin: String,
    /// The Ed25519 public key, hex.
    pub public_key: String,
    /// Key custody mode.
    pub custody: Custody,
}

/// The published head, with its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedView {
    /// Number of leaves.
    pub size: u64,
    /// Root hash, hex.
    pub root_hash: String,
    /// Seconds since its newest cosignature (heads are re-cosigned every interval, so this
    /// is how long ago the log last published); none without cosignatures.
    pub age_seconds: Option<u64>,
}

/// One witness of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessView {
    /// Its name in the policy.
    pub name: String,
    /// SHA-256 of its key, hex.
    pub key_hash: String,
    /// Its cosignature's timestamp in the published head; none if the head has none.
    pub cosigned_at: Option<u64>,
    /// Seconds since that cosignature.
    pub age_seconds: Option<u64>,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Voter or learner.
    pub voter: bool,
    /// Node-to-node gRPC address.
    pub raft_addr: String,
    /// Public HTTP address.
    pub api_addr: String,
    /// Why the member did not answer; none if it did (then `node` is set).
    pub error: Option<String>,
    /// What the member reported.
    pub node: Option<MemberReport>,
}

/// What a member that answered reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReport {
    /// Raft role.
    pub role: RaftRole,
    /// Current term.
    pub term: u64,
    /// The leader it follows.
    pub leader: Option<u64>,
    /// Highest log index it knows committed.
    pub committed_index: Option<u64>,
    /// Highest log index it applied.
    pub applied_index: Option<u64>,
    /// Entries it trails the highest commit index any member reported.
    pub lag: u64,
    /// Whether it has caught up with a leader since it started (until then it serves no
    /// tree head).
    #[serde(default)]
    pub caught_up: bool,
    /// Last index in its log.
    pub last_log_index: Option<u64>,
    /// Index its latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The log's view on this node; none if the node sent no readable report.
    pub app: Option<NodeAppStatus>,
}

/// A change of leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderChangeView {
    /// When the reporting node saw it, Unix milliseconds.
    pub at_unix_ms: u64,
    pub term: u64,
    /// The new leader.
    pub leader: u64,
}

/// Unix milliseconds now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Asks every member that `local` lists (but `local` itself) for its status with `fetch`,
/// then assembles the view.
pub async fn gather<F, Fut>(local: NodeStatus, ctx: &StatusContext, fetch: F) -> ClusterStatus
where
    F: Fn(u64, String) -> Fut,
    Fut: Future<Output = Result<NodeStatus, String>>,
{
    let asks = local.members.iter().filter(|m| m.id != local.id).map(|m| {
        let f = fetch(m.id, m.raft_addr.clone());
        let id = m.id;
        async move { (id, f.await) }
    });
    let peers = futures::future::join_all(asks).await;
    assemble(local, peers, ctx, now_unix_ms())
}

/// Builds the view from the reporting node's status and its peers' answers.
pub fn assemble(
    local: NodeStatus,
    peers: Vec<(u64, Result<NodeStatus, String>)>,
    ctx: &StatusContext,
    now_ms: u64,
) -> ClusterStatus {
    let now_s = now_ms / 1000;
    let local_app = NodeAppStatus::decode(&local.app_status);
    let mut answers: Vec<(u64, Result<NodeStatus, String>)> = peers;
    answers.push((local.id, Ok(local.clone())));
    let max_commit = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.committed_index)
        .max()
        .unwrap_or(0);

    let mut members: Vec<MemberView> = local
        .members
        .iter()
        .map(|m| {
            let answer = answers.iter().find(|(id, _)| *id == m.id).map(|(_, r)| r);
            let (node, error) = match answer {
                Some(Ok(s)) => (Some(report(s, max_commit)), None),
                Some(Err(e)) => (None, Some(e.clone())),
                None => (None, Some("not asked".into())),
            };
            MemberView {
                id: m.id,
                voter: m.voter,
                raft_addr: m.raft_addr.clone(),
                api_addr: m.api_addr.clone(),
                error,
                node,
            }
        })
        .collect();
    // A node that is not (yet, or any more) a member still reports itself.
    if local.members.iter().all(|m| m.id != local.id) {
        members.push(MemberView {
            id: local.id,
            voter: false,
            raft_addr: String::new(),
            api_addr: String::new(),
            error: None,
            node: Some(report(&local, max_commit)),
        });
    }
    members.sort_by_key(|m| m.id);

    let app_of = |m: &MemberView| m.node.as_ref().and_then(|n| n.app.clone());
    let publisher = members
        .iter()
        .find(|m| app_of(m).is_some_and(|a| a.publishing == Publishing::Publishing))
        .map(|m| m.id);
    let key_holders = members
        .iter()
        .filter(|m| app_of(m).is_some_and(|a| a.key_loaded))
        .map(|m| m.id)
        .collect();

    let head = local_app.as_ref().and_then(|a| a.published.clone());
    let age = |ts: u64| now_s.saturating_sub(ts);
    let witnesses = ctx
        .witnesses
        .iter()
        .map(|w| {
            let key_hash = w.public_key.key_hash().to_hex();
            let cosigned_at = head.as_ref().and_then(|h| {
                h.cosignatures
                    .iter()
                    .find(|c| c.key_hash == key_hash)
                    .map(|c| c.timestamp)
            });
            WitnessView {
                name: w.name.clone(),
                key_hash,
                cosigned_at,
                age_seconds: cosigned_at.map(age),
            }
        })
        .collect();
    let published = head.map(|h| PublishedView {
        size: h.size,
        root_hash: h.root_hash,
        age_seconds: h.cosignatures.iter().map(|c| c.timestamp).max().map(age),
    });

    ClusterStatus {
        reported_by: local.id,
        at_unix_ms: now_ms,
        log: LogIdentity {
            origin: origin(&ctx.log_key.key_hash()),
            public_key: hex::encode(ctx.log_key.0),
            custody: ctx.custody,
        },
        published,
        witnesses,
        leader: local.leader,
        term: local.term,
        publisher,
        key_holders,
        members,
        leader_changes: local
            .leader_changes
            .iter()
            .map(|c| LeaderChangeView {
                at_unix_ms: c.at_unix_ms,
                term: c.term,
                leader: c.leader,
            })
            .collect(),
    }
}

fn report(s: &NodeStatus, max_commit: u64) -> MemberReport {
    MemberReport {
        role: RaftRole::of(s),
        term: s.term,
        leader: s.leader,
        committed_index: s.committed_index,
        applied_index: s.applied_index,
        lag: max_commit.saturating_sub(s.applied_index.unwrap_or(0)),
        caught_up: s.caught_up,
        last_log_index: s.last_log_index,
        snapshot_index: s.snapshot_index,
        app: NodeAppStatus::decode(&s.app_status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_raft::network::pb::{LeaderChange, Member};

    fn witness(name: &str, seed: u8) -> PolicyWitness {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
        PolicyWitness {
            name: name.into(),
            public_key: PublicKey(key.to_bytes()),
            url: None,
        }
    }

    fn node(id: u64, role: Role, applied: u64, app: &NodeAppStatus) -> NodeStatus {
        NodeStatus {
            id,
            role: role.into(),
            term: 7,
            leader: Some(1),
            committed_index: Some(applied),
            applied_index: Some(applied),
            members: (1..=3)
                .map(|id| Member {
                    id,
                    raft_addr: format!("n{id}:7001"),
                    api_addr: format!("n{id}:7000"),
                    voter: true,
                })
                .collect(),
            app_status: app.encode(),
            leader_changes: vec![LeaderChange {
                at_unix_ms: 5,
                term: 7,
                leader: 1,
            }],
            ..NodeStatus::default()
        }
    }

    #[test]
    fn assembles_roles_lag_publisher_and_witness_ages() {
        let w1 = witness("w1", 1);
        let w2 = witness("w2", 2);
        let ctx = StatusContext {
            log_key: PublicKey([3; 32]),
            custody: Custody::File,
            witnesses: vec![w1.clone(), w2],
        };
        let leader_app = NodeAppStatus {
            directory: None,
            tree_size: 10,
            root_hash: Some("ab".into()),
            signed_size: Some(10),
            published: Some(PublishedHead {
                size: 9,
                root_hash: "cd".into(),
                cosignatures: vec![CosignatureInfo {
                    key_hash: w1.public_key.key_hash().to_hex(),
                    timestamp: 990,
                }],
            }),
            publishing: Publishing::Publishing,
            key_loaded: true,
        };
        let follower_app = NodeAppStatus {
            directory: None,
            publishing: Publishing::Follower,
            ..leader_app.clone()
        };
        let s = assemble(
            node(2, Role::Follower, 95, &follower_app),
            vec![
                (1, Ok(node(1, Role::Leader, 100, &leader_app))),
                (3, Err("connection refused".into())),
            ],
            &ctx,
            1_000_000,
        );
        assert_eq!(s.reported_by, 2);
        assert_eq!(s.publisher, Some(1));
        assert_eq!(s.key_holders, vec![1, 2]);
        assert_eq!(s.members.len(), 3);
        let m1 = s.members[0].node.as_ref().unwrap();
        assert_eq!(m1.role, RaftRole::Leader);
        assert_eq!(s.members[1].node.as_ref().unwrap().lag, 5);
        assert_eq!(s.members[2].error.as_deref(), Some("connection refused"));
        let p = s.published.clone().unwrap();
        assert_eq!((p.size, p.age_seconds), (9, Some(10)));
        assert_eq!(s.witnesses[0].age_seconds, Some(10));
        assert_eq!(s.witnesses[1].cosigned_at, None);
        assert!(s.log.origin.starts_with("sigsum.org/v1/tree/"));
        assert_eq!(s.leader_changes.len(), 1);
        // The JSON round-trips into the same structure (scripts and tests read it).
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ClusterStatus>(&json).unwrap(), s);
    }
}
