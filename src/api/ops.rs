//! The ops listener: `/metrics` (Prometheus text format) and `/health`.

use super::public::text;
use crate::metrics::{Metrics, RaftGauges, CONTENT_TYPE};
use crate::replicated::LeafState;
use crate::status::RaftRole;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use quorumlog_raft::network::pb::Role;
use quorumlog_raft::NodeHandle;
use std::sync::Arc;

/// What the ops handlers read.
pub struct Ops {
    pub node: NodeHandle,
    pub state: Arc<LeafState>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(ops)
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    let s = ops.node.status();
    let gauges = RaftGauges {
        term: s.term,
        leader: s.leader.unwrap_or(0),
        committed: s.committed_index.unwrap_or(0),
        applied: s.applied_index.unwrap_or(0),
        is_leader: s.role() == Role::Leader,
        tree_size: ops.state.tree().map_or(0, |t| t.size()),
        published_size: ops.state.published_head().map_or(0, |h| h.head.size),
        signed_size: ops.state.signed_head().map_or(0, |h| h.size),
    };
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        ops.metrics.render(&gauges),
    )
        .into_response()
}

/// 200 when the node knows a leader and serves a published head; 503 with the reason
/// otherwise.
async fn health(State(ops): State<Arc<Ops>>) -> Response {
    let s = ops.node.status();
    let published = ops.state.published_head().map(|h| h.head.size);
    let publishing = ops.metrics.is_publishing();
    let detail = format!(
        "role={} leader={} term={} published_size={} publishing={publishing}",
        RaftRole::of(&s).as_str(),
        s.leader.map_or("none".into(), |l| l.to_string()),
        s.term,
        published.map_or("none".into(), |p| p.to_string()),
    );
    match (s.leader, published) {
        (Some(_), Some(_)) => text(StatusCode::OK, format!("ok {detail}")),
        (None, _) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: no leader known; {detail}"),
        ),
        (_, None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: no tree head published yet; {detail}"),
        ),
    }
}
