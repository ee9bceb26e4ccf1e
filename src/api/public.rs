//! The public Sigsum v1 endpoints (log.md section 3). Reads are served by every node from
//! its applied state and never beyond the published tree head it knows; add-leaf is in
//! [`super::add_leaf`]. Every error answer carries a plain-text reason.

use super::add_leaf::Submitter;
use crate::merkle::{Hash, MerkleError, MerkleStore};
use crate::replicated::LeafState;
use crate::sigsum::ascii::{parse_hex, parse_int};
use crate::sigsum::leaf::leaves_to_ascii;
use crate::sigsum::proofs::{ConsistencyProof, InclusionProof};
use crate::sigsum::token::TOKEN_HEADER;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use quorumlog_raft::NodeHandle;
use std::sync::Arc;

/// Largest add-leaf body accepted; a valid one is under 300 bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// State shared by the public handlers.
pub struct PublicApi {
    /// The replicated state reads come from.
    pub state: Arc<LeafState>,
    /// add-leaf.
    pub submitter: Arc<Submitter>,
    /// The node: whether it leads, is caught up, is in touch with the leader.
    pub node: NodeHandle,
    /// Most leaves per get-leaves answer.
    pub max_range: u64,
}

/// An error answer: a status and a plain-text reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

/// A plain-text answer, newline-terminated.
pub fn text(status: StatusCode, mut body: String) -> Response {
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "serving a read");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {e}"),
    )
}

/// The router of the public API under `prefix` (`""` or a path such as `"log"`).
pub fn router(api: Arc<PublicApi>, prefix: &str) -> Router {
    let p = prefix.trim_matches('/');
    let at = |name: &str| {
        if p.is_empty() {
            format!("/{name}")
        } else {
            format!("/{p}/{name}")
        }
    };
    Router::new()
        .route(&at("add-leaf"), post(add_leaf).fallback(method_not_allowed))
        .route(
            &at("get-tree-head"),
            get(get_tree_head).fallback(method_not_allowed),
        )
        .route(
            &at("get-inclusion-proof/{size}/{leaf_hash}"),
            get(get_inclusion_proof).fallback(method_not_allowed),
        )
        .route(
            &at("get-consistency-proof/{old}/{new}"),
            get(get_consistency_proof).fallback(method_not_allowed),
        )
        .route(
            &at("get-leaves/{start}/{end}"),
            get(get_leaves).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: add-leaf takes POST, the other endpoints GET".into(),
    )
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

async fn add_leaf(
    State(api): State<Arc<PublicApi>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return text(
                e.status(),
                format!("add-leaf body refused (at most {MAX_BODY_BYTES} bytes): {e}"),
            )
        }
    };
    let token = match headers.get(TOKEN_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return bad("the sigsum-token header is not ASCII").into_response();
        }
    };
    let outcome = api.submitter.submit(&api.node, &body, token).await;
    let status = outcome.http_status();
    if status.is_success() {
        // sigsum-go refuses a 200 with a body.
        status.into_response()
    } else {
        text(status, outcome.message().to_string())
    }
}

/// The tree as far as the published head reaches: the tree and the published size.
fn published(api: &PublicApi) -> Result<(Arc<MerkleStore>, u64), ApiError> {
    let head = api.state.published_head().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no tree head has been published yet".into(),
        )
    })?;
    let tree = api
        .state
        .tree()
        .ok_or_else(|| internal("state not attached"))?;
    Ok((tree, head.head.size))
}

/// A request past this node's published head. Only a leader in touch with its quorum
/// knows that no larger head exists; any other node may simply be behind (the client got
/// the size from a node further ahead), so it answers with a retryable 503.
fn beyond_published(api: &PublicApi, what: &str, value: u64, published: u64) -> ApiError {
    let node = &api.node;
    if node.raft().is_leader() && node.in_contact_with_leader() {
        bad(format!(
            "{what} {value} is beyond the published tree head (size {published})"
        ))
    } else {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{what} {value} is beyond this node's published tree head (size {published}); \
                 it may be behind the leader: retry, or ask another node"
            ),
        )
    }
}

fn int(what: &str, s: &str) -> Result<u64, ApiError> {
    parse_int(s).map_err(|e| bad(format!("{what}: {e}")))
}

/// Refuses to serve the published head (or anything verified against it) from a node that
/// may hold an older one than the cluster has published.
pub(crate) fn serving_current(node: &NodeHandle) -> Result<(), ApiError> {
    if !node.is_voter() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node is not a voting member of the cluster (catching up, or removed); ask another node".into(),
        ));
    }
    // Likewise a restarted node until it has applied what a leader had committed after
    // the restart: its stored head may be older than one it served before.
    if !node.is_caught_up() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has restarted and not yet caught up with the leader; ask another node"
                .into(),
        ));
    }
    // And a node cut off from the leader (or a leader cut off from its quorum): the
    // cluster may have published newer heads without it.
    if !node.in_contact_with_leader() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this node has not heard from a leader within {} ms, so its head may be \
                 stale; ask another node",
                node.read_lease().as_millis()
            ),
        ));
    }
    Ok(())
}

async fn get_tree_head(State(api): State<Arc<PublicApi>>) -> Result<Response, ApiError> {
    serving_current(&api.node)?;
    let head = api.state.published_head().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no tree head has been published yet".into(),
        )
    })?;
    Ok(text(StatusCode::OK, head.to_ascii()))
}

async fn get_inclusion_proof(
    State(api): State<Arc<PublicApi>>,
    Path((size, leaf_hash)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let size = int("size", &size)?;
    let leaf_hash = Hash(parse_hex::<32>(&leaf_hash).map_err(|e| bad(format!("leaf_hash: {e}")))?);
    if size < 2 {
        return Err(bad(format!(
            "size {size} must be at least 2 (a one-leaf tree needs no proof)"
        )));
    }
    let (tree, published) = published(&api)?;
    if size > published {
        return Err(beyond_published(&api, "size", size, published));
    }
    match tree.inclusion_proof_by_hash(&leaf_hash, size) {
        Ok((leaf_index, path)) => Ok(text(
            StatusCode::OK,
            InclusionProof { leaf_index, path }.to_ascii(),
        )),
        Err(MerkleError::LeafNotFound { .. }) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("leaf {leaf_hash} is not in the tree of size {size}"),
        )),
        Err(e) => Err(internal(e)),
    }
}

async fn get_consistency_proof(
    State(api): State<Arc<PublicApi>>,
    Path((old, new)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let old = int("old_size", &old)?;
    let new = int("new_size", &new)?;
    if old == 0 || new <= old {
        return Err(bad(format!(
            "need 0 < old_size < new_size, got {old} and {new}"
        )));
    }
    let (tree, published) = published(&api)?;
    if new > published {
        return Err(beyond_published(&api, "new_size", new, published));
    }
    let path = tree.consistency_proof(old, new).map_err(internal)?;
    Ok(text(StatusCode::OK, ConsistencyProof { path }.to_ascii()))
}

async fn get_leaves(
    State(api): State<Arc<PublicApi>>,
    Path((start, end)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let start = int("start_index", &start)?;
    let end = int("end_index", &end)?;
    if end <= start {
        return Err(bad(format!(
            "need start_index < end_index, got {start} and {end}"
        )));
    }
    let (_, published) = published(&api)?;
    if end > published {
        return Err(beyond_published(&api, "end_index", end, published));
    }
    let end = end.min(start.saturating_add(api.max_range));
    let leaves = api.state.leaves(start, end).map_err(internal)?;
    Ok(text(StatusCode::OK, leaves_to_ascii(&leaves)))
}
