//! A running Raft node: storage, openraft, and the gRPC server, plus the operations the
//! admin service and the application call (propose, membership, leadership, status).

use crate::application::Application;
use crate::log_store::LogStore;
use crate::network::client::NetworkFactory;
use crate::network::pb::{
    admin_server::AdminServer, raft_server::RaftServer, LeaderChange, Member, NodeStatus, Role,
};
use crate::network::revocation::Revocation;
use crate::network::server::{AdminService, RaftService};
use crate::network::tls::{install_crypto_provider, TlsFiles};
use crate::network::{check_protocol, MAX_MESSAGE_BYTES};
use crate::state_machine::StateMachine;
use crate::types::{Command, CommandResult, NodeId, Peer, Raft, RaftConfig, ServerState};
use openraft::async_runtime::WatchReceiver;
use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

/// Why a write (proposal or membership change) did not happen.
#[derive(Debug, Error, Clone)]
pub enum WriteError {
    /// This node is not the leader; the leader, if known.
    #[error("not the leader")]
    NotLeader {
        /// Leader id and address, if known.
        leader: Option<(NodeId, Option<Peer>)>,
    },
    /// The request was refused (for example a membership change already in progress).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The Raft node has stopped.
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// Storage could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    /// The data directory is of a format this version cannot read.
    #[error(transparent)]
    DataFormat(#[from] crate::data_format::DataFormatError),
    /// The Raft configuration is invalid.
    #[error("raft configuration: {0}")]
    Config(String),
    /// openraft failed to start or initialise.
    #[error("raft: {0}")]
    Raft(String),
    /// The gRPC listener could not be set up.
    #[error("gRPC server: {0}")]
    Server(String),
    /// The certificate revocation list cannot be used.
    #[error(transparent)]
    Revocation(#[from] crate::network::revocation::RevocationError),
}

/// How often a node looks whether its revocation list file changed.
const REVOCATION_RELOAD: Duration = Duration::from_secs(5);

/// How far (in log entries) a transfer target may trail the leader.
const TRANSFER_MAX_LAG: u64 = 1000;

/// Longest a forwarded request may take on the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a failed `Forward` call means: FAILED_PRECONDITION is the receiver saying it does
/// not lead (retry elsewhere); anything else, such as an application's refusal (ABORTED),
/// is final for this request.
fn forward_error(leader: NodeId, s: &tonic::Status) -> WriteError {
    if s.code() == tonic::Code::FailedPrecondition {
        WriteError::NotLeader { leader: None }
    } else {
        WriteError::Rejected(format!("forwarding to leader {leader}: {}", s.message()))
    }
}

/// How many leader changes a node remembers for its status.
const LEADER_CHANGES_KEPT: usize = 16;

/// What a node needs to start.
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
    /// Where the Raft log, the state and the snapshots live.
    pub data_dir: PathBuf,
    /// `host:port` to listen on for gRPC (also the address peers use).
    pub raft_addr: String,
    /// Certificates.
    pub tls: TlsFiles,
    /// openraft settings.
    pub raft: RaftConfig,
    /// If set and the node has never been initialised, initialise a cluster of these members.
    pub bootstrap: Option<BTreeMap<NodeId, Peer>>,
}

struct NodeInner {
    id: NodeId,
    raft: Raft,
    sm: StateMachine,
    app: Arc<dyn Application>,
    network: NetworkFactory,
    /// Leader changes this node has seen, oldest first (node-local, not replicated).
    leader_changes: Mutex<VecDeque<LeaderChange>>,
    /// Set once this process has applied a read index it obtained from a leader.
    caught_up: AtomicBool,
    /// When an append from the leader was last accepted (followers).
    leader_contact: Mutex<Option<std::time::Instant>>,
    /// How long a node trusts its state without word from a leader (or, leading, without
    /// a quorum's acknowledgement): twice the longest election timeout. Past one election
    /// timeout the cluster may have moved on under another leader; the second absorbs
    /// scheduling hiccups of a busy machine.
    read_lease: Duration,
}

/// A cheap handle to a running node.
#[derive(Clone)]
pub struct NodeHandle(Arc<NodeInner>);

fn read_error(e: crate::types::err::ReadError) -> WriteError {
    match e.forward_to_leader() {
        Some(f) => WriteError::NotLeader {
            leader: f.leader_id.map(|id| (id, f.leader_node.clone())),
        },
        None => WriteError::Rejected(e.to_string()),
    }
}

fn write_error(e: crate::types::err::ClientWriteError) -> WriteError {
    if let Some(f) = e.forward_to_leader() {
        return WriteError::NotLeader {
            leader: f.leader_id.map(|id| (id, f.leader_node.clone())),
        };
    }
    match e {
        openraft::errors::RaftError::Fatal(f) => WriteError::Stopped(f.to_string()),
        other => WriteError::Rejected(other.to_string()),
    }
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.0.id
    }

    pub fn raft(&self) -> &Raft {
        &self.0.raft
    }

    pub(crate) fn app(&self) -> &Arc<dyn Application> {
        &self.0.app
    }

    /// Sends an application hand-over `payload` to member `to` (see
    /// [`Application::receive_handover`]) over the cluster's mutually authenticated channel
    /// (the client checks it reached that node's certificate).
    pub async fn hand_over(&self, to: NodeId, payload: Vec<u8>) -> Result<String, WriteError> {
        let m = self.0.raft.metrics().borrow_watched().clone();
        let peer = m
            .membership_config
            .membership()
            .get_node(&to)
            .cloned()
            .ok_or_else(|| WriteError::Rejected(format!("node {to} is not a member")))?;
        let channel = self
            .0
            .network
            .channel(to, &peer.raft_addr)
            .map_err(WriteError::Rejected)?;
        let mut client = crate::network::pb::admin_client::AdminClient::new(channel);
        let mut req = tonic::Request::new(crate::network::pb::HandoverRequest {
            payload,
            from: self.0.id,
            to,
        });
        req.set_timeout(Duration::from_secs(5));
        client
            .handover(req)
            .await
            .map(|r| r.into_inner().message)
            .map_err(|s| WriteError::Rejected(format!("node {to}: {}", s.message())))
    }

    /// Sends an application request to the current leader's forward handler, over the
    /// cluster's mutually authenticated channel, and returns its reply.
    pub async fn forward_to_leader(&self, request: Vec<u8>) -> Result<Vec<u8>, WriteError> {
        let leader = self.leader();
        let (id, peer) = match &leader {
            Some((id, Some(peer))) if *id != self.0.id => (*id, peer.clone()),
            _ => return Err(WriteError::NotLeader { leader }),
        };
        let channel = self
            .0
            .network
            .channel(id, &peer.raft_addr)
            .map_err(WriteError::Rejected)?;
        let mut client = crate::network::pb::admin_client::AdminClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut req = tonic::Request::new(crate::network::pb::ForwardRequest {
            request,
            from: self.0.id,
        });
        req.set_timeout(FORWARD_TIMEOUT);
        match client.forward(req).await {
            Ok(r) => Ok(r.into_inner().reply),
            Err(s) => Err(forward_error(id, &s)),
        }
    }

    /// Confirms this node is the leader and waits until its state machine has applied
    /// everything committed before the call (a read barrier).
    pub async fn ensure_applied(&self) -> Result<(), WriteError> {
        self.0
            .raft
            .ensure_linearizable(crate::types::ReadPolicy::ReadIndex)
            .await
            .map(|_| ())
            .map_err(read_error)
    }

    /// Confirms this node is the leader (with a quorum) and returns the index through
    /// which everything is committed; it does not wait for this node to apply it.
    pub async fn read_index(&self) -> Result<u64, WriteError> {
        self.0
            .raft
            .get_read_log_id(crate::types::ReadPolicy::ReadIndex)
            .await
            .map(|(read, _)| read.index())
            .map_err(read_error)
    }

    /// Records that the leader's append was accepted just now.
    pub(crate) fn note_leader_contact(&self) {
        *self
            .0
            .leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// How long ago this node last had word that it is in step with a leader: as a
    /// follower, an append it accepted; as the leader, a quorum's acknowledgement. None if
    /// never.
    pub fn since_leader_contact(&self) -> Option<Duration> {
        if self.0.raft.is_leader() {
            let metrics = self.0.raft.metrics();
            let m = metrics.borrow_watched();
            // A single voter is its own quorum, with nobody to acknowledge anything.
            if m.membership_config.membership().voter_ids().count() == 1 {
                return Some(Duration::ZERO);
            }
            return m
                .last_quorum_acked
                .as_ref()
                .map(|t| openraft::Instant::elapsed(&**t));
        }
        self.0
            .leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    /// Whether [`NodeHandle::since_leader_contact`] is within the read lease: if not, the
    /// cluster may have committed (and published) more without this node.
    pub fn in_contact_with_leader(&self) -> bool {
        self.since_leader_contact()
            .is_some_and(|d| d <= self.0.read_lease)
    }

    /// The read lease (see [`NodeHandle::in_contact_with_leader`]).
    pub fn read_lease(&self) -> Duration {
        self.0.read_lease
    }

    /// Whether this process has caught up with the cluster: since it started, it has
    /// applied everything a leader had committed at some moment after the start. Until
    /// then its state may be older than what this node (before a restart) or the cluster
    /// has already published, so it must not be presented as current.
    pub fn is_caught_up(&self) -> bool {
        self.0.caught_up.load(Ordering::Acquire)
    }

    pub(crate) fn state_machine(&self) -> &StateMachine {
        &self.0.sm
    }

    /// Replicates one command; returns the application's result once it is committed and
    /// applied on this (leader) node.
    pub async fn client_write(&self, command: Command) -> Result<CommandResult, WriteError> {
        self.0
            .raft
            .client_write(command)
            .await
            .map(|r| r.data)
            .map_err(write_error)
    }

    /// The current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, Option<Peer>)> {
        let m = self.0.raft.metrics().borrow_watched().clone();
        m.current_leader.map(|id| {
            let peer = m.membership_config.membership().get_node(&id).cloned();
            (id, peer)
        })
    }

    fn require_leader(&self) -> Result<(), WriteError> {
        if self.0.raft.is_leader() {
            Ok(())
        } else {
            Err(WriteError::NotLeader {
                leader: self.leader(),
            })
        }
    }

    /// Whether this node is a voter in its current membership: not a learner still
    /// catching up, not a node removed from the cluster (both may hold old state).
    pub fn is_voter(&self) -> bool {
        let metrics = self.0.raft.metrics();
        let m = metrics.borrow_watched();
        // In a joint configuration (a change in progress) only the configuration being
        // moved to counts: a node the change removes is on its way out.
        let voter = m
            .membership_config
            .membership()
            .get_joint_config()
            .last()
            .is_some_and(|c| c.contains(&self.0.id));
        voter
    }

    /// Whether Raft messages from node `sender` are taken: it is in this node's
    /// membership, or this node is not (see `network::server`).
    pub fn accepts_raft_from(&self, sender: NodeId) -> bool {
        let metrics = self.0.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        membership.get_node(&self.0.id).is_none() || membership.get_node(&sender).is_some()
    }

    /// This node's status.
    pub fn status(&self) -> NodeStatus {
        let m = self.0.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        NodeStatus {
            id: self.0.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            app_status: self.0.sm.app_status(),
            members: membership
                .nodes()
                .map(|(id, p)| Member {
                    id: *id,
                    raft_addr: p.raft_addr.clone(),
                    api_addr: p.api_addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            leader_changes: self
                .0
                .leader_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
            caught_up: self.is_caught_up(),
        }
    }

    /// Asks member `id` at `raft_addr` for its status over the cluster's authenticated
    /// channel, waiting at most `timeout`.
    pub async fn peer_status(
        &self,
        id: NodeId,
        raft_addr: &str,
        timeout: Duration,
    ) -> Result<NodeStatus, String> {
        let channel = self.0.network.channel(id, raft_addr)?;
        let mut client = crate::network::pb::admin_client::AdminClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut req = tonic::Request::new(crate::network::pb::StatusRequest {});
        req.set_timeout(timeout);
        // The gRPC deadline is the server's to enforce: a paused peer accepts the TCP
        // connection and never answers, so the wait is bounded here too.
        match tokio::time::timeout(timeout, client.status(req)).await {
            Ok(r) => r
                .map(|r| r.into_inner())
                .map_err(|s| s.message().to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Adds a node: as a learner first (waiting until it has caught up, by snapshot if
    /// needed), then as a voter.
    pub async fn add_node(&self, id: NodeId, peer: Peer) -> Result<String, WriteError> {
        self.require_leader()?;
        tracing::info!(node = id, addr = %peer.raft_addr, "adding learner");
        self.0
            .raft
            .add_learner(id, peer, true)
            .await
            .map_err(write_error)?;
        tracing::info!(node = id, "promoting to voter");
        self.0
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        Ok(format!("node {id} added as a voter"))
    }

    /// Removes a node from the voters and from the cluster.
    pub async fn remove_node(&self, id: NodeId) -> Result<String, WriteError> {
        self.require_leader()?;
        let m = self.0.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(WriteError::Rejected(format!("node {id} is not a member")));
        }
        if membership.voter_ids().any(|v| v == id) {
            self.0
                .raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(write_error)?;
        }
        let m = self.0.raft.metrics().borrow_watched().clone();
        if m.membership_config.membership().get_node(&id).is_some() {
            self.0
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(write_error)?;
        }
        Ok(format!("node {id} removed"))
    }

    /// Moves leadership to `to` and waits (up to 10 s) until it has taken over. Refused if
    /// `to` is not a voter or trails the leader by more than 1000 entries. The
    /// application's [`Application::before_transfer`] runs first (and may refuse), its
    /// [`Application::after_transfer`] last.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<String, WriteError> {
        self.require_leader()?;
        if to == self.0.id {
            return Ok(format!("node {to} is already the leader"));
        }
        let m = self.0.raft.metrics().borrow_watched().clone();
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == to)
        {
            return Err(WriteError::Rejected(format!(
                "node {to} is not a voter; only a voter can lead"
            )));
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&to).cloned())
            .flatten()
            .map_or(0, |l| l.index);
        if matched + TRANSFER_MAX_LAG < last {
            return Err(WriteError::Rejected(format!(
                "node {to} is not caught up (has entry {matched}, the leader {last}); retry when it is"
            )));
        }
        let app = self.0.app.clone();
        app.before_transfer(self, to)
            .await
            .map_err(|r| WriteError::Rejected(r.0))?;
        let moved = async {
            self.0
                .raft
                .trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| WriteError::Stopped(e.to_string()))?;
            self.0
                .raft
                .wait(Some(Duration::from_secs(10)))
                .current_leader(to, "leadership transfer")
                .await
                .map_err(|e| WriteError::Rejected(e.to_string()))
        }
        .await;
        app.after_transfer(self, to, moved.is_ok()).await;
        moved.map(|_| format!("node {to} is now the leader"))
    }
}

/// Appends to the node's leader-change history whenever openraft reports a leader for a
/// new term (a term without a leader is an election in progress); ends when Raft stops.
async fn record_leader_changes(node: NodeHandle) {
    let mut rx = node.0.raft.metrics();
    let mut last = None;
    loop {
        let seen = {
            let m = rx.borrow_watched();
            m.current_leader.map(|l| (m.current_term, l))
        };
        if seen.is_some() && seen != last {
            let (term, leader) = seen.unwrap_or_default();
            let at_unix_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut h = node
                .0
                .leader_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if h.len() == LEADER_CHANGES_KEPT {
                h.pop_front();
            }
            h.push_back(LeaderChange {
                at_unix_ms,
                term,
                leader,
            });
            last = seen;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Re-reads the revocation list when its file changes, until the node is gone.
async fn reload_revocations(revocation: Arc<Revocation>, node: std::sync::Weak<NodeInner>) {
    let mut tick = tokio::time::interval(REVOCATION_RELOAD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if node.strong_count() == 0 {
            return;
        }
        let r = revocation.clone();
        // File reads and a signature check: off the async workers.
        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
    }
}

/// How often a node that has not caught up asks the leader for its read index.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);

/// Longest a node waits for a leader's read index, or to apply up to it, before asking again.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets the node's caught-up flag once it has applied a read index obtained from a leader
/// (itself or a peer) after this process started. A node restarted with old state, or
/// replaying the log from the start after a wipe, would otherwise serve an older head
/// than the one it or the cluster had already published.
async fn catch_up(node: NodeHandle) {
    let mut attempts = 0u64;
    loop {
        tokio::time::sleep(CATCH_UP_POLL).await;
        if node.0.raft.metrics().borrow_watched().state == ServerState::Shutdown {
            return;
        }
        attempts += 1;
        let target = match leader_read_index(&node).await {
            Ok(index) => index,
            Err(e) => {
                // Expected while there is no leader yet; worth a line now and then.
                if attempts.is_multiple_of(40) {
                    tracing::info!(error = %e, "not caught up yet: no read index from a leader");
                }
                continue;
            }
        };
        let applied = node
            .0
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .applied_index_at_least(Some(target), "catching up with the leader")
            .await;
        match applied {
            Ok(_) => {
                node.0.caught_up.store(true, Ordering::Release);
                tracing::info!(index = target, "caught up with the cluster");
                return;
            }
            Err(crate::types::err::WaitError::ShuttingDown) => return,
            Err(_) => continue,
        }
    }
}

/// The read index of the leader this node knows of: its own if it leads.
async fn leader_read_index(node: &NodeHandle) -> Result<u64, String> {
    let Some((id, peer)) = node.leader() else {
        return Err("no leader known".into());
    };
    if id == node.0.id {
        return node.read_index().await.map_err(|e| e.to_string());
    }
    let addr = peer
        .ok_or_else(|| format!("no address for leader {id}"))?
        .raft_addr;
    let channel = node.0.network.channel(id, &addr)?;
    let mut client = crate::network::pb::admin_client::AdminClient::new(channel);
    let mut req = tonic::Request::new(crate::network::pb::ReadIndexRequest {});
    req.set_timeout(CATCH_UP_TIMEOUT);
    match tokio::time::timeout(CATCH_UP_TIMEOUT, client.read_index(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().index),
        Ok(Err(s)) => Err(format!("leader {id}: {}", s.message())),
        Err(_) => Err(format!("leader {id}: no answer")),
    }
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Opens storage, starts openraft and the gRPC server, and bootstraps the cluster if
    /// asked to and never initialised.
    pub async fn start(opts: NodeOptions, app: Arc<dyn Application>) -> Result<Node, StartError> {
        install_crypto_provider();
        let revocation = Arc::new(Revocation::load(
            &opts.tls.ca_pem,
            &opts.tls.cert_pem,
            opts.tls.crl.as_deref(),
        )?);
        match revocation.entries() {
            Some(n) => tracing::info!(revoked = n, "certificate revocation list loaded"),
            None => tracing::warn!(
                "no certificate revocation list configured ([tls] crl): a removed node's \
                 certificate stays valid until it expires"
            ),
        }
        crate::data_format::check_or_init(&opts.data_dir)?;
        let log = LogStore::open(&opts.data_dir.join("raft-log"))?;
        let sm = StateMachine::open(&opts.data_dir, app.clone())?;
        let read_lease = Duration::from_millis(2 * opts.raft.election_timeout_max);
        let config = Arc::new(
            opts.raft
                .validate()
                .map_err(|e| StartError::Config(e.to_string()))?,
        );
        let tls = Arc::new(opts.tls);
        let network = NetworkFactory::new(tls.clone());
        let raft = Raft::new(opts.id, config, network.clone(), log, sm.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let handle = NodeHandle(Arc::new(NodeInner {
            id: opts.id,
            raft: raft.clone(),
            sm,
            app,
            network: network.clone(),
            leader_changes: Mutex::default(),
            caught_up: AtomicBool::new(false),
            leader_contact: Mutex::new(None),
            read_lease,
        }));
        tokio::spawn(record_leader_changes(handle.clone()));
        tokio::spawn(catch_up(handle.clone()));

        let listener = TcpListener::bind(&opts.raft_addr)
            .await
            .map_err(|e| StartError::Server(format!("bind {}: {e}", opts.raft_addr)))?;
        tracing::info!(addr = %opts.raft_addr, "gRPC listening");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let raft_check = {
            let revocation = revocation.clone();
            move |req: tonic::Request<()>| {
                revocation.check(&req)?;
                check_protocol(req)
            }
        };
        let admin_check = {
            let revocation = revocation.clone();
            move |req: tonic::Request<()>| revocation.check(&req).map(|()| req)
        };
        let router = Server::builder()
            .tls_config(tls.server())
            .map_err(|e| StartError::Server(e.to_string()))?
            .add_service(InterceptedService::new(
                RaftServer::new(RaftService::new(handle.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                raft_check,
            ))
            .add_service(InterceptedService::new(
                AdminServer::new(AdminService::new(handle.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                admin_check,
            ));
        if revocation.entries().is_some() {
            tokio::spawn(reload_revocations(revocation, Arc::downgrade(&handle.0)));
        }
        let server = tokio::spawn(async move {
            let incoming = TcpListenerStream::new(listener);
            let stop = async {
                let _ = stop_rx.await;
            };
            match router.serve_with_incoming_shutdown(incoming, stop).await {
                Ok(()) => tracing::info!("gRPC server stopped"),
                Err(e) => tracing::error!(error = %e, "gRPC server failed"),
            }
        });

        if let Some(members) = opts.bootstrap {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
            if !initialized {
                tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialising cluster");
                raft.initialize(members)
                    .await
                    .map_err(|e| StartError::Raft(e.to_string()))?;
            }
        }
        Ok(Node {
            handle,
            stop_server: Some(stop_tx),
            server,
        })
    }

    /// A handle for the application and the admin API.
    pub fn handle(&self) -> &NodeHandle {
        &self.handle
    }

    /// Stops the gRPC server and openraft.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop_server.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        if let Err(e) = self.handle.0.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failed_precondition_means_not_the_leader() {
        let not_leader = forward_error(1, &tonic::Status::failed_precondition("not leader"));
        assert!(matches!(not_leader, WriteError::NotLeader { .. }));
        let refused = forward_error(1, &tonic::Status::aborted("the application refused"));
        assert!(
            matches!(&refused, WriteError::Rejected(m) if m.contains("refused")),
            "{refused:?}"
        );
    }
}
