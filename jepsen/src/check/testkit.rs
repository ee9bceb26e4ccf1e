//! Builds synthetic histories for the checker tests: a simulated log (its leaves in tree
//! order), heads signed with a test log key over this module's own checkpoint body, a
//! test witness cosigning them, and the events a workload would have recorded.

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::checkpoint::{checkpoint_body, cosignature_message, key_hash, tree_leaf_hash};
use super::merkle::{consistency_proof, inclusion_proof, root, Hash};
use super::{CheckConfig, FinalLeaf, FinalState, NodeFinal};
use crate::history::{
    ConsistencyValue, CosignatureValue, Event, EventType, HeadValue, InclusionValue, LeafValue,
    NemesisPhase, NemesisTag, NemesisValue, Op, Process, StatusValue,
};

/// Nanoseconds in a millisecond.
pub(crate) const MS: u64 = 1_000_000;

/// A simulated three-node cluster and the history recorded against it.
pub(crate) struct Sim {
    /// The log's signing key.
    pub(crate) log_key: SigningKey,
    /// The one witness's signing key.
    pub(crate) witness_key: SigningKey,
    /// The history so far.
    pub(crate) events: Vec<Event>,
    /// Current time, ns since the start.
    pub(crate) now_ns: u64,
    /// How long each operation takes.
    pub(crate) op_ns: u64,
    /// The log's leaves in tree order (what every node ends up holding).
    pub(crate) log: Vec<LeafValue>,
    /// Node ids.
    pub(crate) nodes: Vec<u64>,
}

impl Sim {
    /// An empty history, nodes 1..=3.
    pub(crate) fn new() -> Self {
        Sim {
            log_key: SigningKey::from_bytes(&[7u8; 32]),
            witness_key: SigningKey::from_bytes(&[9u8; 32]),
            events: Vec::new(),
            now_ns: 0,
            op_ns: 2 * MS,
            log: Vec::new(),
            nodes: vec![1, 2, 3],
        }
    }

    /// The checker configuration for this cluster (the witness key configured).
    pub(crate) fn config(&self) -> CheckConfig {
        let mut c = CheckConfig::new(self.log_key.verifying_key().to_bytes(), 3);
        c.witness_keys
            .insert("w1".into(), self.witness_key.verifying_key().to_bytes());
        c
    }

    /// Moves the clock forward.
    pub(crate) fn advance_ms(&mut self, ms: u64) {
        self.now_ns += ms * MS;
    }

    fn push(&mut self, process: Process, kind: EventType, node: Option<u64>, op: Op) {
        self.events.push(Event {
            index: self.events.len() as u64,
            time_ns: self.now_ns,
            process,
            kind,
            node,
            op,
            error: None,
        });
    }

    /// Records one operation: invoke now, completion `op_ns` later (none if `outcome` is
    /// `Invoke`, i.e. it never completed); then the clock moves 1 ms past the completion.
    pub(crate) fn op(
        &mut self,
        process: Process,
        node: Option<u64>,
        invoke: Op,
        outcome: EventType,
        completion: Op,
    ) {
        self.push(process, EventType::Invoke, node, invoke);
        self.now_ns += self.op_ns;
        if outcome != EventType::Invoke {
            self.push(process, outcome, node, completion);
        }
        self.now_ns += MS;
    }

    /// A deterministic, well-formed leaf for (client, seq).
    pub(crate) fn leaf(client: u64, seq: u64) -> LeafValue {
        let d = |tag: &str| Sha256::digest(format!("{tag} {client} {seq}"));
        LeafValue {
            client,
            seq,
            checksum: hex::encode(d("checksum")),
            signature: hex::encode([d("sig-a"), d("sig-b")].concat()),
            key_hash: hex::encode(Sha256::digest(format!("key {client}"))),
        }
    }

    /// The RFC 6962 leaf hash of a workload leaf.
    pub(crate) fn hash_of(v: &LeafValue) -> Hash {
        tree_leaf_hash(&v.checksum, &v.signature, &v.key_hash).unwrap()
    }

    /// Submits (client, seq) to `node` with this outcome; `applied` says whether the log
    /// appended it (an `ok` always should).
    pub(crate) fn add_leaf(
        &mut self,
        client: u64,
        node: u64,
        seq: u64,
        outcome: EventType,
        applied: bool,
    ) -> LeafValue {
        let v = Self::leaf(client, seq);
        if applied {
            self.log.push(v.clone());
        }
        self.op(
            Process::Client(client),
            Some(node),
            Op::AddLeaf(v.clone()),
            outcome,
            Op::AddLeaf(v.clone()),
        );
        v
    }

    /// An acknowledged (200) submission that the log appended.
    pub(crate) fn ack(&mut self, client: u64, node: u64, seq: u64) -> LeafValue {
        self.add_leaf(client, node, seq, EventType::Ok, true)
    }

    fn leaf_hashes(&self) -> Vec<Hash> {
        self.log.iter().map(Self::hash_of).collect()
    }

    /// The log's root at `size`.
    pub(crate) fn root_at(&self, size: u64) -> Hash {
        root(&self.leaf_hashes()[..size as usize])
    }

    /// A head over an arbitrary root, signed by the log key and cosigned by the witness.
    pub(crate) fn signed_head(&self, size: u64, root: Hash) -> HeadValue {
        let log_pub = self.log_key.verifying_key().to_bytes();
        let kh = key_hash(&log_pub);
        let sig = self
            .log_key
            .sign(checkpoint_body(&kh, size, &root).as_bytes());
        let ts = 1_800_000_000 + self.now_ns / 1_000_000_000;
        let cosig = self
            .witness_key
            .sign(cosignature_message(&kh, size, &root, ts).as_bytes());
        HeadValue {
            size,
            root_hash: hex::encode(root),
            signature: hex::encode(sig.to_bytes()),
            cosignatures: vec![CosignatureValue {
                key_hash: hex::encode(key_hash(&self.witness_key.verifying_key().to_bytes())),
                timestamp: ts,
                signature: hex::encode(cosig.to_bytes()),
            }],
        }
    }

    /// The genuine published head of the log at `size`.
    pub(crate) fn head(&self, size: u64) -> HeadValue {
        self.signed_head(size, self.root_at(size))
    }

    /// An `ok` `get-tree-head` read by `client` from `node`.
    pub(crate) fn read_head(&mut self, client: u64, node: u64, head: HeadValue) {
        self.op(
            Process::Client(client),
            Some(node),
            Op::ReadHead(None),
            EventType::Ok,
            Op::ReadHead(Some(head)),
        );
    }

    /// A fault starting or being healed.
    pub(crate) fn nemesis(&mut self, name: &str, phase: NemesisPhase) {
        let v = Op::Nemesis(NemesisValue {
            name: name.into(),
            phase,
            detail: "synthetic".into(),
        });
        self.op(
            Process::Nemesis(NemesisTag::Nemesis),
            None,
            v.clone(),
            EventType::Ok,
            v,
        );
    }

    /// An `ok` status read of `node` reporting this applied tree size.
    pub(crate) fn status(&mut self, client: u64, node: u64, tree_size: u64) {
        self.op(
            Process::Client(client),
            Some(node),
            Op::Status(None),
            EventType::Ok,
            Op::Status(Some(StatusValue {
                tree_size: Some(tree_size),
                committed_index: Some(tree_size),
                published_size: Some(tree_size),
                role: None,
            })),
        );
    }

    /// An `ok` consistency proof between two sizes of the log, as the server would serve.
    pub(crate) fn consistency(&mut self, client: u64, node: u64, old: u64, new: u64) {
        let leaves = self.leaf_hashes();
        let path = consistency_proof(&leaves[..new as usize], old).unwrap();
        let v = ConsistencyValue {
            old_size: old,
            old_root: hex::encode(self.root_at(old)),
            new_size: new,
            new_root: hex::encode(self.root_at(new)),
            path: path.iter().map(hex::encode).collect(),
        };
        let invoke = ConsistencyValue {
            path: vec![],
            ..v.clone()
        };
        self.op(
            Process::Client(client),
            Some(node),
            Op::Consistency(invoke),
            EventType::Ok,
            Op::Consistency(v),
        );
    }

    /// An `ok` inclusion proof of the leaf at `index` in the tree of `size`.
    pub(crate) fn inclusion(&mut self, client: u64, node: u64, index: u64, size: u64) {
        let leaves = self.leaf_hashes();
        let path = inclusion_proof(&leaves[..size as usize], index).unwrap();
        let v = InclusionValue {
            leaf_hash: hex::encode(leaves[index as usize]),
            size,
            root: hex::encode(self.root_at(size)),
            index: Some(index),
            path: path.iter().map(hex::encode).collect(),
        };
        let invoke = InclusionValue {
            index: None,
            path: vec![],
            ..v.clone()
        };
        self.op(
            Process::Client(client),
            Some(node),
            Op::Inclusion(invoke),
            EventType::Ok,
            Op::Inclusion(v),
        );
    }

    /// Every node holds the whole log and serves its head at full size.
    pub(crate) fn final_state(&self) -> FinalState {
        let leaves: Vec<FinalLeaf> = self.log.iter().map(FinalLeaf::from).collect();
        let head = self.head(self.log.len() as u64);
        FinalState {
            nodes: self
                .nodes
                .iter()
                .map(|id| {
                    (
                        *id,
                        NodeFinal {
                            leaves: leaves.clone(),
                            head: Some(head.clone()),
                            head_time_ns: None,
                        },
                    )
                })
                .collect(),
            directory: Default::default(),
        }
    }

    /// A small run with every kind of event and no violation: acknowledged writes to
    /// several nodes, one fault with indeterminate and failed writes inside it, reads
    /// (one stale, from a lagging node), status polls, and proofs. The log ends with 8
    /// leaves; the failed leaf (client 0 seq 4) and one indeterminate leaf (client 1 seq
    /// 3) are not in it.
    pub(crate) fn clean() -> Self {
        let mut s = Sim::new();
        for node in [1, 2, 3] {
            s.status(9, node, 0);
        }
        for seq in 0..3 {
            s.ack(0, 1, seq);
            s.ack(1, 2, seq);
        }
        s.advance_ms(500);
        s.read_head(2, 1, s.head(3));
        s.read_head(2, 2, s.head(6));
        s.read_head(3, 1, s.head(6));
        s.nemesis("partition-leader", NemesisPhase::Start);
        s.add_leaf(0, 1, 3, EventType::Info, true);
        s.add_leaf(1, 3, 3, EventType::Info, false);
        s.add_leaf(0, 3, 4, EventType::Fail, false);
        s.read_head(3, 3, s.head(3));
        s.advance_ms(2_000);
        s.nemesis("partition-leader", NemesisPhase::Stop);
        s.ack(1, 2, 4);
        s.advance_ms(3_000);
        s.read_head(2, 1, s.head(7));
        s.read_head(3, 2, s.head(8));
        s.read_head(2, 3, s.head(8));
        for node in [1, 2, 3] {
            s.status(9, node, 8);
        }
        s.consistency(2, 1, 3, 8);
        s.consistency(3, 2, 6, 7);
        s.inclusion(2, 1, 0, 8);
        s.inclusion(3, 3, 6, 7);
        s
    }
}
