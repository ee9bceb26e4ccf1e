//! The client side openraft uses to reach peers: one cached channel per peer, a deadline
//! on every call, and snapshot files streamed in chunks.

use super::pb::{self, raft_client::RaftClient, snapshot_chunk, SnapshotChunk};
use super::tls::TlsFiles;
use super::{ProtocolHeader, MAX_MESSAGE_BYTES, SNAPSHOT_CHUNK_BYTES};
use crate::codec::Owned;
use crate::snapshot::{read_file_chunks, ManifestBuilder, SnapshotDir};
use crate::types::err::{NetworkError, RpcError, StreamingError, Unreachable};
use crate::types::msg::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use crate::types::{NodeId, Peer, Snapshot, TypeConfig, Vote};
use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::ReplicationClosed;
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Longest an append stream may go without an answer before it is abandoned.
const STREAM_IDLE: Duration = Duration::from_secs(10);

/// Creates per-peer clients for openraft, caching one channel per peer address.
#[derive(Clone)]
pub struct NetworkFactory {
    tls: Arc<TlsFiles>,
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    /// Consecutive failures to open an append stream, per peer.
    stream_failures: Arc<Mutex<HashMap<NodeId, u32>>>,
}

impl NetworkFactory {
    /// A factory that authenticates with `tls`.
    pub fn new(tls: Arc<TlsFiles>) -> NetworkFactory {
        NetworkFactory {
            tls,
            channels: Arc::default(),
            stream_failures: Arc::default(),
        }
    }

    /// The cached channel to `target` at `addr`, created lazily (no connection attempt here).
    pub fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, ch)) = map.get(&target) {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let ch = connect_lazy(&self.tls, target, addr)?;
        map.insert(target, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

/// A lazily connecting mutual-TLS channel to node `target` at `addr`.
pub fn connect_lazy(tls: &TlsFiles, target: NodeId, addr: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .tls_config(tls.client(target))
        .map_err(|e| format!("TLS configuration: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Peer) -> PeerClient {
        PeerClient {
            target,
            stream_failures: self.stream_failures.clone(),
            client: self.channel(target, &node.raft_addr).map(|ch| {
                RaftClient::with_interceptor(ch, ProtocolHeader)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }),
        }
    }
}

/// A Raft client that sends the protocol header on every call.
type PeerRaftClient = RaftClient<InterceptedService<Channel, ProtocolHeader>>;

/// openraft's connection to one peer.
pub struct PeerClient {
    target: NodeId,
    client: Result<PeerRaftClient, String>,
    stream_failures: Arc<Mutex<HashMap<NodeId, u32>>>,
}

/// Wait before retrying a peer after `failures` consecutive failures: 50 ms doubling to 2 s.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(50u64 << failures.min(5)).min(Duration::from_secs(2))
}

impl PeerClient {
    fn stream_opened(&self) {
        let mut m = self
            .stream_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.remove(&self.target);
    }

    /// Counts one more failure to open a stream to this peer; returns the count.
    fn stream_failed(&self) -> u32 {
        let mut m = self
            .stream_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = m.entry(self.target).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }
}

fn status_to_rpc(s: tonic::Status) -> RpcError {
    match s.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown => {
            RpcError::Unreachable(Unreachable::from_string(s.to_string()))
        }
        _ => RpcError::Network(NetworkError::from_string(s.to_string())),
    }
}

/// A peer's answer as openraft's type; one that does not convert is a network error.
fn convert<T: Owned>(pb: T::Pb) -> Result<T, RpcError> {
    T::from_pb(pb).map_err(|e| RpcError::Network(NetworkError::new(&e)))
}

fn with_deadline<T>(msg: T, ttl: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(ttl);
    r
}

impl PeerClient {
    fn client(&self) -> Result<PeerRaftClient, RpcError> {
        self.client
            .clone()
            .map_err(|e| RpcError::Unreachable(Unreachable::from_string(e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotDir;

    /// Exponential backoff for an unreachable peer: 50 ms doubling to 2 s.
    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new((0..).map(retry_delay)))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let req = with_deadline(rpc.to_pb(), option.hard_ttl());
        let resp = self
            .client()?
            .append_entries(req)
            .await
            .map_err(status_to_rpc)?;
        convert(resp.into_inner())
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult, RpcError>>, RpcError>>
    where
        S: Stream<Item = AppendEntriesRequest> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let requests = tokio_stream::StreamExt::map(input, |r| r.to_pb());
            let opened = match self.client() {
                Ok(mut c) => c.stream_append(requests).await.map_err(status_to_rpc),
                Err(e) => Err(e),
            };
            let responses = match opened {
                Ok(r) => {
                    self.stream_opened();
                    r.into_inner()
                }
                Err(e) => {
                    // openraft reopens the stream at once; without a pause a dead peer
                    // costs thousands of attempts (and log lines) a second.
                    let n = self.stream_failed();
                    tokio::time::sleep(retry_delay(n)).await;
                    return Err(e);
                }
            };
            // The stream lives as long as replication to this peer; instead of one deadline
            // it gets an idle deadline: no answer for STREAM_IDLE ends it (openraft then
            // opens a new one), so a hung peer cannot stall replication.
            let out = tokio_stream::StreamExt::timeout(responses, STREAM_IDLE).map(|item| {
                let item = item.map_err(|_| {
                    RpcError::Unreachable(Unreachable::from_string("append stream idle timeout"))
                })?;
                let p = item.map_err(status_to_rpc)?;
                convert::<StreamAppendResult>(p)
            });
            Ok(Box::pin(out) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        let req = with_deadline(rpc.to_pb(), option.hard_ttl());
        let resp = self.client()?.vote(req).await.map_err(status_to_rpc)?;
        convert(resp.into_inner())
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse, RpcError> {
        let req = with_deadline(req.to_pb(), option.hard_ttl());
        let resp = self
            .client()?
            .transfer_leader(req)
            .await
            .map_err(status_to_rpc)?;
        convert(resp.into_inner())
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError> {
        let mut client = self.client()?;
        let header = SnapshotChunk {
            item: Some(snapshot_chunk::Item::Header(pb::SnapshotHeader {
                vote: Some(vote.to_pb()),
                meta: Some(snapshot.meta.to_pb()),
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        // The sender runs before the call is awaited: a client-streaming call only
        // completes once its request stream has ended.
        let dir = snapshot.snapshot.clone();
        let reader = tokio::task::spawn_blocking(move || send_files(&dir, header, &tx));
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        req.set_timeout(option.hard_ttl());
        let target = self.target;
        let call = client.install_snapshot(req);
        let resp = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let read_result = reader.await.map_err(|e| NetworkError::new(&e))?;
        let resp = resp.map_err(|s| match status_to_rpc(s) {
            RpcError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Network(NetworkError::from_string(other.to_string())),
        })?;
        read_result.map_err(|e| NetworkError::new(&e))?;
        tracing::info!(target, "snapshot sent");
        SnapshotResponse::from_pb(resp.into_inner())
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// Queues the header, every file of the snapshot as chunks, then the manifest (sizes and
/// SHA-256 of what was sent). The snapshot is pinned meanwhile so that a newer one cannot
/// delete it mid-transfer; an error leaves the stream without its manifest, which the
/// receiver refuses.
fn send_files(
    dir: &SnapshotDir,
    header: SnapshotChunk,
    tx: &tokio::sync::mpsc::Sender<SnapshotChunk>,
) -> std::io::Result<()> {
    let _pin = dir.pin()?;
    let closed = || std::io::Error::other("snapshot receiver closed");
    tx.blocking_send(header).map_err(|_| closed())?;
    let mut manifest = ManifestBuilder::default();
    for (name, _) in dir.files()? {
        let (size, hasher) = read_file_chunks(
            &dir.db_dir().join(&name),
            SNAPSHOT_CHUNK_BYTES,
            |offset, data| {
                let chunk = SnapshotChunk {
                    item: Some(snapshot_chunk::Item::Chunk(pb::FileChunk {
                        name: name.clone(),
                        offset,
                        data,
                    })),
                };
                tx.blocking_send(chunk).map_err(|_| closed())
            },
        )?;
        manifest.add(name, size, hasher);
    }
    let files = manifest
        .finish()
        .into_iter()
        .map(|(name, e)| pb::SnapshotFile {
            name,
            size: e.size,
            sha256: e.sha256.to_vec(),
        })
        .collect();
    let end = SnapshotChunk {
        item: Some(snapshot_chunk::Item::Manifest(pb::SnapshotManifest {
            files,
        })),
    };
    tx.blocking_send(end).map_err(|_| closed())
}
