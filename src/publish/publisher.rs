//! The publication loop. On the node that leads and holds the signing key, every interval:
//!
//! 1. a read barrier, so the local tree holds everything committed so far (a new leader
//!    never signs below what an earlier leader signed);
//! 2. sign the checkpoint of the whole applied tree and commit it through Raft as the
//!    *signed* head before any witness sees it (the state machine refuses a head that is
//!    smaller than the last or whose root is not the tree's);
//! 3. send it to every witness of the policy in parallel (tlog-witness `add-checkpoint`);
//! 4. commit the head with the cosignatures that came back as the *published* head, which
//!    every node then serves.
//!
//! Rounds repeat even when the tree did not grow, so cosignature timestamps stay fresh.

use super::custody::KeySlot;
use super::signer::LogSigner;
use super::witness::{cosign, WitnessClient, WitnessError};
use crate::merkle::Hash;
use crate::metrics::Metrics;
use crate::replicated::{decode_result, encode, ApplyOutcome, LeafState, LogCommand};
use crate::sigsum::cosignature::Cosignature;
use crate::sigsum::policy::PolicyWitness;
use crate::sigsum::tree_head::{CosignedTreeHead, SignedTreeHead};
use crate::status::Publishing;
use quorumlog_raft::{NodeHandle, WriteError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tracing::Instrument;

/// How the publisher runs.
#[derive(Clone)]
pub struct PublishConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Longest a round waits for witnesses.
    pub witness_timeout: Duration,
    /// The witnesses of the policy.
    pub witnesses: Vec<PolicyWitness>,
}

/// Why a round did not publish.
#[derive(Debug, Error)]
enum RoundError {
    #[error("replication: {0}")]
    Write(#[from] WriteError),
    #[error("tree: {0}")]
    Tree(String),
    #[error("the replicated state refused the head: {0}")]
    Refused(String),
}

/// Runs the publication loop until the process ends.
pub fn start(
    node: NodeHandle,
    state: Arc<LeafState>,
    keys: Arc<KeySlot>,
    config: PublishConfig,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = WitnessClient::new(config.witness_timeout);
        // What each witness is believed to hold; forgotten when leadership is lost, since
        // another leader may have advanced it meanwhile (a 409 corrects it anyway).
        let mut witness_sizes: HashMap<String, u64> = HashMap::new();
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round_no = 0u64;
        loop {
            ticker.tick().await;
            let signer = keys.get();
            metrics.set_signing_key_loaded(signer.is_some());
            let leader = node.raft().is_leader();
            let publishing = match (&signer, leader, keys.paused()) {
                (_, false, _) => Publishing::Follower,
                (None, true, _) => Publishing::NoSigningKey,
                (Some(_), true, true) => Publishing::TransferInProgress,
                (Some(_), true, false) => Publishing::Publishing,
            };
            keys.set_publishing(publishing);
            let Some(signer) = signer.filter(|_| leader && !keys.paused()) else {
                metrics.set_publishing(false);
                witness_sizes.clear();
                continue;
            };
            let _round = keys.round_guard().await;
            if keys.paused() {
                continue;
            }
            metrics.set_publishing(true);
            round_no += 1;
            let span = tracing::info_span!("publish_round", round = round_no);
            let r = round(
                &node,
                &state,
                &signer,
                &config,
                &client,
                &mut witness_sizes,
                &metrics,
            )
            .instrument(span)
            .await;
            match r {
                Ok(head) => tracing::debug!(
                    size = head.head.size,
                    cosignatures = head.cosignatures.len(),
                    "published"
                ),
                Err(RoundError::Write(WriteError::NotLeader { .. })) => {
                    tracing::info!("lost leadership; not publishing");
                }
                Err(e) => tracing::warn!(error = %e, "publication round failed"),
            }
        }
    })
}

async fn commit(node: &NodeHandle, cmd: LogCommand) -> Result<(), RoundError> {
    let r = node.client_write(encode(&cmd)).await?;
    match decode_result(&r).map_err(RoundError::Refused)? {
        ApplyOutcome::HeadRecorded => Ok(()),
        ApplyOutcome::Invalid(e) => Err(RoundError::Refused(e)),
        other => Err(RoundError::Refused(format!("unexpected outcome {other:?}"))),
    }
}

async fn round(
    node: &NodeHandle,
    state: &LeafState,
    signer: &LogSigner,
    config: &PublishConfig,
    client: &WitnessClient,
    witness_sizes: &mut HashMap<String, u64>,
    metrics: &Metrics,
) -> Result<CosignedTreeHead, RoundError> {
    node.ensure_applied().await?;
    let tree = state
        .tree()
        .ok_or_else(|| RoundError::Tree("state not attached".into()))?;
    let size = tree.size();
    let root = tree
        .root(size)
        .map_err(|e| RoundError::Tree(e.to_string()))?;
    let head: SignedTreeHead = signer.sign_tree_head(size, root);
    // Ed25519 is deterministic: an unchanged tree gives the very same head, already recorded.
    if state.signed_head() != Some(head) {
        commit(node, LogCommand::SignedHead(head)).await?;
    }

    let checkpoint = head.checkpoint(&signer.public_key().key_hash());
    let note = checkpoint.signed_note(&signer.public_key(), &head.signature);
    let proof_from = |old: u64| -> Result<Vec<Hash>, String> {
        tree.consistency_proof(old, size).map_err(|e| e.to_string())
    };
    let requests = config.witnesses.iter().map(|w| {
        let known = witness_sizes.get(&w.name).copied().unwrap_or(0);
        let (checkpoint, note, proof_from) = (&checkpoint, &note, &proof_from);
        async move {
            let r = tokio::time::timeout(
                config.witness_timeout,
                cosign(client, w, known, checkpoint, note, proof_from),
            )
            .await
            .unwrap_or_else(|_| Err(WitnessError::Transport("timed out".into())));
            (w, r)
        }
    });
    let mut cosignatures: Vec<Cosignature> = Vec::new();
    for (w, r) in futures::future::join_all(requests).await {
        match r {
            Ok((cosig, now)) => {
                metrics.witness_result(&w.name, "ok");
                witness_sizes.insert(w.name.clone(), now);
                if !cosignatures.iter().any(|c| c.key_hash == cosig.key_hash) {
                    cosignatures.push(cosig);
                }
            }
            Err(WitnessError::Conflict { witness_size }) => {
                metrics.witness_result(&w.name, "conflict");
                witness_sizes.insert(w.name.clone(), witness_size);
                tracing::warn!(witness = %w.name, witness_size, size, "witness conflict");
            }
            Err(e) => {
                metrics.witness_result(&w.name, "error");
                tracing::warn!(witness = %w.name, error = %e, "no cosignature");
            }
        }
    }
    let mut published = CosignedTreeHead { head, cosignatures };
    // Every node parses the head again when it applies it; if anything a witness sent
    // would not read back, publish without cosignatures rather than not at all.
    if CosignedTreeHead::parse(published.to_ascii().as_bytes()).as_ref() != Ok(&published) {
        tracing::error!(
            size,
            "cosigned head does not read back; publishing it uncosigned"
        );
        published.cosignatures.clear();
    }
    commit(node, LogCommand::PublishedHead(published.clone())).await?;
    Ok(published)
}
