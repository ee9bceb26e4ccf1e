//! Group commit on the leader: concurrent submissions are collected into one Raft entry,
//! closed when it holds `max_leaves` leaves or `max_delay` has passed since its first leaf.
//! One entry costs one fsync on each node however many leaves it carries. Several entries
//! may be in flight at once, so collecting the next batch never waits for the previous one.

use super::command::{decode_result, encode_leaves, ApplyOutcome};
use crate::metrics::Metrics;
use crate::sigsum::leaf::TreeLeaf;
use quorumlog_raft::{NodeHandle, WriteError};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most leaves in one Raft entry.
    pub max_leaves: usize,
    /// Longest a submission waits for others to join its batch.
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_leaves: 1024,
            max_delay: Duration::from_micros(1000),
        }
    }
}

/// Why leaves were not committed.
#[derive(Debug, Error, Clone)]
pub enum ProposeError {
    /// Replication refused or failed (not the leader, cluster stopped...).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The batch was not valid.
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// The group-commit task is gone (the node is shutting down).
    #[error("the proposer has stopped")]
    Stopped,
}

struct Pending {
    leaves: Vec<TreeLeaf>,
    reply: oneshot::Sender<Result<Vec<u64>, ProposeError>>,
}

/// Handle to the group-commit task of a node.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
    max_leaves: usize,
}

/// The batching task, not yet running: it needs the node, and the node needs the
/// application (which holds the [`GroupCommit`]) to start.
pub struct Batcher {
    rx: mpsc::Receiver<Pending>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
}

impl Batcher {
    /// Starts batching proposals into `node`'s log; proposals made before wait for this.
    pub fn run(self, node: NodeHandle) {
        tokio::spawn(collect(node, self.config, self.rx, self.metrics));
    }
}

impl GroupCommit {
    /// A group commit and the task that will batch its proposals.
    pub fn new(config: BatchConfig, metrics: Arc<Metrics>) -> (GroupCommit, Batcher) {
        let (tx, rx) = mpsc::channel(65_536);
        let gc = GroupCommit {
            tx,
            max_leaves: config.max_leaves,
        };
        (
            gc,
            Batcher {
                rx,
                config,
                metrics,
            },
        )
    }

    /// Most leaves one [`GroupCommit::propose`] takes (at least 1).
    pub fn max_leaves(&self) -> usize {
        self.max_leaves.max(1)
    }

    /// Commits `leaves` and returns their indexes, in order, once they are committed by a
    /// majority and applied on this node. Only the leader can commit. At most
    /// `max_leaves` leaves per call, so that no Raft entry outgrows what replication and
    /// the gRPC message limit carry.
    pub async fn propose(&self, leaves: Vec<TreeLeaf>) -> Result<Vec<u64>, ProposeError> {
        if leaves.is_empty() {
            return Ok(Vec::new());
        }
        if leaves.len() > self.max_leaves {
            return Err(ProposeError::Invalid(format!(
                "{} leaves in one proposal; at most {} are accepted",
                leaves.len(),
                self.max_leaves
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { leaves, reply })
            .await
            .map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }
}

async fn collect(
    node: NodeHandle,
    config: BatchConfig,
    mut rx: mpsc::Receiver<Pending>,
    metrics: Arc<Metrics>,
) {
    // A submission that would overfill a batch opens the next one.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut count = first.leaves.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_delay;
        while count < config.max_leaves {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) if count + p.leaves.len() > config.max_leaves => {
                    carried = Some(p);
                    break;
                }
                Ok(Some(p)) => {
                    count += p.leaves.len();
                    batch.push(p);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let span = tracing::debug_span!("raft_entry", leaves = count, submissions = batch.len());
        tokio::spawn(commit(node.clone(), batch, metrics.clone()).instrument(span));
    }
}

async fn commit(node: NodeHandle, batch: Vec<Pending>, metrics: Arc<Metrics>) {
    let leaves: Vec<TreeLeaf> = batch
        .iter()
        .flat_map(|p| p.leaves.iter().copied())
        .collect();
    let started = Instant::now();
    let result = match node.client_write(encode_leaves(&leaves)).await {
        Ok(r) => match decode_result(&r) {
            Ok(ApplyOutcome::Indexes(ix)) if ix.len() == leaves.len() => Ok(ix),
            Ok(ApplyOutcome::Indexes(ix)) => Err(ProposeError::Invalid(format!(
                "applied {} indexes for {} leaves",
                ix.len(),
                leaves.len()
            ))),
            Ok(other @ ApplyOutcome::HeadRecorded)
            | Ok(other @ ApplyOutcome::KtUpdate { .. })
            | Ok(other @ ApplyOutcome::KtEpoch(_))
            | Ok(other @ ApplyOutcome::KtHead { .. }) => Err(ProposeError::Invalid(format!(
                "a leaf batch applied as something else: {other:?}"
            ))),
            Ok(ApplyOutcome::Invalid(e)) | Err(e) => Err(ProposeError::Invalid(e)),
        },
        Err(e) => Err(ProposeError::Write(e)),
    };
    tracing::debug!(ok = result.is_ok(), "batch committed");
    if result.is_ok() {
        metrics.batch_committed(leaves.len(), started.elapsed());
    }
    let mut indexes = result.map(|v| v.into_iter());
    for p in batch {
        let r = match &mut indexes {
            Ok(it) => Ok(it.by_ref().take(p.leaves.len()).collect()),
            Err(e) => Err(e.clone()),
        };
        let _ = p.reply.send(r);
    }
}
