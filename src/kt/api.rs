//! The directory's HTTP API under `/kt/v1/` (JSON; docs/kt.md). Every node serves reads
//! from its applied state, only up to the latest epoch whose head is in the Sigsum log's
//! published tree head, so every answer can be verified to a cosigned head.

use super::directory::Directory;
use super::updates::Updates;
use super::wire::{
    Epoch, Heads, History, IndexAnswer, LogProof, Lookup, Parameters, Records, SmhWithLeaf,
};
use crate::api::public::{serving_current, text, ApiError};
use crate::merkle::{Hash, MerkleError};
use crate::publish::custody::KeySlot;
use crate::replicated::LeafState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use quorumlog_kt::hasher::Index;
use quorumlog_kt::vrf::PROOF_LEN;
use quorumlog_raft::NodeHandle;
use serde::Deserialize;
use std::sync::Arc;

pub struct KtApi {
    pub state: Arc<LeafState>,
    pub updates: Arc<Updates>,
    pub keys: Arc<KeySlot>,
    pub node: NodeHandle,
    pub parameters: Parameters,
    /// Most records or heads per answer.
    pub max_range: u64,
}

pub fn router(api: Arc<KtApi>) -> Router {
    Router::new()
        .route("/kt/v1/parameters", get(parameters))
        .route("/kt/v1/update", post(update))
        .route("/kt/v1/index", get(index))
        .route("/kt/v1/lookup", get(lookup))
        .route("/kt/v1/history", get(history))
        .route("/kt/v1/heads", get(heads))
        .route("/kt/v1/records", get(records))
        .route("/kt/v1/epochs/{epoch}", get(epoch))
        .route("/kt/v1/log/inclusion", get(log_inclusion))
        .route("/kt/v1/log/consistency", get(log_consistency))
        .with_state(api)
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(v).unwrap_or_default(),
    )
        .into_response()
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "serving a directory read");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {e}"),
    )
}

impl KtApi {
    fn directory(&self) -> Result<&Arc<Directory>, ApiError> {
        self.state
            .directory()
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "this log runs no directory".into()))
    }

    /// The published tree size and the newest epoch it covers.
    fn published(&self) -> Result<(u64, u64), ApiError> {
        serving_current(&self.node)?;
        let dir = self.directory()?;
        let size = self
            .state
            .published_head()
            .ok_or_else(|| unavailable("no tree head has been published yet"))?
            .head
            .size;
        let epoch = dir
            .newest_head_within(size)
            .map_err(internal)?
            .ok_or_else(|| unavailable("no epoch is in a published tree head yet"))?;
        Ok((size, epoch))
    }

    fn head(&self, epoch: u64) -> Result<SmhWithLeaf, ApiError> {
        let (head, leaf_index) = self
            .directory()?
            .head(epoch)
            .map_err(internal)?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no head for epoch {epoch}")))?;
        let leaf = self
            .state
            .leaf(leaf_index)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("the leaf of epoch {epoch}'s head is missing")))?;
        Ok(SmhWithLeaf {
            epoch,
            signed_head: hex::encode(head.encode()),
            leaf: hex::encode(leaf.to_bytes()),
            leaf_index,
        })
    }

    fn index_of(&self, id: &str) -> Result<(Index, [u8; PROOF_LEN]), ApiError> {
        if let Some(known) = self
            .directory()?
            .known_id(id.as_bytes())
            .map_err(internal)?
        {
            return Ok(known);
        }
        match self.keys.get() {
            Some(k) => Ok(k.directory().index(id.as_bytes())),
            None => Err(unavailable(
                "this node does not hold the directory key, so it can look up only users \
                 with an entry; ask the leader",
            )),
        }
    }

    fn lookup_at(
        &self,
        id: &str,
        index: &Index,
        vrf_proof: &[u8; PROOF_LEN],
        epoch: u64,
        tree_size: u64,
    ) -> Result<Lookup, ApiError> {
        let dir = self.directory()?;
        let stored = dir.entry_at(index, epoch).map_err(internal)?;
        let (proof, _) = dir.prove(index, epoch).map_err(internal)?;
        let head = self.head(epoch)?;
        let tree = self
            .state
            .tree()
            .ok_or_else(|| internal("state not attached"))?;
        let path = tree
            .inclusion_proof(head.leaf_index, tree_size)
            .map_err(internal)?;
        let published = self
            .state
            .published_head()
            .ok_or_else(|| unavailable("no tree head has been published yet"))?;
        if published.head.size != tree_size {
            return Err(unavailable(
                "a new tree head was published meanwhile; retry",
            ));
        }
        Ok(Lookup {
            id: id.to_string(),
            index: hex::encode(index),
            vrf_proof: hex::encode(vrf_proof),
            epoch,
            entry: stored.as_ref().map(|s| hex::encode(s.entry.encode())),
            value: stored.as_ref().map(|s| hex::encode(&s.opening.value)),
            nonce: stored.as_ref().map(|s| hex::encode(s.opening.nonce)),
            map_proof: hex::encode(proof.encode()),
            head,
            tree_head: published.to_ascii(),
            inclusion_path: path.iter().map(|h| h.to_hex()).collect(),
        })
    }
}

fn check_id(id: &str, max: usize) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > max {
        return Err(bad(format!("id must be 1 to {max} bytes")));
    }
    Ok(())
}

async fn parameters(State(api): State<Arc<KtApi>>) -> Response {
    json(&api.parameters)
}

async fn update(State(api): State<Arc<KtApi>>, body: Bytes) -> Response {
    let r = api.updates.submit(&api.node, &body).await;
    // Logged updates answer JSON (200, or 409/403 if rejected); everything else a reason.
    if r.body.starts_with('{') {
        return (
            r.status,
            [(header::CONTENT_TYPE, "application/json")],
            r.body,
        )
            .into_response();
    }
    text(r.status, r.body)
}

#[derive(Deserialize)]
struct IndexQuery {
    id: String,
}

/// A user's map index and its VRF proof, before any epoch is published (the first update).
async fn index(
    State(api): State<Arc<KtApi>>,
    Query(q): Query<IndexQuery>,
) -> Result<Response, ApiError> {
    check_id(&q.id, api.parameters.max_id_bytes)?;
    let (index, proof) = api.index_of(&q.id)?;
    Ok(json(&IndexAnswer {
        id: q.id,
        index: hex::encode(index),
        vrf_proof: hex::encode(proof),
    }))
}

#[derive(Deserialize)]
struct LookupQuery {
    id: String,
    epoch: Option<u64>,
}

async fn lookup(
    State(api): State<Arc<KtApi>>,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    check_id(&q.id, api.parameters.max_id_bytes)?;
    let (size, latest) = api.published()?;
    let epoch = q.epoch.unwrap_or(latest);
    if epoch == 0 || epoch > latest {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("epoch {epoch} is not published; epochs 1 to {latest} are"),
        ));
    }
    let (index, proof) = api.index_of(&q.id)?;
    Ok(json(&api.lookup_at(&q.id, &index, &proof, epoch, size)?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    id: String,
    from: Option<u64>,
    to: Option<u64>,
}

async fn history(
    State(api): State<Arc<KtApi>>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    check_id(&q.id, api.parameters.max_id_bytes)?;
    let (size, latest) = api.published()?;
    let (from, to) = (q.from.unwrap_or(1), q.to.unwrap_or(latest).min(latest));
    if from > to {
        return Err(bad(format!("from {from} is after to {to}")));
    }
    let (index, proof) = api.index_of(&q.id)?;
    let changes = api
        .directory()?
        .history(&index, from, to)
        .map_err(internal)?;
    if changes.len() as u64 > api.max_range {
        return Err(bad(format!(
            "more than {} changes in that range; ask for a shorter one",
            api.max_range
        )));
    }
    let changes = changes
        .iter()
        .map(|(e, _)| api.lookup_at(&q.id, &index, &proof, *e, size))
        .collect::<Result<_, _>>()?;
    Ok(json(&History { changes }))
}

#[derive(Deserialize)]
struct Range {
    start: u64,
    end: u64,
}

fn check_range(r: &Range, max: u64) -> Result<(), ApiError> {
    if r.start >= r.end || r.end - r.start > max {
        return Err(bad(format!(
            "a range is start < end with at most {max} items"
        )));
    }
    Ok(())
}

async fn heads(
    State(api): State<Arc<KtApi>>,
    Query(r): Query<Range>,
) -> Result<Response, ApiError> {
    check_range(&r, api.max_range)?;
    let (_, latest) = api.published()?;
    let heads = (r.start.max(1)..r.end.min(latest + 1))
        .map(|e| api.head(e))
        .collect::<Result<_, _>>()?;
    Ok(json(&Heads { heads, latest }))
}

async fn records(
    State(api): State<Arc<KtApi>>,
    Query(r): Query<Range>,
) -> Result<Response, ApiError> {
    check_range(&r, api.max_range)?;
    // Only what published heads cover: the open epoch's records are not final yet.
    let end = r.end.min(api.published_log_size()?);
    let records = if r.start < end {
        api.directory()?.records(r.start, end).map_err(internal)?
    } else {
        Vec::new()
    };
    Ok(json(&Records {
        start: r.start,
        records: records.iter().map(hex::encode).collect(),
    }))
}

async fn epoch(
    State(api): State<Arc<KtApi>>,
    Path(epoch): Path<u64>,
) -> Result<Response, ApiError> {
    let (_, latest) = api.published()?;
    if epoch == 0 || epoch > latest {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("epoch {epoch} is not published; epochs 1 to {latest} are"),
        ));
    }
    let dir = api.directory()?;
    let first = match epoch {
        1 => 0,
        e => dir
            .epoch(e - 1)
            .map_err(internal)?
            .map_or(0, |i| i.log_size),
    };
    let last = dir
        .epoch(epoch)
        .map_err(internal)?
        .ok_or_else(|| internal(format!("epoch {epoch} missing")))?
        .log_size;
    if last - first > api.max_range {
        return Err(bad(format!(
            "epoch {epoch} holds {} records, more than {} per answer; read them with \
             /kt/v1/records",
            last - first,
            api.max_range
        )));
    }
    let records = dir.records(first, last).map_err(internal)?;
    Ok(json(&Epoch {
        head: api.head(epoch)?,
        first_record: first,
        records: records.iter().map(hex::encode).collect(),
    }))
}

impl KtApi {
    /// The size of the log of mutations that published heads cover.
    fn published_log_size(&self) -> Result<u64, ApiError> {
        let (_, latest) = self.published()?;
        Ok(self
            .directory()?
            .epoch(latest)
            .map_err(internal)?
            .map_or(0, |e| e.log_size))
    }
}

fn log_proof(path: Result<Vec<Hash>, MerkleError>) -> Result<Response, ApiError> {
    Ok(json(&LogProof {
        path: path.map_err(internal)?.iter().map(|h| h.to_hex()).collect(),
    }))
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

async fn log_inclusion(
    State(api): State<Arc<KtApi>>,
    Query(q): Query<InclusionQuery>,
) -> Result<Response, ApiError> {
    let published = api.published_log_size()?;
    if q.index >= q.size || q.size > published {
        return Err(bad(format!(
            "need index < size <= {published} (the size published heads cover)"
        )));
    }
    let log = api.directory()?.mutation_log().map_err(internal)?;
    log_proof(log.inclusion_proof(q.index, q.size))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: u64,
}

async fn log_consistency(
    State(api): State<Arc<KtApi>>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let published = api.published_log_size()?;
    if q.old == 0 || q.old >= q.new || q.new > published {
        return Err(bad(format!(
            "need 0 < old < new <= {published} (the size published heads cover)"
        )));
    }
    let log = api.directory()?.mutation_log().map_err(internal)?;
    log_proof(log.consistency_proof(q.old, q.new))
}
