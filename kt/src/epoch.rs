//! Applying an epoch's mutations, and replaying the log of mutations as a monitor does.
//!
//! Every node, and every monitor, applies the mutations between two markers in log order,
//! each checked against the entry left by the ones before it (so two changes to one user in
//! one epoch must chain). [`MemoryMap`] is the plain in-memory map: what a monitor keeps,
//! and the reference the directory's stored map is tested against.

use crate::entry::{Entry, Mutation, Rejection};
use crate::hasher::{ConiksSha256, Hash, Index};
use crate::head::SignedMapHead;
use crate::map::{self, Proof};
use crate::record::Record;
use quorumlog_sigsum::merkle::{leaf_hash, node_hash, Hash as LogHash};
use std::collections::BTreeMap;
use thiserror::Error;

/// The outcome of one epoch: a verdict per mutation (`None`: applied) and the entries it
/// set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EpochChanges {
    pub verdicts: Vec<Option<Rejection>>,
    pub entries: BTreeMap<Index, Entry>,
}

/// Applies `mutations` in order to the map whose entries `current` returns.
pub fn apply(
    map_id: u64,
    current: impl Fn(&Index) -> Option<Entry>,
    mutations: &[Mutation],
) -> EpochChanges {
    let mut out = EpochChanges::default();
    for m in mutations {
        let cur = out
            .entries
            .get(&m.index)
            .cloned()
            .or_else(|| current(&m.index));
        match m.check(map_id, cur.as_ref()) {
            Ok(()) => {
                out.entries.insert(m.index, m.entry.clone());
                out.verdicts.push(None);
            }
            Err(r) => out.verdicts.push(Some(r)),
        }
    }
    out
}

/// A whole map in memory.
#[derive(Debug, Clone)]
pub struct MemoryMap {
    hasher: ConiksSha256,
    entries: BTreeMap<Index, Entry>,
}

impl MemoryMap {
    pub fn new(map_id: u64) -> MemoryMap {
        MemoryMap {
            hasher: ConiksSha256::new(map_id),
            entries: BTreeMap::new(),
        }
    }

    pub fn get(&self, index: &Index) -> Option<&Entry> {
        self.entries.get(index)
    }

    /// Applies one epoch's mutations; returns their verdicts.
    pub fn apply(&mut self, mutations: &[Mutation]) -> Vec<Option<Rejection>> {
        let changes = apply(
            self.hasher.map_id(),
            |i| self.entries.get(i).cloned(),
            mutations,
        );
        self.entries.extend(changes.entries);
        changes.verdicts
    }

    fn leaves(&self) -> Vec<(Index, Hash)> {
        self.entries
            .iter()
            .map(|(i, e)| (*i, self.hasher.leaf(i, &e.encode())))
            .collect()
    }

    pub fn root(&self) -> Hash {
        map::root(&self.hasher, &self.leaves())
    }

    pub fn prove(&self, index: &Index) -> Proof {
        map::prove(&self.hasher, &self.leaves(), index)
    }
}

/// RFC 6962 root of a list of leaf hashes.
fn log_root(leaves: &[LogHash]) -> LogHash {
    match leaves.len() {
        0 => quorumlog_sigsum::merkle::empty_root(),
        1 => leaves[0],
        n => {
            // The largest power of two below n.
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&log_root(&leaves[..k]), &log_root(&leaves[k..]))
        }
    }
}

/// The first place a replay disagrees with what the directory published.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Disagreement {
    #[error("log record {0} does not decode: {1}")]
    Undecodable(u64, String),
    #[error("log record {index}: the log says {logged:?}, replaying gives {replayed:?}")]
    Verdict {
        index: u64,
        logged: Option<Rejection>,
        replayed: Option<Rejection>,
    },
    #[error("marker at record {index} is for epoch {found}, expected {expected}")]
    EpochOrder {
        index: u64,
        found: u64,
        expected: u64,
    },
    #[error("no signed map head for epoch {0}")]
    MissingHead(u64),
    #[error("the head of epoch {epoch} disagrees on {field}: published {published}, replayed {replayed}")]
    Head {
        epoch: u64,
        field: &'static str,
        published: String,
        replayed: String,
    },
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Replays the log of mutations (`records`, from the start) into `map`, checking each
/// record's verdict and, at each marker, that the published head of that epoch (`heads`,
/// by epoch; signatures already checked by the caller) names the replayed map root and log
/// state. Returns the number of epochs checked.
pub fn replay(
    map: &mut MemoryMap,
    records: &[Vec<u8>],
    heads: &BTreeMap<u64, SignedMapHead>,
) -> Result<u64, Disagreement> {
    let mut pending: Vec<(u64, Mutation, Option<Rejection>)> = Vec::new();
    let mut hashes = Vec::with_capacity(records.len());
    let mut epochs = 0;
    for (i, bytes) in records.iter().enumerate() {
        let index = i as u64;
        hashes.push(leaf_hash(bytes));
        match Record::decode(bytes).map_err(|e| Disagreement::Undecodable(index, e.to_string()))? {
            Record::Mutation { mutation, verdict } => pending.push((index, mutation, verdict)),
            Record::Marker { epoch, .. } => {
                let expected = epochs + 1;
                if epoch != expected {
                    return Err(Disagreement::EpochOrder {
                        index,
                        found: epoch,
                        expected,
                    });
                }
                let mutations: Vec<Mutation> = pending.iter().map(|(_, m, _)| m.clone()).collect();
                let verdicts = map.apply(&mutations);
                for ((at, _, logged), replayed) in pending.drain(..).zip(verdicts) {
                    if logged != replayed {
                        return Err(Disagreement::Verdict {
                            index: at,
                            logged,
                            replayed,
                        });
                    }
                }
                let head = heads
                    .get(&epoch)
                    .ok_or(Disagreement::MissingHead(epoch))?
                    .head;
                let root = map.root();
                let log = log_root(&hashes);
                let checks = [
                    ("map root", hex(&head.map_root), hex(&root.0)),
                    (
                        "log size",
                        head.log_size.to_string(),
                        (index + 1).to_string(),
                    ),
                    ("log root", hex(&head.log_root), hex(&log.0)),
                ];
                for (field, published, replayed) in checks {
                    if published != replayed {
                        return Err(Disagreement::Head {
                            epoch,
                            field,
                            published,
                            replayed,
                        });
                    }
                }
                epochs = epoch;
            }
        }
    }
    Ok(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{commit, NONCE_LEN};
    use crate::head::MapHead;
    use ed25519_dalek::{Signer, SigningKey};

    const MAP: u64 = 11;

    fn user(n: u8) -> (Index, SigningKey) {
        ([n; 32], SigningKey::from_bytes(&[n; 32]))
    }

    fn update(ix: Index, key: &SigningKey, value: &[u8], previous: [u8; 32]) -> Mutation {
        let entry = Entry {
            commitment: commit(&ix, value, &[0; NONCE_LEN]),
            keys: vec![key.verifying_key().to_bytes()],
            previous,
        };
        let sig = key.sign(&Mutation::signed_message(MAP, &ix, &entry));
        Mutation {
            index: ix,
            entry,
            signatures: vec![(key.verifying_key().to_bytes(), sig.to_bytes())],
        }
    }

    /// A directory's honest output for three epochs: records and signed heads.
    fn honest() -> (Vec<Vec<u8>>, BTreeMap<u64, SignedMapHead>) {
        let dir_key = SigningKey::from_bytes(&[99; 32]);
        let (a, ka) = user(1);
        let (b, kb) = user(2);
        let a1 = update(a, &ka, b"a1", [0; 32]);
        let a2 = update(a, &ka, b"a2", a1.entry.hash());
        let b1 = update(b, &kb, b"b1", [0; 32]);
        let stale = update(a, &ka, b"a3", a1.entry.hash());
        let epochs = vec![vec![a1], vec![a2, b1, stale], vec![]];
        let mut map = MemoryMap::new(MAP);
        let (mut records, mut heads) = (Vec::new(), BTreeMap::new());
        for (n, muts) in epochs.into_iter().enumerate() {
            let verdicts = map.apply(&muts);
            for (mutation, verdict) in muts.into_iter().zip(verdicts) {
                records.push(Record::Mutation { mutation, verdict }.encode());
            }
            let epoch = n as u64 + 1;
            records.push(
                Record::Marker {
                    epoch,
                    timestamp_ms: 1000 * epoch,
                }
                .encode(),
            );
            let hashes: Vec<LogHash> = records.iter().map(|r| leaf_hash(r)).collect();
            let head = MapHead {
                map_id: MAP,
                epoch,
                map_root: map.root().0,
                log_size: records.len() as u64,
                log_root: log_root(&hashes).0,
                timestamp_ms: 1000 * epoch,
            };
            heads.insert(epoch, head.sign(&dir_key));
        }
        (records, heads)
    }

    #[test]
    fn an_honest_run_replays_and_its_proofs_verify() {
        let (records, heads) = honest();
        let mut map = MemoryMap::new(MAP);
        assert_eq!(replay(&mut map, &records, &heads), Ok(3));
        // The stale update was recorded as such and left a2 in place.
        let a = [1; 32];
        let h = ConiksSha256::new(MAP);
        let root = Hash(heads[&3].head.map_root);
        let entry = map.get(&a).unwrap();
        assert_eq!(entry.commitment, commit(&a, b"a2", &[0; NONCE_LEN]));
        map::verify(&h, &root, &a, Some(&entry.encode()), &map.prove(&a)).unwrap();
        map::verify(&h, &root, &[3; 32], None, &map.prove(&[3; 32])).unwrap();
    }

    #[test]
    fn the_monitor_catches_planted_faults() {
        let (records, heads) = honest();
        let replay_with = |records: &[Vec<u8>], heads: &BTreeMap<u64, SignedMapHead>| {
            replay(&mut MemoryMap::new(MAP), records, heads)
        };

        // A changed value: record 1 (a2) carries another commitment than was applied.
        let mut changed = records.clone();
        let Record::Mutation {
            mut mutation,
            verdict,
        } = Record::decode(&changed[2]).unwrap()
        else {
            panic!("record 2 is a mutation")
        };
        mutation.entry.commitment[0] ^= 1;
        changed[2] = Record::Mutation { mutation, verdict }.encode();
        assert!(
            matches!(
                replay_with(&changed, &heads),
                Err(Disagreement::Verdict { index: 2, .. })
            ),
            "{:?}",
            replay_with(&changed, &heads)
        );

        // A skipped mutation: b1 left out of the log.
        let mut skipped = records.clone();
        skipped.remove(3);
        assert!(matches!(
            replay_with(&skipped, &heads),
            Err(Disagreement::Head { epoch: 2, .. }) | Err(Disagreement::Verdict { .. })
        ));

        // A head whose map root disagrees with the mutations.
        let mut lying = heads.clone();
        let key = SigningKey::from_bytes(&[99; 32]);
        let mut h = lying[&2].head;
        h.map_root[5] ^= 1;
        lying.insert(2, h.sign(&key));
        assert_eq!(
            replay_with(&records, &lying).map_err(|e| matches!(
                e,
                Disagreement::Head {
                    epoch: 2,
                    field: "map root",
                    ..
                }
            )),
            Err(true)
        );

        // A head missing for an epoch the log closed.
        let mut missing = heads.clone();
        missing.remove(&3);
        assert_eq!(
            replay_with(&records, &missing),
            Err(Disagreement::MissingHead(3))
        );

        // A verdict the directory lied about: the stale update recorded as applied.
        let mut verdict = records.clone();
        let Record::Mutation { mutation, .. } = Record::decode(&verdict[4]).unwrap() else {
            panic!("record 4 is a mutation")
        };
        verdict[4] = Record::Mutation {
            mutation,
            verdict: None,
        }
        .encode();
        assert!(matches!(
            replay_with(&verdict, &heads),
            Err(Disagreement::Verdict {
                index: 4,
                logged: None,
                replayed: Some(Rejection::Stale)
            })
        ));
    }

    #[test]
    fn log_roots_match_rfc6962_shapes() {
        // Five leaves: the root splits 4 + 1.
        let l: Vec<LogHash> = (0..5u8).map(|i| leaf_hash(&[i])).collect();
        let left = node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3]));
        assert_eq!(log_root(&l), node_hash(&left, &l[4]));
        assert_eq!(log_root(&l[..1]), l[0]);
    }
}
