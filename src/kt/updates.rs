//! Queueing a directory update: any node takes it, followers forward it to the leader
//! unchanged, and the leader checks it (size limits, the id's VRF index, the commitment,
//! the signatures against the current entry) and commits it through Raft. The verdict a
//! client gets is the one every node recorded in the log of mutations.

use super::directory::{Opening, Update};
use super::wire::{UpdateAnswer, UpdateRequest};
use crate::publish::custody::KeySlot;
use crate::replicated::{decode_result, encode, ApplyOutcome, LeafState, LogCommand};
use crate::wire;
use axum::http::StatusCode;
use prost::Message;
use quorumlog_kt::entry::{commit, Mutation, Rejection, NONCE_LEN};
use quorumlog_raft::{NodeHandle, WriteError};
use std::sync::Arc;
use tokio::sync::Notify;

/// An answer for the client: a status and a body (JSON on success, else a reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
}

impl Reply {
    fn text(status: StatusCode, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
        }
    }
}

pub fn verdict_name(v: Option<Rejection>) -> &'static str {
    match v {
        None => "applied",
        Some(Rejection::Stale) => "stale",
        Some(Rejection::NotAuthorised) => "not-authorised",
        Some(Rejection::NewKeysUnproven) => "new-keys-unproven",
    }
}

fn rejected_status(r: Rejection) -> StatusCode {
    match r {
        Rejection::Stale => StatusCode::CONFLICT,
        Rejection::NotAuthorised | Rejection::NewKeysUnproven => StatusCode::FORBIDDEN,
    }
}

/// Size limits of an update.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_id_bytes: usize,
    pub max_value_bytes: usize,
    pub max_epoch_mutations: u64,
}

pub struct Updates {
    pub state: Arc<LeafState>,
    pub keys: Arc<KeySlot>,
    pub limits: Limits,
    /// Wakes the epoch loop when an epoch is full.
    pub epoch_full: Arc<Notify>,
}

fn hex_field<const N: usize>(name: &str, s: &str) -> Result<[u8; N], Reply> {
    let mut out = [0; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| {
        Reply::text(
            StatusCode::BAD_REQUEST,
            format!("{name} must be {} hex characters", 2 * N),
        )
    })?;
    Ok(out)
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::text(StatusCode::BAD_REQUEST, msg)
}

impl Updates {
    /// Handles `POST /kt/v1/update` on the node the client reached.
    pub async fn submit(&self, node: &NodeHandle, body: &[u8]) -> Reply {
        if node.raft().is_leader() {
            return self.on_leader(node, body).await;
        }
        let f = wire::ForwardedAddLeaf {
            kt_update: Some(body.to_vec()),
            ..Default::default()
        };
        match node.forward_to_leader(f.encode_to_vec()).await {
            Ok(reply) => match wire::AddLeafAnswer::decode(reply.as_slice()) {
                Ok(wire::AddLeafAnswer { kt: Some(a), .. }) => Reply {
                    status: StatusCode::from_u16(a.status as u16)
                        .unwrap_or(StatusCode::BAD_GATEWAY),
                    body: a.body,
                },
                _ => Reply::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the leader does not run this version of the directory; retry later",
                ),
            },
            Err(WriteError::NotLeader { .. }) => Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no leader is known right now (an election may be in progress); retry shortly",
            ),
            Err(e) => Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the leader could not be reached: {e}"),
            ),
        }
    }

    /// The leader's part, for its own clients and for forwarded updates.
    pub async fn on_leader(&self, node: &NodeHandle, body: &[u8]) -> Reply {
        match self.check(body) {
            Ok(update) => self.commit(node, update).await,
            Err(r) => r,
        }
    }

    /// The answer to a forwarded update, encoded for the follower.
    pub async fn forwarded(&self, node: &NodeHandle, body: &[u8]) -> Vec<u8> {
        let r = self.on_leader(node, body).await;
        wire::AddLeafAnswer {
            kt: Some(wire::KtAnswer {
                status: r.status.as_u16().into(),
                body: r.body,
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn check(&self, body: &[u8]) -> Result<Update, Reply> {
        let Some(dir) = self.state.directory() else {
            return Err(Reply::text(
                StatusCode::NOT_FOUND,
                "this log runs no directory",
            ));
        };
        let req: UpdateRequest = serde_json::from_slice(body)
            .map_err(|e| bad(format!("an update is a JSON object (docs/kt.md): {e}")))?;
        let l = self.limits;
        if req.id.is_empty() || req.id.len() > l.max_id_bytes {
            return Err(bad(format!(
                "id must be 1 to {} bytes, not {}",
                l.max_id_bytes,
                req.id.len()
            )));
        }
        let value = hex::decode(&req.value).map_err(|_| bad("value must be hex"))?;
        if value.len() > l.max_value_bytes {
            return Err(bad(format!(
                "value is {} bytes; at most {} are taken",
                value.len(),
                l.max_value_bytes
            )));
        }
        let nonce = hex_field::<NONCE_LEN>("nonce", &req.nonce)?;
        let m = hex::decode(&req.mutation).map_err(|_| bad("mutation must be hex"))?;
        let mutation = Mutation::decode(&m).map_err(|e| bad(format!("mutation: {e}")))?;
        let Some(key) = self.keys.get() else {
            return Err(Reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the leader does not hold the directory key (custody handoff: load it with \
                 `quorumlog admin load-key`); retry later",
            ));
        };
        let (index, vrf_proof) = key.directory().index(req.id.as_bytes());
        if index != mutation.index {
            return Err(bad(format!(
                "the mutation is for index {}, but this id's index is {} (look the user up \
                 for its index)",
                hex::encode(mutation.index),
                hex::encode(index)
            )));
        }
        if commit(req.id.as_bytes(), &value, &nonce) != mutation.entry.commitment {
            return Err(bad(
                "the entry's commitment does not open to this id, value and nonce",
            ));
        }
        let current = dir
            .current(&index)
            .map_err(|e| Reply::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if let Err(r) = mutation.check(dir.params().map_id, current.as_ref().map(|s| &s.entry)) {
            return Err(Reply::text(rejected_status(r), r.to_string()));
        }
        Ok(Update {
            mutation,
            opening: Opening {
                id: req.id.into_bytes(),
                value,
                nonce,
                vrf_proof,
            },
        })
    }

    async fn commit(&self, node: &NodeHandle, update: Update) -> Reply {
        let r = match node
            .client_write(encode(&LogCommand::KtUpdate(update)))
            .await
        {
            Ok(r) => r,
            Err(e @ WriteError::NotLeader { .. }) => {
                return Reply::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("leadership moved while queueing the update ({e}); retry"),
                )
            }
            Err(e) => {
                return Reply::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the update was not committed: {e}; retry"),
                )
            }
        };
        if let Some(dir) = self.state.directory() {
            if dir.meta().pending >= self.limits.max_epoch_mutations {
                self.epoch_full.notify_one();
            }
        }
        match decode_result(&r) {
            Ok(ApplyOutcome::KtUpdate { log_index, verdict }) => {
                let verdict = Rejection::from_code(verdict);
                let answer = UpdateAnswer {
                    log_index,
                    verdict: verdict_name(verdict).into(),
                };
                Reply {
                    status: verdict.map_or(StatusCode::OK, rejected_status),
                    body: serde_json::to_string(&answer).unwrap_or_default(),
                }
            }
            Ok(ApplyOutcome::Invalid(e)) => Reply::text(StatusCode::BAD_REQUEST, e),
            other => Reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("unexpected outcome of an update: {other:?}"),
            ),
        }
    }
}
