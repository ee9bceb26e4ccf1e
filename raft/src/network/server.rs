//! The gRPC services a node serves to its peers and to operators: Raft messages (checked
//! against the sender's certificate, then handed to openraft) and admin calls.

use super::pb::{
    self, admin_server::Admin, raft_server, snapshot_chunk, AddNodeRequest, AdminReply,
    ForwardReply, ForwardRequest, HandoverRequest, NodeStatus, ReadIndexReply, ReadIndexRequest,
    RemoveNodeRequest, SnapshotChunk, StatusRequest,
};
use super::tls::{check_peer, is_operator, require_operator};
use crate::codec::Owned;
use crate::node::{NodeHandle, WriteError};
use crate::snapshot::{IncomingSnapshot, ManifestEntry, ReceiveError, SnapshotDir};
use crate::types::msg::{
    AppendEntriesRequest, StreamAppendError, StreamAppendResult, TransferLeaderRequest, VoteRequest,
};
use crate::types::{NodeId, Peer, Snapshot, SnapshotMeta, Vote};
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

fn bad(what: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("malformed {what}: {e}"))
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft node stopped: {e}"))
}

fn reply<T: Owned>(v: &T) -> Result<Response<T::Pb>, Status> {
    Ok(Response::new(v.to_pb()))
}

/// Converts a received message to openraft's type (400 if it is not a valid one).
fn convert<T: Owned>(pb: T::Pb) -> Result<T, Status> {
    T::from_pb(pb).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The request's message, and the request without it (for the sender's certificate).
fn split<T>(req: Request<T>) -> (Request<()>, T) {
    let peer = Request::from_parts(req.metadata().clone(), req.extensions().clone(), ());
    (peer, req.into_inner())
}

/// Raft RPCs from peers.
pub struct RaftService {
    node: NodeHandle,
}

impl RaftService {
    /// Serves the Raft RPCs of `node`.
    pub fn new(node: NodeHandle) -> RaftService {
        RaftService { node }
    }

    /// The sender's certificate names node `claimed`, and `claimed` is a member.
    fn check_sender<T>(&self, req: &Request<T>, claimed: NodeId) -> Result<(), Status> {
        check_peer(req, claimed)?;
        member_check(&self.node, claimed)
    }
}

/// Raft traffic only from members of this node's membership (voters and learners, in
/// every configuration of a change in progress): a removed node's certificate stays valid,
/// but its votes and appends are refused. A node that is not in its own membership (new,
/// waiting to be added; or removed) accepts any certified node, or it could never join.
fn member_check(node: &NodeHandle, sender: NodeId) -> Result<(), Status> {
    if node.accepts_raft_from(sender) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "node {sender} is not a member of this cluster"
        )))
    }
}

type ResultStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let (req, msg) = split(req);
        let rpc: AppendEntriesRequest = convert(msg)?;
        let span = tracing::debug_span!(
            "append_entries",
            from = rpc.vote.leader_id.node_id,
            entries = rpc.entries.len()
        );
        self.check_sender(&req, rpc.vote.leader_id.node_id)?;
        let resp = self
            .node
            .raft()
            .append_entries(rpc)
            .instrument(span)
            .await
            .map_err(fatal)?;
        // A conflict still means the sender's leadership was accepted.
        if resp.is_success() || resp.is_conflict() {
            self.node.note_leader_contact();
        }
        reply(&resp)
    }

    type StreamAppendStream = ResultStream<pb::StreamAppendResponse>;

    async fn stream_append(
        &self,
        req: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        // The sender must be one node for the whole stream: the certificate's node.
        let certified = Arc::new(Mutex::new(None::<NodeId>));
        let rejected = Arc::new(Mutex::new(None::<Status>));
        let peer_req = Request::from_parts(req.metadata().clone(), req.extensions().clone(), ());
        let (r2, c2) = (rejected.clone(), certified.clone());
        let node_for_check = self.node.clone();
        let input = tokio_stream::StreamExt::map_while(req.into_inner(), move |item| {
            let checked = item
                .map_err(|s| bad("append stream", s))
                .and_then(convert::<AppendEntriesRequest>)
                .and_then(|rpc| {
                    let sender = rpc.vote.leader_id.node_id;
                    let mut known = c2.lock().unwrap_or_else(|e| e.into_inner());
                    if *known != Some(sender) {
                        check_peer(&peer_req, sender)?;
                        member_check(&node_for_check, sender)?;
                        *known = Some(sender);
                    }
                    Ok(rpc)
                });
            match checked {
                Ok(rpc) => Some(rpc),
                Err(s) => {
                    *r2.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                    None
                }
            }
        });
        let results = self.node.raft().stream_append(input);
        let node = self.node.clone();
        let out = results
            .map(move |r| match r {
                Ok(res) => {
                    if !matches!(res, Err(StreamAppendError::HigherVote(_))) {
                        node.note_leader_contact();
                    }
                    Ok(<StreamAppendResult as Owned>::to_pb(&res))
                }
                Err(e) => Err(fatal(e)),
            })
            .chain(
                futures::stream::once(async move {
                    rejected.lock().unwrap_or_else(|e| e.into_inner()).take()
                })
                .filter_map(|s| async move { s.map(Err) }),
            );
        Ok(Response::new(Box::pin(out)))
    }

    async fn vote(
        &self,
        req: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let (req, msg) = split(req);
        let rpc: VoteRequest = convert(msg)?;
        tracing::debug!(from = rpc.vote.leader_id.node_id, vote = %rpc.vote, "vote request");
        self.check_sender(&req, rpc.vote.leader_id.node_id)?;
        let resp = self.node.raft().vote(rpc).await.map_err(fatal)?;
        reply(&resp)
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::TransferResponse>, Status> {
        let (req, msg) = split(req);
        let rpc: TransferLeaderRequest = convert(msg)?;
        self.check_sender(&req, rpc.from_leader().leader_id.node_id)?;
        let resp = self
            .node
            .raft()
            .handle_transfer_leader(rpc)
            .await
            .map_err(fatal)?;
        reply(&resp)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let peer_req = Request::from_parts(req.metadata().clone(), req.extensions().clone(), ());
        let mut stream = req.into_inner();
        let header = match stream.message().await? {
            Some(SnapshotChunk {
                item: Some(snapshot_chunk::Item::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "snapshot stream must start with a header",
                ))
            }
        };
        let vote: Vote = convert(
            header
                .vote
                .ok_or_else(|| bad("snapshot header", "no vote"))?,
        )?;
        let meta: SnapshotMeta = convert(
            header
                .meta
                .ok_or_else(|| bad("snapshot header", "no metadata"))?,
        )?;
        self.check_sender(&peer_req, vote.leader_id.node_id)?;

        let dir = self
            .node
            .state_machine()
            .new_incoming_snapshot_dir()
            .map_err(|e| Status::internal(e.to_string()))?;
        let received = receive_files(&mut stream, dir.clone()).await;
        if let Err(s) = received {
            tracing::warn!(from = vote.leader_id.node_id, error = %s.message(), "snapshot refused");
            let _ = std::fs::remove_dir_all(&dir);
            return Err(s);
        }
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotDir { path: dir.clone() },
        };
        tracing::info!(
            from = vote.leader_id.node_id,
            "snapshot received; installing"
        );
        let resp = self.node.raft().install_full_snapshot(vote, snapshot).await;
        // Installing moves the directory into place; if it is still here, openraft passed
        // the snapshot over (older than what this node has) and nobody else will delete it.
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        reply(&resp.map_err(fatal)?)
    }
}

/// Receives the files and the closing manifest into `dir`, verified; see
/// [`IncomingSnapshot`].
async fn receive_files(
    stream: &mut Streaming<SnapshotChunk>,
    dir: std::path::PathBuf,
) -> Result<(), Status> {
    let refused = |e: ReceiveError| match e {
        ReceiveError::Io(e) => Status::internal(e.to_string()),
        other => Status::invalid_argument(other.to_string()),
    };
    let mut incoming = IncomingSnapshot::new(dir);
    let manifest = loop {
        let Some(msg) = stream.message().await? else {
            return Err(refused(ReceiveError::Truncated));
        };
        match msg.item {
            // A 1 MiB write to the page cache; the fsyncs happen once, in `finish`.
            Some(snapshot_chunk::Item::Chunk(c)) => incoming
                .chunk(&c.name, c.offset, &c.data)
                .map_err(refused)?,
            Some(snapshot_chunk::Item::Manifest(m)) => break m,
            _ => {
                return Err(Status::invalid_argument(
                    "unexpected message in snapshot stream",
                ))
            }
        }
    };
    if stream.message().await?.is_some() {
        return Err(Status::invalid_argument(
            "snapshot stream goes on after its manifest",
        ));
    }
    let mut expected = std::collections::BTreeMap::new();
    for f in manifest.files {
        let sha256: [u8; 32] = f
            .sha256
            .try_into()
            .map_err(|_| Status::invalid_argument("manifest digest is not 32 bytes"))?;
        expected.insert(
            f.name,
            ManifestEntry {
                size: f.size,
                sha256,
            },
        );
    }
    tokio::task::spawn_blocking(move || incoming.finish(&expected))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(refused)
}

/// Operator and application calls.
pub struct AdminService {
    node: NodeHandle,
}

impl AdminService {
    /// Serves the admin calls of `node`.
    pub fn new(node: NodeHandle) -> AdminService {
        AdminService { node }
    }
}

impl AdminService {
    /// A key (or an order to forget it) is accepted from an operator, or from the node this
    /// one sees as its leader, addressed to this node: what a leader's transfer hand-off
    /// sends. Any other member could otherwise make the key holder forget the key.
    fn handover_sender_check(&self, req: &Request<HandoverRequest>) -> Result<(), Status> {
        if is_operator(req)? {
            return Ok(());
        }
        let HandoverRequest { from, to, .. } = *req.get_ref();
        check_peer(req, from)?;
        if to != self.node.id() {
            return Err(Status::permission_denied(format!(
                "a key delivery for node {to} reached node {}",
                self.node.id()
            )));
        }
        match self.node.leader() {
            Some((leader, _)) if leader == from && from != to => Ok(()),
            _ => Err(Status::permission_denied(format!(
                "node {from} is not this node's leader: only the leader (handing over for a \
                 transfer) or an operator may deliver the key"
            ))),
        }
    }
}

fn not_leader(leader: Option<(NodeId, Option<Peer>)>) -> Status {
    let mut s = Status::failed_precondition(match &leader {
        Some((id, Some(p))) => {
            format!("not the leader; the leader is node {id} at {}", p.raft_addr)
        }
        Some((id, None)) => format!("not the leader; the leader is node {id}"),
        None => "not the leader; no leader is known".to_string(),
    });
    if let Some((id, p)) = leader {
        if let Ok(v) = id.to_string().parse() {
            s.metadata_mut().insert("quorumlog-leader-id", v);
        }
        if let Some(Ok(v)) = p.map(|p| p.raft_addr.parse()) {
            s.metadata_mut().insert("quorumlog-leader-addr", v);
        }
    }
    s
}

fn write_status(e: WriteError) -> Status {
    match e {
        WriteError::NotLeader { leader } => not_leader(leader),
        WriteError::Rejected(m) => Status::failed_precondition(m),
        WriteError::Stopped(m) => Status::unavailable(m),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<NodeStatus>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<AdminReply>, Status> {
        require_operator(&req, "adding a node")?;
        let r = req.into_inner();
        let peer = Peer {
            raft_addr: r.raft_addr,
            api_addr: r.api_addr,
        };
        let msg = self.node.add_node(r.id, peer).await.map_err(write_status)?;
        Ok(Response::new(AdminReply { message: msg }))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<AdminReply>, Status> {
        require_operator(&req, "removing a node")?;
        let msg = self
            .node
            .remove_node(req.into_inner().id)
            .await
            .map_err(write_status)?;
        Ok(Response::new(AdminReply { message: msg }))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<AdminReply>, Status> {
        require_operator(&req, "moving leadership")?;
        let msg = self
            .node
            .transfer_leader(req.into_inner().to)
            .await
            .map_err(write_status)?;
        Ok(Response::new(AdminReply { message: msg }))
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReply>, Status> {
        let from = req.get_ref().from;
        check_peer(&req, from)?;
        member_check(&self.node, from)?;
        if !self.node.raft().is_leader() {
            return Err(not_leader(self.node.leader()));
        }
        let reply = self
            .node
            .app()
            .forward(&self.node, req.into_inner().request)
            .await
            // Not FAILED_PRECONDITION: the sender reads that as "not the leader".
            .map_err(|r| Status::aborted(r.0))?;
        Ok(Response::new(ForwardReply { reply }))
    }

    async fn handover(
        &self,
        req: Request<HandoverRequest>,
    ) -> Result<Response<AdminReply>, Status> {
        self.handover_sender_check(&req)?;
        // The payload (for the log: its signing key) is never logged.
        tracing::info!(from = req.get_ref().from, "hand-over received");
        let message = self
            .node
            .app()
            .receive_handover(req.into_inner().payload)
            .await
            .map_err(|r| Status::failed_precondition(r.0))?;
        Ok(Response::new(AdminReply { message }))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        let index = self.node.read_index().await.map_err(write_status)?;
        Ok(Response::new(ReadIndexReply { index }))
    }
}
