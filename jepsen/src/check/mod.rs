//! Independent checkers for a recorded history and the cluster's final state.
//!
//! Each checker reads the history ([`crate::history`]) plus what every node held at the
//! end ([`FinalState`]) and returns a [`CheckResult`]; [`check_all`] runs them all. The
//! Merkle and signature code is this module's own ([`merkle`], [`checkpoint`]) and shares
//! nothing with the server, so one bug cannot hide in both.
//!
//! Shared conventions:
//! - an operation's outcome is that of its completion; one without a completion is
//!   indeterminate (`info`) and never evidence either way;
//! - "observed heads" are the heads of `ok` `read_head` completions plus each node's final
//!   head; a final head counts as observed at [`NodeFinal::head_time_ns`], or at the last
//!   history event when that is unknown;
//! - a node's final tree is its leaves read back at the end; the *reference* tree is the
//!   longest one (lowest node id on ties).

mod availability;
mod checkpoint;
mod directory;
mod durability;
mod fork;
mod leaves;
mod merkle;
mod ops;
mod quorum;
mod regression;
#[cfg(test)]
mod testkit;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::checkpoint::{parse_head, tree_leaf_hash, FormatError, ParsedHead};
use self::merkle::{leaf_hash, Hash, Tree};
use self::ops::Operation;
use crate::history::{Event, HeadValue, LeafValue, Op, Process};

pub(crate) use self::availability::check as check_availability;
pub(crate) use self::directory::{
    check as check_directory, head_log_size, DirectoryConfig, DirectoryFinal,
};
pub(crate) use self::durability::check as check_durability;
pub(crate) use self::fork::check as check_no_fork;
pub(crate) use self::leaves::check as check_no_phantom_or_duplicate;
pub(crate) use self::quorum::check as check_quorum_bound;
pub(crate) use self::regression::check as check_no_regression;

/// Anomalies listed per check; the rest are only counted (`anomaly_count`).
pub(crate) const MAX_LISTED_ANOMALIES: usize = 50;

/// One leaf of a node's final tree, hex as served by `get-leaves`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FinalLeaf {
    /// Checksum (32 bytes).
    pub(crate) checksum: String,
    /// Submitter signature (64 bytes).
    pub(crate) signature: String,
    /// Submitter key hash (32 bytes).
    pub(crate) key_hash: String,
}

impl From<&LeafValue> for FinalLeaf {
    fn from(v: &LeafValue) -> Self {
        FinalLeaf {
            checksum: v.checksum.clone(),
            signature: v.signature.clone(),
            key_hash: v.key_hash.clone(),
        }
    }
}

/// What one node held after the test, read once every fault was healed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeFinal {
    /// Its whole tree, in order.
    pub(crate) leaves: Vec<FinalLeaf>,
    /// The head it served last (none if it served none).
    pub(crate) head: Option<HeadValue>,
    /// When that head was read (ns since the test started); none means right after the
    /// last history event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) head_time_ns: Option<u64>,
}

/// Every node's final state, by node id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FinalState {
    /// Node id to what it held.
    pub(crate) nodes: BTreeMap<u64, NodeFinal>,
    /// Node id to what its directory held (runs with `--directory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) directory: BTreeMap<u64, DirectoryFinal>,
}

/// What the checkers need to know about the cluster under test (stored with each run as
/// `check-config.json`, so that `quorumlog-jepsen check DIR` can check it again).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckConfig {
    /// The log's Ed25519 public key.
    pub(crate) log_public_key: [u8; 32],
    /// Witness name to Ed25519 public key; empty skips cosignature verification.
    pub(crate) witness_keys: BTreeMap<String, [u8; 32]>,
    /// `[publish] interval_ms`.
    pub(crate) publish_interval: Duration,
    /// `[publish] witness_timeout_ms`.
    pub(crate) witness_timeout: Duration,
    /// Extra time readers get to observe a covering head (poll period, request latency).
    pub(crate) coverage_slack: Duration,
    /// Cluster size; a majority is `node_count / 2 + 1`.
    pub(crate) node_count: u64,
    /// Leaves a head may exceed the majority's reported tree size by before the quorum
    /// checker counts it as ahead (a metric only).
    pub(crate) status_tolerance: u64,
    /// The directory under test, if any (`--directory`).
    #[serde(default)]
    pub(crate) directory: Option<DirectoryConfig>,
}

impl CheckConfig {
    /// The server's defaults: 3 s interval, 3 s witness timeout, 10 s slack, no witnesses.
    pub(crate) fn new(log_public_key: [u8; 32], node_count: u64) -> Self {
        CheckConfig {
            log_public_key,
            witness_keys: BTreeMap::new(),
            publish_interval: Duration::from_secs(3),
            witness_timeout: Duration::from_secs(3),
            coverage_slack: Duration::from_secs(10),
            node_count,
            status_tolerance: 0,
            directory: None,
        }
    }

    /// Smallest number of nodes that is a majority.
    pub(crate) fn majority(&self) -> u64 {
        self.node_count / 2 + 1
    }
}

/// One checker's verdict, as written to `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckResult {
    /// Checker name.
    pub(crate) name: String,
    /// False if any anomaly was found.
    pub(crate) valid: bool,
    /// One line for humans.
    pub(crate) summary: String,
    /// Counts and metrics, checker-specific.
    pub(crate) details: serde_json::Value,
    /// How many anomalies there were in all.
    pub(crate) anomaly_count: usize,
    /// The first [`MAX_LISTED_ANOMALIES`] of them.
    pub(crate) anomalies: Vec<String>,
}

/// All verdicts; valid only if every check is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Results {
    /// Conjunction of the checks.
    pub(crate) valid: bool,
    /// One entry per checker, in a fixed order.
    pub(crate) checks: Vec<CheckResult>,
}

/// The checkers' names, in the order of [`Results::checks`].
pub(crate) const CHECKERS: [&str; 7] = [
    "durability",
    "no-fork",
    "no-regression",
    "quorum-bound",
    "no-phantom-or-duplicate",
    "availability",
    "directory",
];

/// Runs every checker over one precomputed [`Analysis`].
pub(crate) fn check_all(
    history: &[Event],
    final_state: &FinalState,
    config: &CheckConfig,
) -> Results {
    let a = Analysis::new(history, final_state, config);
    let checks = vec![
        check_durability(&a),
        check_no_fork(&a),
        check_no_regression(&a),
        check_quorum_bound(&a),
        check_no_phantom_or_duplicate(&a),
        check_availability(&a),
        check_directory(&a),
    ];
    Results {
        valid: checks.iter().all(|c| c.valid),
        checks,
    }
}

/// Collects anomalies, listing the first few and counting all.
#[derive(Debug, Default)]
pub(crate) struct Anomalies {
    listed: Vec<String>,
    count: usize,
}

impl Anomalies {
    /// Records one.
    pub(crate) fn push(&mut self, message: impl Into<String>) {
        self.count += 1;
        if self.listed.len() < MAX_LISTED_ANOMALIES {
            self.listed.push(message.into());
        }
    }

    /// How many were recorded.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The verdict: valid exactly when nothing was recorded.
    pub(crate) fn finish(
        self,
        name: &str,
        summary: String,
        details: serde_json::Value,
    ) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            valid: self.count == 0,
            summary,
            details,
            anomaly_count: self.count,
            anomalies: self.listed,
        }
    }
}

/// A node's final tree, decoded.
#[derive(Debug, Clone)]
pub(crate) struct NodeTree {
    /// The RFC 6962 tree over its leaf hashes.
    pub(crate) tree: Tree,
    /// Leaf hash to every index holding it.
    pub(crate) positions: HashMap<Hash, Vec<u64>>,
    /// Leaves whose hex did not decode: (index, why). They get a stand-in hash that no
    /// submitted leaf can have, so they show up as phantoms and break prefix checks.
    pub(crate) malformed: Vec<(u64, String)>,
}

impl NodeTree {
    fn new(leaves: &[FinalLeaf]) -> Self {
        let mut malformed = Vec::new();
        let hashes: Vec<Hash> = leaves
            .iter()
            .enumerate()
            .map(|(i, l)| {
                tree_leaf_hash(&l.checksum, &l.signature, &l.key_hash).unwrap_or_else(|e| {
                    malformed.push((i as u64, e.to_string()));
                    let raw = format!("{}|{}|{}", l.checksum, l.signature, l.key_hash);
                    leaf_hash(raw.as_bytes())
                })
            })
            .collect();
        let mut positions: HashMap<Hash, Vec<u64>> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            positions.entry(*h).or_default().push(i as u64);
        }
        NodeTree {
            tree: Tree::new(hashes),
            positions,
            malformed,
        }
    }

    /// Whether the tree holds this leaf.
    pub(crate) fn contains(&self, leaf: &Hash) -> bool {
        self.positions.contains_key(leaf)
    }

    /// The first index holding this leaf.
    pub(crate) fn index_of(&self, leaf: &Hash) -> Option<u64> {
        self.positions.get(leaf).and_then(|p| p.first().copied())
    }
}

/// A head somebody observed, with its verification done once for all checkers.
#[derive(Debug, Clone)]
pub(crate) struct ObservedHead<'a> {
    /// The head as recorded.
    pub(crate) head: &'a HeadValue,
    /// The node that served it.
    pub(crate) node: Option<u64>,
    /// The reading client; none for a final head.
    pub(crate) process: Option<Process>,
    /// History index of the `ok` completion; none for a final head.
    pub(crate) event_index: Option<u64>,
    /// When the read started.
    pub(crate) invoke_ns: u64,
    /// When the head was known to the reader.
    pub(crate) complete_ns: u64,
    /// Decoded fields, or why they do not decode.
    pub(crate) parsed: Result<ParsedHead, FormatError>,
    /// The log's signature verifies over the checkpoint body.
    pub(crate) signature_valid: bool,
    /// Cosignatures by a configured witness that verify.
    pub(crate) valid_cosignatures: usize,
    /// Cosignatures by a configured witness that do not verify.
    pub(crate) invalid_cosignatures: usize,
    /// Cosignatures whose key hash names no configured witness.
    pub(crate) unknown_cosigners: usize,
}

impl ObservedHead<'_> {
    /// "head 12@ab12cd34 from node 2 (event 40)" style, for anomaly messages.
    pub(crate) fn describe(&self) -> String {
        let root: String = self.head.root_hash.chars().take(8).collect();
        match (self.event_index, self.node) {
            (Some(i), Some(n)) => {
                format!("head {}@{root} from node {n} (event {i})", self.head.size)
            }
            (Some(i), None) => format!("head {}@{root} (event {i})", self.head.size),
            (None, Some(n)) => format!("final head {}@{root} of node {n}", self.head.size),
            (None, None) => format!("final head {}@{root}", self.head.size),
        }
    }

    /// Published as the log's and cosigned: the log signature verifies, there is at least
    /// one cosignature, and, when witness keys are configured, one of them verifies.
    pub(crate) fn is_cosigned(&self, witnesses_configured: bool) -> bool {
        self.signature_valid
            && !self.head.cosignatures.is_empty()
            && (!witnesses_configured || self.valid_cosignatures > 0)
    }
}

/// Everything the checkers share, derived once from the inputs.
#[derive(Debug)]
pub(crate) struct Analysis<'a> {
    pub(crate) config: &'a CheckConfig,
    pub(crate) final_state: &'a FinalState,
    /// Operations in invoke order.
    pub(crate) ops: Vec<Operation<'a>>,
    /// Each node's final tree.
    pub(crate) trees: BTreeMap<u64, NodeTree>,
    /// The node with the longest final tree.
    pub(crate) reference: Option<u64>,
    /// Observed heads: history reads in completion order, then final heads by node.
    pub(crate) heads: Vec<ObservedHead<'a>>,
    /// Time of the first history event.
    pub(crate) start_ns: u64,
    /// Time of the last history event.
    pub(crate) end_ns: u64,
}

impl<'a> Analysis<'a> {
    /// Pairs operations, decodes the final trees and verifies every observed head.
    pub(crate) fn new(
        history: &'a [Event],
        final_state: &'a FinalState,
        config: &'a CheckConfig,
    ) -> Self {
        let ops = ops::pair(history);
        let start_ns = history.iter().map(|e| e.time_ns).min().unwrap_or(0);
        let end_ns = history.iter().map(|e| e.time_ns).max().unwrap_or(0);
        let trees: BTreeMap<u64, NodeTree> = final_state
            .nodes
            .iter()
            .map(|(id, n)| (*id, NodeTree::new(&n.leaves)))
            .collect();
        let reference = trees
            .iter()
            .max_by(|(ia, a), (ib, b)| a.tree.len().cmp(&b.tree.len()).then(ib.cmp(ia)))
            .map(|(id, _)| *id);

        let witnesses: HashMap<Hash, [u8; 32]> = config
            .witness_keys
            .values()
            .map(|k| (checkpoint::key_hash(k), *k))
            .collect();
        let observe = |head: &'a HeadValue,
                       node: Option<u64>,
                       process: Option<Process>,
                       event_index: Option<u64>,
                       invoke_ns: u64,
                       complete_ns: u64| {
            let parsed = parse_head(head);
            let (mut signature_valid, mut valid, mut invalid, mut unknown) = (false, 0, 0, 0);
            if let Ok(p) = &parsed {
                signature_valid = checkpoint::verify_tree_head(
                    &config.log_public_key,
                    p.size,
                    &p.root,
                    &p.signature,
                )
                .is_ok();
                for (kh, ts, sig) in &p.cosignatures {
                    match witnesses.get(kh) {
                        None => unknown += 1,
                        Some(wk) => {
                            let ok = checkpoint::verify_cosignature(
                                wk,
                                &config.log_public_key,
                                p.size,
                                &p.root,
                                *ts,
                                sig,
                            )
                            .is_ok();
                            if ok {
                                valid += 1;
                            } else {
                                invalid += 1;
                            }
                        }
                    }
                }
            }
            ObservedHead {
                head,
                node,
                process,
                event_index,
                invoke_ns,
                complete_ns,
                parsed,
                signature_valid,
                valid_cosignatures: valid,
                invalid_cosignatures: invalid,
                unknown_cosigners: unknown,
            }
        };

        let mut reads: Vec<&Operation<'a>> = ops
            .iter()
            .filter(|o| o.is_ok() && matches!(o.op(), Op::ReadHead(Some(_))))
            .collect();
        reads.sort_by_key(|o| o.end_index());
        let mut heads: Vec<ObservedHead<'a>> = reads
            .into_iter()
            .filter_map(|o| match o.op() {
                Op::ReadHead(Some(h)) => Some(observe(
                    h,
                    o.node(),
                    Some(o.process()),
                    Some(o.end_index()),
                    o.invoke_ns(),
                    o.end_ns(),
                )),
                _ => None,
            })
            .collect();
        for (id, n) in &final_state.nodes {
            if let Some(h) = &n.head {
                let t = n.head_time_ns.unwrap_or(end_ns);
                heads.push(observe(h, Some(*id), None, None, t, t));
            }
        }
        Analysis {
            config,
            final_state,
            ops,
            trees,
            reference,
            heads,
            start_ns,
            end_ns,
        }
    }

    /// The reference (longest) final tree.
    pub(crate) fn reference_tree(&self) -> Option<&NodeTree> {
        self.reference.and_then(|id| self.trees.get(&id))
    }

    /// Operations of one kind.
    pub(crate) fn ops_where<'s>(
        &'s self,
        f: impl Fn(&Op) -> bool + 's,
    ) -> impl Iterator<Item = &'s Operation<'a>> + 's {
        self.ops.iter().filter(move |o| f(o.op()))
    }
}

/// `"client 3 seq 17 (leaf ab12cd34)"`, for anomaly messages.
pub(crate) fn describe_leaf(v: &LeafValue, hash: Option<&Hash>) -> String {
    match hash {
        Some(h) => format!(
            "client {} seq {} (leaf {})",
            v.client,
            v.seq,
            &hex::encode(h)[..16]
        ),
        None => format!("client {} seq {}", v.client, v.seq),
    }
}

/// Short hex of a hash for messages.
pub(crate) fn short(h: &Hash) -> String {
    hex::encode(&h[..8])
}

/// Nanoseconds to milliseconds, for reports.
pub(crate) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::testkit::Sim;
    use super::*;

    #[test]
    fn a_clean_synthetic_run_passes_every_check() {
        let s = Sim::clean();
        let results = check_all(&s.events, &s.final_state(), &s.config());
        for c in &results.checks {
            assert!(c.valid, "{}: {:?}", c.name, c.anomalies);
        }
        assert!(results.valid);
        let names: Vec<&str> = results.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, CHECKERS);
        // Results round-trip through JSON (results.json).
        let json = serde_json::to_string(&results).unwrap();
        let back: Results = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);
    }

    #[test]
    fn final_state_round_trips_through_json() {
        let s = Sim::clean();
        let f = s.final_state();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<FinalState>(&json).unwrap(), f);
    }

    #[test]
    fn anomalies_are_capped_but_counted() {
        let mut a = Anomalies::default();
        for i in 0..(MAX_LISTED_ANOMALIES + 7) {
            a.push(format!("a{i}"));
        }
        let r = a.finish("x", "s".into(), serde_json::Value::Null);
        assert!(!r.valid);
        assert_eq!(r.anomaly_count, MAX_LISTED_ANOMALIES + 7);
        assert_eq!(r.anomalies.len(), MAX_LISTED_ANOMALIES);
    }

    #[test]
    fn the_reference_tree_is_the_longest() {
        let s = Sim::clean();
        let mut f = s.final_state();
        f.nodes.get_mut(&1).unwrap().leaves.pop();
        let cfg = s.config();
        let a = Analysis::new(&s.events, &f, &cfg);
        assert_eq!(a.reference, Some(2));
        assert_eq!(a.reference_tree().unwrap().tree.len(), s.log.len() as u64);
    }
}
