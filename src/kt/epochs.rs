//! The leader's epoch loop. On the node that leads and holds the directory key, every
//! `epoch_interval` (or as soon as an epoch is full): close the open epoch with a marker if
//! updates are waiting, then sign the head of every closed epoch that has none and commit
//! it with its Sigsum leaf. Markers and heads are checked when applied (the epoch number,
//! and that a head states exactly what every node computed), so a deposed leader's late
//! command is refused, never applied twice.

use super::directory::Directory;
use crate::publish::custody::KeySlot;
use crate::replicated::{decode_result, encode, ApplyOutcome, LogCommand};
use quorumlog_kt::head::MapHead;
use quorumlog_raft::{NodeHandle, WriteError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::Instrument;

/// Runs the loop until the process ends.
pub fn start(
    node: NodeHandle,
    directory: Arc<Directory>,
    keys: Arc<KeySlot>,
    interval: Duration,
    epoch_full: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = epoch_full.notified() => {}
            }
            if !node.raft().is_leader() || keys.paused() || keys.get().is_none() {
                continue;
            }
            if let Err(e) = tick(&node, &directory, &keys).await {
                match e {
                    WriteError::NotLeader { .. } => tracing::info!("lost leadership; no epoch"),
                    e => tracing::warn!(error = %e, "directory epoch step failed"),
                }
            }
        }
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn propose(node: &NodeHandle, cmd: LogCommand) -> Result<ApplyOutcome, WriteError> {
    let r = node.client_write(encode(&cmd)).await?;
    Ok(decode_result(&r).unwrap_or_else(ApplyOutcome::Invalid))
}

async fn tick(node: &NodeHandle, dir: &Directory, keys: &KeySlot) -> Result<(), WriteError> {
    // Everything committed is applied here before this node decides what is missing.
    node.ensure_applied().await?;
    let meta = dir.meta();
    if meta.pending > 0 {
        let epoch = meta.epoch + 1;
        let outcome = propose(
            node,
            LogCommand::KtMarker {
                epoch,
                timestamp_ms: now_ms(),
            },
        )
        .instrument(tracing::info_span!("kt_epoch", epoch))
        .await?;
        if let ApplyOutcome::Invalid(e) = outcome {
            tracing::warn!(reason = %e, "epoch marker refused");
        }
    }
    // Heads for every closed epoch without one, oldest first.
    loop {
        let meta = dir.meta();
        if meta.signed_epoch >= meta.epoch {
            return Ok(());
        }
        let Some(signer) = keys.get() else {
            return Ok(());
        };
        let epoch = meta.signed_epoch + 1;
        let Some(info) = dir.epoch(epoch).ok().flatten() else {
            tracing::error!(epoch, "closed epoch missing from the store");
            return Ok(());
        };
        let log_root = match dir.mutation_log().and_then(|l| {
            l.root(info.log_size)
                .map_err(|e| std::io::Error::other(e.to_string()))
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(epoch, error = %e, "log of mutations unreadable");
                return Ok(());
            }
        };
        let keys = signer.directory();
        let head = keys.sign_map_head(MapHead {
            map_id: dir.params().map_id,
            epoch,
            map_root: info.map_root,
            log_size: info.log_size,
            log_root: log_root.0,
            timestamp_ms: info.timestamp_ms,
        });
        let leaf = keys.head_leaf(&head);
        match propose(node, LogCommand::KtHead { head, leaf }).await? {
            ApplyOutcome::KtHead { leaf_index } => {
                tracing::info!(epoch, leaf_index, "map head recorded");
            }
            other => {
                tracing::warn!(epoch, outcome = ?other, "map head refused");
                return Ok(());
            }
        }
    }
}
