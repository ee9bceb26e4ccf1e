//! A follower's queue of checked leaves for the leader.
//!
//! When submissions are checked where they arrive (`[api] check_submissions_on`), a
//! follower verifies each add-leaf request itself and hands the leader only the 128-byte
//! leaf and the token's domain. Requests arriving together share one `Forward` call: a
//! task takes everything queued (up to [`MAX_BATCH`]) whenever fewer than [`IN_FLIGHT`]
//! calls are outstanding, so under load each call carries many leaves and at low load a
//! leaf waits for nobody.

use super::add_leaf::AddLeafOutcome;
use crate::sigsum::leaf::TreeLeaf;
use crate::wire;
use prost::Message;
use quorumlog_raft::{NodeHandle, WriteError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

/// Most leaves in one forwarded batch (about 20 KiB on the wire).
const MAX_BATCH: usize = 256;
/// Most batches on their way to the leader at once.
const IN_FLIGHT: usize = 8;

/// A leaf whose request this node has parsed and verified (token and signature).
#[derive(Debug, Clone)]
pub struct CheckedLeaf {
    pub leaf: TreeLeaf,
    /// The verified submit token's domain, which the rate limit is charged to.
    pub domain: Option<String>,
}

impl CheckedLeaf {
    fn to_wire(&self) -> wire::CheckedLeaf {
        wire::CheckedLeaf {
            leaf: self.leaf.to_bytes().to_vec(),
            domain: self.domain.clone(),
        }
    }

    /// Decodes a leaf another node forwarded; `None` if it is not 128 bytes of leaf.
    pub(crate) fn from_wire(w: wire::CheckedLeaf) -> Option<CheckedLeaf> {
        Some(CheckedLeaf {
            leaf: TreeLeaf::from_bytes(&w.leaf)?,
            domain: w.domain,
        })
    }
}

/// What the leader made of one forwarded leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    Answer(AddLeafOutcome),
    /// The leader runs a version that does not take checked leaves: forward the raw
    /// request instead (during a rolling upgrade).
    LeaderTooOld,
}

struct Queued {
    leaf: CheckedLeaf,
    reply: oneshot::Sender<Forwarded>,
}

/// Handle for queueing leaves; cheap to clone.
#[derive(Clone)]
pub struct ForwardQueue {
    tx: mpsc::Sender<Queued>,
}

/// The task that sends the queue's batches, not yet running: it needs the node.
pub struct ForwardLoop {
    rx: mpsc::Receiver<Queued>,
}

impl ForwardQueue {
    pub fn new() -> (ForwardQueue, ForwardLoop) {
        let (tx, rx) = mpsc::channel(65_536);
        (ForwardQueue { tx }, ForwardLoop { rx })
    }

    /// Hands `leaf` to the current leader and waits for its answer.
    pub async fn forward(&self, leaf: CheckedLeaf) -> Forwarded {
        let (reply, rx) = oneshot::channel();
        let stopped = || {
            Forwarded::Answer(AddLeafOutcome::Unavailable(
                "the node is shutting down".into(),
            ))
        };
        if self.tx.send(Queued { leaf, reply }).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

impl ForwardLoop {
    /// Starts sending batches through `node`.
    pub fn run(self, node: NodeHandle) {
        tokio::spawn(send_batches(node, self.rx));
    }
}

async fn send_batches(node: NodeHandle, mut rx: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for a free slot before taking leaves, so leaves that arrive meanwhile join
        // the next batch instead of waiting behind a batch that is not sent yet.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let span = tracing::debug_span!("forward_batch", leaves = batch.len());
        let node = node.clone();
        tokio::spawn(
            async move {
                send(&node, batch).await;
                drop(slot);
            }
            .instrument(span),
        );
    }
}

async fn send(node: &NodeHandle, batch: Vec<Queued>) {
    let request = wire::ForwardedAddLeaf {
        checked: batch.iter().map(|q| q.leaf.to_wire()).collect(),
        ..Default::default()
    };
    let answers = match node.forward_to_leader(request.encode_to_vec()).await {
        Ok(reply) => read_answer(&reply, batch.len()),
        Err(WriteError::NotLeader { .. }) => same_for_all(
            AddLeafOutcome::Unavailable(
                "no leader is known right now (an election may be in progress); retry shortly"
                    .into(),
            ),
            batch.len(),
        ),
        Err(e) => same_for_all(
            AddLeafOutcome::Unavailable(format!("the leader could not be reached: {e}")),
            batch.len(),
        ),
    };
    tracing::debug!("batch answered");
    for (q, a) in batch.into_iter().zip(answers) {
        let _ = q.reply.send(a);
    }
}

fn same_for_all(outcome: AddLeafOutcome, n: usize) -> Vec<Forwarded> {
    vec![Forwarded::Answer(outcome); n]
}

/// The leader's answer to a batch of `n` leaves, one entry per leaf.
fn read_answer(reply: &[u8], n: usize) -> Vec<Forwarded> {
    let answer = match wire::AddLeafAnswer::decode(reply) {
        Ok(a) => a,
        Err(e) => {
            return same_for_all(
                AddLeafOutcome::Failed(format!("undecodable answer from the leader: {e}")),
                n,
            )
        }
    };
    if answer.checked.len() == n {
        return answer
            .checked
            .into_iter()
            .map(|a| Forwarded::Answer(AddLeafOutcome::from_answer(a)))
            .collect();
    }
    if !answer.checked.is_empty() {
        return same_for_all(
            AddLeafOutcome::Failed(format!(
                "the leader answered {} of {n} forwarded leaves",
                answer.checked.len()
            )),
            n,
        );
    }
    // No per-leaf answers: an older leader read an empty raw request. Anything but its
    // "invalid request" answer is a whole-batch outcome.
    match AddLeafOutcome::from_answer(answer) {
        AddLeafOutcome::Invalid(_) => vec![Forwarded::LeaderTooOld; n],
        other => same_for_all(other, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::Hash;
    use crate::sigsum::crypto::Signature;

    fn answer(outcomes: &[AddLeafOutcome]) -> Vec<u8> {
        wire::AddLeafAnswer {
            outcome: wire::AddLeafOutcome::Added.into(),
            message: String::new(),
            checked: outcomes.iter().map(AddLeafOutcome::to_answer).collect(),
            kt: None,
        }
        .encode_to_vec()
    }

    #[test]
    fn per_leaf_answers_keep_their_order() {
        let want = [
            AddLeafOutcome::Added,
            AddLeafOutcome::RateLimited("slow".into()),
            AddLeafOutcome::Pending,
        ];
        let got = read_answer(&answer(&want), 3);
        let want: Vec<_> = want.into_iter().map(Forwarded::Answer).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_short_answer_fails_every_leaf() {
        let got = read_answer(&answer(&[AddLeafOutcome::Added]), 2);
        assert_eq!(got.len(), 2);
        assert!(
            got.iter().all(
                |f| matches!(f, Forwarded::Answer(AddLeafOutcome::Failed(m)) if m.contains("1 of 2"))
            ),
            "{got:?}"
        );
    }

    #[test]
    fn an_older_leader_is_recognised() {
        // What a leader that predates checked leaves answers: it parsed an empty body.
        let old = AddLeafOutcome::Invalid("invalid add-leaf request: empty".into())
            .to_answer()
            .encode_to_vec();
        assert_eq!(read_answer(&old, 2), vec![Forwarded::LeaderTooOld; 2]);
        // A whole-batch outcome from a current leader is passed on, not mistaken for age.
        let busy = AddLeafOutcome::Unavailable("moving".into())
            .to_answer()
            .encode_to_vec();
        assert_eq!(
            read_answer(&busy, 1),
            vec![Forwarded::Answer(AddLeafOutcome::Unavailable(
                "moving".into()
            ))]
        );
    }

    #[test]
    fn checked_leaves_survive_the_wire_and_bad_ones_are_refused() {
        let c = CheckedLeaf {
            leaf: TreeLeaf {
                checksum: Hash([1; 32]),
                signature: Signature([2; 64]),
                key_hash: Hash([3; 32]),
            },
            domain: Some("example.org".into()),
        };
        let back = CheckedLeaf::from_wire(c.to_wire()).unwrap();
        assert_eq!((back.leaf, &back.domain), (c.leaf, &c.domain));
        let mut short = c.to_wire();
        short.leaf.pop();
        assert!(CheckedLeaf::from_wire(short).is_none());
    }
}
