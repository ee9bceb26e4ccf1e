//! Key custody: which node holds the log's signing key, and how it moves.
//!
//! - `file`: every node reads the key file at start; whichever node leads publishes, so a
//!   failover needs no operator.
//! - `handoff`: the key is in the memory of one node. A planned leadership transfer sends it
//!   to the target over the cluster's mutually authenticated channel before leadership
//!   moves, and the old leader forgets it once the target leads. After an unplanned loss of
//!   that node the cluster keeps committing leaves but publishes nothing until an operator
//!   loads the key into the new leader (`quorumlog admin load-key`).
//!
//! In both modes a transfer first stops new publication rounds and waits for a running one
//! to end, so no round straddles the change of leader.

use super::signer::LogSigner;
use crate::sigsum::crypto::PublicKey;
use crate::status::Publishing;
use quorumlog_raft::types::NodeId;
use quorumlog_raft::{NodeHandle, Refusal};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

/// Where the signing key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Custody {
    /// Every node has the key file.
    #[default]
    File,
    /// One node holds the key in memory; transfers hand it over.
    Handoff,
}

/// The signing key slot of one node, shared by the publisher, the hand-over and the steps
/// around a transfer. Everything in it is node-local: none of it is replicated.
pub struct KeySlot {
    custody: Custody,
    public_key: PublicKey,
    key: RwLock<Option<Arc<LogSigner>>>,
    /// What the publisher found at its last tick (shown in status).
    publishing: RwLock<Publishing>,
    paused: AtomicBool,
    /// Held for the whole of a publication round; a transfer takes it to wait one out.
    round: tokio::sync::Mutex<()>,
    handed_off_marker: Option<PathBuf>,
}

impl KeySlot {
    /// A slot for the log `public_key`, holding `key` if given.
    pub fn new(custody: Custody, public_key: PublicKey, key: Option<LogSigner>) -> KeySlot {
        KeySlot {
            custody,
            public_key,
            key: RwLock::new(key.map(Arc::new)),
            publishing: RwLock::new(Publishing::Starting),
            paused: AtomicBool::new(false),
            round: tokio::sync::Mutex::new(()),
            handed_off_marker: None,
        }
    }

    /// Custody `handoff`: the file whose presence says this node handed the key to another
    /// node (so its key file must not bring the key back at the next start).
    pub fn with_handed_off_marker(mut self, path: PathBuf) -> KeySlot {
        self.handed_off_marker = Some(path);
        self
    }

    fn mark_handed_off(&self) {
        if let Some(marker) = &self.handed_off_marker {
            let note = b"the signing key was handed to another node; this node's key file is not loaded at start\n";
            if let Err(e) = quorumlog_raft::snapshot::write_atomic(marker, note) {
                tracing::warn!(error = %e, "could not record the hand-off");
            }
        }
    }

    pub fn custody(&self) -> Custody {
        self.custody
    }

    /// The key, if this node holds it.
    pub fn get(&self) -> Option<Arc<LogSigner>> {
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this node publishes, as of the publisher's last tick.
    pub fn publishing(&self) -> Publishing {
        *self.publishing.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_publishing(&self, p: Publishing) {
        *self.publishing.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// Whether publication is paused for a transfer.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Taken by the publisher for the duration of a round.
    pub async fn round_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.round.lock().await
    }

    fn set(&self, key: Option<LogSigner>) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = key.map(Arc::new);
    }

    /// Takes a delivered key (32-byte seed), or forgets the key if `seed` is empty.
    pub fn deliver(&self, seed: &[u8]) -> Result<String, Refusal> {
        if self.custody != Custody::Handoff {
            return Err(Refusal(
                "key custody is `file` here: every node reads the key file; nothing to load".into(),
            ));
        }
        if seed.is_empty() {
            self.set(None);
            tracing::info!("signing key forgotten");
            return Ok("signing key forgotten".into());
        }
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.try_into()
                .map_err(|_| Refusal("a signing key is a 32-byte Ed25519 seed".into()))?,
        );
        let signer = LogSigner::from_seed(&seed);
        if signer.public_key() != self.public_key {
            return Err(Refusal(
                "that key is not this log's key (its public key differs)".into(),
            ));
        }
        self.set(Some(signer));
        // Holding the key again, this node's key file may serve it after a restart.
        if let Some(marker) = &self.handed_off_marker {
            if let Err(e) = std::fs::remove_file(marker) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, "could not remove the hand-off marker");
                }
            }
        }
        tracing::info!("signing key loaded");
        Ok("signing key loaded; this node publishes while it leads".into())
    }

    /// Takes a hand-over (the `Handover` call): a key from the leader or an operator, or
    /// an empty payload to forget the key. The received copy is wiped once read.
    pub fn receive_handover(&self, payload: Vec<u8>) -> Result<String, Refusal> {
        let seed = Zeroizing::new(payload);
        self.deliver(&seed)
    }

    /// The leader's step before a planned transfer to node `to`: stop publishing, let a
    /// round in progress finish, and (custody `handoff`) hand the key to `to`.
    pub async fn before_transfer(&self, node: &NodeHandle, to: NodeId) -> Result<(), Refusal> {
        self.paused.store(true, Ordering::SeqCst);
        drop(self.round.lock().await);
        if self.custody == Custody::Handoff {
            if let Some(key) = self.get() {
                if let Err(e) = node.hand_over(to, key.seed().to_vec()).await {
                    self.paused.store(false, Ordering::SeqCst);
                    return Err(Refusal(format!(
                        "handing the signing key to node {to}: {e}"
                    )));
                }
                tracing::info!(to, "signing key handed over");
            } else {
                tracing::warn!(to, "transfer without a signing key to hand over");
            }
        }
        Ok(())
    }

    /// The old leader's step once the transfer to `to` has ended (`moved`: in time).
    pub async fn after_transfer(&self, node: &NodeHandle, to: NodeId, moved: bool) {
        if self.custody == Custody::Handoff && self.get().is_some() {
            // The wait for the target to lead can time out and the target still take over
            // a moment later: only a node that still leads takes the key back; if the
            // target leads, it keeps the key and this node forgets it.
            let target_leads = node.leader().is_some_and(|(id, _)| id == to);
            if moved || target_leads {
                self.set(None);
                self.mark_handed_off();
                tracing::info!(to, "signing key forgotten after the transfer");
            } else if node.raft().is_leader() {
                if let Err(e) = node.hand_over(to, Vec::new()).await {
                    // The target keeps a copy; it publishes only if it ever leads.
                    tracing::warn!(to, error = %e, "could not take the key back");
                }
            } else {
                // A third node leads: both copies stay; whichever leads publishes.
                tracing::warn!(to, "transfer ended with another leader; keeping the key");
            }
        }
        self.paused.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_checks_the_key_and_the_mode() {
        let signer = LogSigner::from_seed(&[4; 32]);
        let slot = KeySlot::new(Custody::Handoff, signer.public_key(), None);
        assert!(slot.get().is_none());
        assert!(slot.deliver(&[1; 31]).is_err());
        assert!(slot
            .deliver(&[5; 32])
            .unwrap_err()
            .0
            .contains("not this log's key"));
        slot.deliver(&[4; 32]).unwrap();
        assert_eq!(slot.get().unwrap().public_key(), signer.public_key());
        slot.deliver(&[]).unwrap();
        assert!(slot.get().is_none());
        let file = KeySlot::new(Custody::File, signer.public_key(), Some(signer));
        assert!(file
            .deliver(&[4; 32])
            .unwrap_err()
            .0
            .contains("custody is `file`"));
    }
}
