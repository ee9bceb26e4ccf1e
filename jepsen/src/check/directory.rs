//! The directory checker (runs with `--directory`): every acknowledged update is in the
//! log of mutations where the directory said, applied, and inside a published epoch; no
//! two signed map heads for one epoch anywhere; every head verifies, states the log of
//! mutations as every node holds it, and is in the Sigsum log at the leaf index it names;
//! the logs of mutations of all nodes agree; and `quorumlog kt monitor` verified every
//! node's whole directory. Formats from docs/kt.md, written here.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::checkpoint::tree_leaf_hash;
use super::merkle::{leaf_hash, Hash, Tree};
use super::{Analysis, Anomalies, CheckResult};
use crate::history::{KtHeadValue, Op};

const HEAD_PREFIX: &[u8] = b"quorumlog-kt map head v1\0";
const HEAD_LEN: usize = HEAD_PREFIX.len() + 8 + 8 + 32 + 8 + 32 + 8;
const LEAF_NAMESPACE: &[u8] = b"sigsum.org/v1/tree-leaf\0";

/// The directory's identity, for the checker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DirectoryConfig {
    pub(crate) map_id: u64,
    pub(crate) directory_key: [u8; 32],
}

/// What one node's directory held at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DirectoryFinal {
    /// Every signed map head it served, by epoch.
    pub(crate) heads: Vec<KtHeadValue>,
    /// Its log of mutations up to the newest head (hex records).
    pub(crate) records: Vec<String>,
    /// `quorumlog kt monitor` against this node: verified, and what it printed.
    pub(crate) monitor_verified: bool,
    pub(crate) monitor_output: String,
}

/// A decoded head: epoch, log size, log root, timestamp.
struct Head {
    map_id: u64,
    epoch: u64,
    log_size: u64,
    log_root: [u8; 32],
    timestamp_ms: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The log size a signed head (hex) states, without verifying it.
pub(crate) fn head_log_size(signed_head: &str) -> Option<u64> {
    let b = hex::decode(signed_head).ok()?;
    (b.len() == HEAD_LEN + 64 && b.starts_with(HEAD_PREFIX))
        .then(|| u64_at(&b, HEAD_PREFIX.len() + 48))
}

/// Decodes and verifies a signed head and its Sigsum leaf; the head and the leaf hash.
fn verify_head(h: &KtHeadValue, key: &[u8; 32]) -> Result<(Head, Hash), String> {
    let b = hex::decode(&h.signed_head).map_err(|_| "head is not hex")?;
    if b.len() != HEAD_LEN + 64 || !b.starts_with(HEAD_PREFIX) {
        return Err(format!(
            "head of {} bytes is not a signed map head",
            b.len()
        ));
    }
    let p = HEAD_PREFIX.len();
    let head = Head {
        map_id: u64_at(&b, p),
        epoch: u64_at(&b, p + 8),
        log_size: head_log_size(&h.signed_head).unwrap_or_default(),
        log_root: b[p + 56..p + 88].try_into().expect("32 bytes"),
        timestamp_ms: u64_at(&b, p + 88),
    };
    let vk = VerifyingKey::from_bytes(key).map_err(|_| "bad directory key")?;
    let sig = Signature::from_bytes(b[HEAD_LEN..].try_into().expect("64 bytes"));
    vk.verify(&b[..HEAD_LEN], &sig)
        .map_err(|_| "head signature does not verify")?;
    let leaf = hex::decode(&h.leaf).map_err(|_| "leaf is not hex")?;
    if leaf.len() != 128 {
        return Err("leaf is not 128 bytes".into());
    }
    let checksum: [u8; 32] = Sha256::digest(Sha256::digest(&b)).into();
    if leaf[..32] != checksum || leaf[96..] != Sha256::digest(key)[..] {
        return Err("the Sigsum leaf does not carry this head".into());
    }
    let mut signed = LEAF_NAMESPACE.to_vec();
    signed.extend_from_slice(&checksum);
    let leaf_sig = Signature::from_bytes(leaf[32..96].try_into().expect("64 bytes"));
    vk.verify(&signed, &leaf_sig)
        .map_err(|_| "the leaf's signature does not verify")?;
    let lh = tree_leaf_hash(
        &hex::encode(&leaf[..32]),
        &hex::encode(&leaf[32..96]),
        &hex::encode(&leaf[96..]),
    )
    .map_err(|e| e.to_string())?;
    Ok((head, lh))
}

pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut anomalies = Anomalies::default();
    let (Some(cfg), false) = (&a.config.directory, a.final_state.directory.is_empty()) else {
        return anomalies.finish(
            "directory",
            "no directory workload in this run".into(),
            json!({}),
        );
    };

    // One head per epoch, over everything anybody saw.
    let mut by_epoch: BTreeMap<u64, String> = BTreeMap::new();
    let mut observed = 0usize;
    let finals = a.final_state.directory.iter().flat_map(|(n, d)| {
        d.heads
            .iter()
            .map(move |h| (format!("node {n} (final)"), h))
    });
    let read = a
        .ops
        .iter()
        .filter(|o| o.is_ok())
        .flat_map(|o| match o.op() {
            Op::KtHeads(hs) => hs
                .iter()
                .map(|h| (format!("node {:?} (read)", o.node()), h))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        });
    let mut valid_heads: BTreeMap<u64, (Head, Hash, u64)> = BTreeMap::new();
    for (who, h) in finals.chain(read) {
        observed += 1;
        match by_epoch.get(&h.epoch) {
            Some(other) if *other != h.signed_head => anomalies.push(format!(
                "two signed map heads for epoch {}: {who} served one that differs",
                h.epoch
            )),
            Some(_) => {}
            None => {
                by_epoch.insert(h.epoch, h.signed_head.clone());
            }
        }
        match verify_head(h, &cfg.directory_key) {
            Err(e) => anomalies.push(format!("epoch {} from {who}: {e}", h.epoch)),
            Ok((head, lh)) => {
                if head.epoch != h.epoch || head.map_id != cfg.map_id {
                    anomalies.push(format!(
                        "{who}: head served as epoch {} of map {} is epoch {} of map {}",
                        h.epoch, cfg.map_id, head.epoch, head.map_id
                    ));
                }
                valid_heads
                    .entry(h.epoch)
                    .or_insert((head, lh, h.leaf_index));
            }
        }
    }
    // Epochs are numbered from 1 without gaps.
    for (i, e) in valid_heads.keys().enumerate() {
        if *e != i as u64 + 1 {
            anomalies.push(format!("epoch {} has no head before epoch {e}", i + 1));
            break;
        }
    }

    // Each head's leaf is in the Sigsum log where it says.
    if let Some(reference) = a.reference.and_then(|r| a.trees.get(&r)) {
        for (epoch, (_, lh, index)) in &valid_heads {
            let at = reference.tree.leaves().get(*index as usize);
            if at.is_some_and(|h| h == lh) {
                continue;
            }
            // A head published after the final tree head was read is not in that tree yet.
            if *index >= reference.tree.len() {
                continue;
            }
            anomalies.push(format!(
                "the head of epoch {epoch} is not in the Sigsum log at leaf {index}"
            ));
        }
    }

    // The logs of mutations: every node's is a prefix of the longest, and each head states
    // its size, root and marker.
    let mut logs: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for (n, d) in &a.final_state.directory {
        let mut recs = Vec::new();
        for (i, r) in d.records.iter().enumerate() {
            match hex::decode(r) {
                Ok(b) => recs.push(b),
                Err(_) => anomalies.push(format!("node {n}: record {i} is not hex")),
            }
        }
        logs.insert(*n, recs);
    }
    let longest = logs
        .values()
        .max_by_key(|l| l.len())
        .cloned()
        .unwrap_or_default();
    for (n, l) in &logs {
        if longest[..l.len()] != l[..] {
            anomalies.push(format!(
                "node {n}'s log of mutations is not a prefix of the longest"
            ));
        }
    }
    let log_tree = Tree::new(longest.iter().map(|r| leaf_hash(r)).collect());
    for (epoch, (head, _, _)) in &valid_heads {
        let size = head.log_size as usize;
        if size as u64 > log_tree.len() {
            continue;
        }
        if log_tree.root_at(size as u64) != Some(head.log_root) {
            anomalies.push(format!(
                "the head of epoch {epoch} names a log root the records do not have at size {size}"
            ));
        }
        let mut marker = vec![2u8];
        marker.extend_from_slice(&epoch.to_be_bytes());
        marker.extend_from_slice(&head.timestamp_ms.to_be_bytes());
        if size == 0 || longest[size - 1] != marker {
            anomalies.push(format!(
                "the head of epoch {epoch} does not end at its epoch's marker"
            ));
        }
    }

    // Every acknowledged update is logged where the directory said, applied, and published.
    let published = valid_heads
        .values()
        .map(|(h, _, _)| h.log_size)
        .max()
        .unwrap_or(0);
    let (mut acked, mut unpublished) = (0usize, 0usize);
    for o in a.ops.iter().filter(|o| o.is_ok()) {
        let Op::KtUpdate(u) = o.op() else { continue };
        acked += 1;
        let Some(i) = u.log_index else {
            anomalies.push(format!(
                "update of {} acknowledged without a log index",
                u.user
            ));
            continue;
        };
        if i >= published {
            unpublished += 1;
            anomalies.push(format!(
                "acknowledged update of {} (log index {i}) is in no published epoch (published up to {published})",
                u.user
            ));
            continue;
        }
        let mut want = vec![1u8, 0];
        want.extend(hex::decode(&u.mutation).unwrap_or_default());
        if longest.get(i as usize) != Some(&want) {
            anomalies.push(format!(
                "acknowledged update of {} is not the applied record at log index {i}",
                u.user
            ));
        }
    }

    // The product's own monitor agreed on every node.
    let mut monitors_failed = 0usize;
    for (n, d) in &a.final_state.directory {
        if !d.monitor_verified {
            monitors_failed += 1;
            anomalies.push(format!(
                "quorumlog kt monitor on node {n} did not verify: {}",
                d.monitor_output.lines().last().unwrap_or("")
            ));
        }
    }

    let details = json!({
        "epochs": valid_heads.len(),
        "heads_observed": observed,
        "records": longest.len(),
        "acknowledged_updates": acked,
        "unpublished_acknowledged": unpublished,
        "monitors_failed": monitors_failed,
    });
    let summary = format!(
        "{} epochs, {acked} acknowledged updates, {} records; {} anomalies",
        valid_heads.len(),
        longest.len(),
        anomalies.len()
    );
    anomalies.finish("directory", summary, details)
}

#[cfg(test)]
mod tests {
    use super::super::merkle::root;
    use super::super::testkit::Sim;
    use super::super::Analysis;
    use super::*;
    use crate::history::{EventType, KtUpdateValue, LeafValue, Process};
    use ed25519_dalek::{Signer, SigningKey};

    const MAP_ID: u64 = 1;

    struct Dir {
        key: SigningKey,
        records: Vec<Vec<u8>>,
        heads: Vec<KtHeadValue>,
    }

    impl Dir {
        fn new() -> Dir {
            Dir {
                key: SigningKey::from_bytes(&[5; 32]),
                records: Vec::new(),
                heads: Vec::new(),
            }
        }

        /// Logs an applied mutation; its log index.
        fn mutation(&mut self, m: &[u8]) -> u64 {
            let mut r = vec![1, 0];
            r.extend_from_slice(m);
            self.records.push(r);
            self.records.len() as u64 - 1
        }

        /// Closes an epoch, signs its head and appends its leaf to the Sigsum log.
        fn epoch(&mut self, s: &mut Sim) -> KtHeadValue {
            let epoch = self.heads.len() as u64 + 1;
            let mut marker = vec![2];
            marker.extend_from_slice(&epoch.to_be_bytes());
            marker.extend_from_slice(&(epoch * 1000).to_be_bytes());
            self.records.push(marker);
            let hashes: Vec<Hash> = self.records.iter().map(|r| leaf_hash(r)).collect();
            let h = self.sign(epoch, [epoch as u8; 32], &hashes, s.log.len() as u64);
            let leaf = hex::decode(&h.leaf).unwrap();
            s.log.push(LeafValue {
                client: 99,
                seq: epoch,
                checksum: hex::encode(&leaf[..32]),
                signature: hex::encode(&leaf[32..96]),
                key_hash: hex::encode(&leaf[96..]),
            });
            self.heads.push(h.clone());
            h
        }

        fn sign(
            &self,
            epoch: u64,
            map_root: [u8; 32],
            log: &[Hash],
            leaf_index: u64,
        ) -> KtHeadValue {
            let mut b = HEAD_PREFIX.to_vec();
            b.extend_from_slice(&MAP_ID.to_be_bytes());
            b.extend_from_slice(&epoch.to_be_bytes());
            b.extend_from_slice(&map_root);
            b.extend_from_slice(&(log.len() as u64).to_be_bytes());
            b.extend_from_slice(&root(log));
            b.extend_from_slice(&(epoch * 1000).to_be_bytes());
            let sig = self.key.sign(&b).to_bytes();
            b.extend_from_slice(&sig);
            let checksum: [u8; 32] = Sha256::digest(Sha256::digest(&b)).into();
            let mut signed = LEAF_NAMESPACE.to_vec();
            signed.extend_from_slice(&checksum);
            let mut leaf = checksum.to_vec();
            leaf.extend_from_slice(&self.key.sign(&signed).to_bytes());
            leaf.extend_from_slice(&Sha256::digest(self.key.verifying_key().to_bytes()));
            KtHeadValue {
                epoch,
                signed_head: hex::encode(b),
                leaf: hex::encode(leaf),
                leaf_index,
            }
        }

        fn finals(&self, s: &Sim) -> super::super::FinalState {
            let mut f = s.final_state();
            for n in [1, 2, 3] {
                f.directory.insert(
                    n,
                    DirectoryFinal {
                        heads: self.heads.clone(),
                        records: self.records.iter().map(hex::encode).collect(),
                        monitor_verified: true,
                        monitor_output: "{\"verified\": true}".into(),
                    },
                );
            }
            f
        }
    }

    fn ack(s: &mut Sim, user: &str, mutation: &[u8], log_index: u64) {
        let v = KtUpdateValue {
            user: user.into(),
            value: "v".into(),
            mutation: hex::encode(mutation),
            log_index: None,
        };
        let done = KtUpdateValue {
            log_index: Some(log_index),
            ..v.clone()
        };
        s.op(
            Process::Client(20),
            Some(2),
            Op::KtUpdate(v),
            EventType::Ok,
            Op::KtUpdate(done),
        );
    }

    /// Two epochs with one acknowledged update each; a reader saw the first head.
    fn clean() -> (Sim, Dir) {
        let mut s = Sim::clean();
        let mut d = Dir::new();
        let i = d.mutation(b"alice-1");
        ack(&mut s, "alice", b"alice-1", i);
        let h1 = d.epoch(&mut s);
        s.op(
            Process::Client(21),
            Some(3),
            Op::KtHeads(Vec::new()),
            EventType::Ok,
            Op::KtHeads(vec![h1]),
        );
        let i = d.mutation(b"bob-1");
        ack(&mut s, "bob", b"bob-1", i);
        d.epoch(&mut s);
        (s, d)
    }

    fn run(s: &Sim, d: &Dir, f: &super::super::FinalState) -> CheckResult {
        let mut c = s.config();
        c.directory = Some(DirectoryConfig {
            map_id: MAP_ID,
            directory_key: d.key.verifying_key().to_bytes(),
        });
        check(&Analysis::new(&s.events, f, &c))
    }

    #[test]
    fn a_clean_directory_run_is_valid() {
        let (s, d) = clean();
        let r = run(&s, &d, &d.finals(&s));
        assert!(r.valid, "{r:?}");
        assert_eq!(r.details["epochs"], 2);
        assert_eq!(r.details["acknowledged_updates"], 2);
    }

    #[test]
    fn two_heads_for_one_epoch_are_caught() {
        let (mut s, d) = clean();
        // A second, validly signed head for epoch 1 with another map root.
        let hashes: Vec<Hash> = d.records[..2].iter().map(|r| leaf_hash(r)).collect();
        let other = d.sign(1, [0xee; 32], &hashes, 0);
        s.op(
            Process::Client(21),
            Some(1),
            Op::KtHeads(Vec::new()),
            EventType::Ok,
            Op::KtHeads(vec![other]),
        );
        let r = run(&s, &d, &d.finals(&s));
        assert!(!r.valid);
        assert!(
            r.anomalies
                .iter()
                .any(|a| a.contains("two signed map heads for epoch 1")),
            "{r:?}"
        );
    }

    #[test]
    fn an_acknowledged_update_missing_from_the_log_is_caught() {
        let (mut s, d) = clean();
        // Acknowledged at index 0, but the record there is alice's.
        ack(&mut s, "carol", b"carol-1", 0);
        let r = run(&s, &d, &d.finals(&s));
        assert!(!r.valid);
        assert!(r.anomalies.iter().any(|a| a.contains("carol")), "{r:?}");
        // Acknowledged beyond every published epoch.
        let (mut s, d) = clean();
        ack(&mut s, "dave", b"dave-1", 99);
        assert!(!run(&s, &d, &d.finals(&s)).valid);
    }

    #[test]
    fn a_head_missing_from_the_sigsum_log_is_caught() {
        let (mut s, d) = clean();
        // The log lost the first head's leaf (another leaf took its place).
        let at = d.heads[0].leaf_index as usize;
        s.log[at] = Sim::leaf(7, 7);
        let r = run(&s, &d, &d.finals(&s));
        assert!(!r.valid);
        assert!(
            r.anomalies
                .iter()
                .any(|a| a.contains("not in the Sigsum log")),
            "{r:?}"
        );
    }

    #[test]
    fn a_head_disagreeing_with_the_records_or_a_failed_monitor_is_caught() {
        let (s, d) = clean();
        let mut f = d.finals(&s);
        // A node whose log of mutations has another record where the heads say otherwise.
        for n in [1, 2, 3] {
            f.directory.get_mut(&n).unwrap().records[0] = hex::encode([1, 0, 9]);
        }
        let r = run(&s, &d, &f);
        assert!(!r.valid);
        assert!(r.anomalies.iter().any(|a| a.contains("log root")), "{r:?}");

        let mut f = d.finals(&s);
        f.directory.get_mut(&2).unwrap().monitor_verified = false;
        let r = run(&s, &d, &f);
        assert!(!r.valid);
        assert!(
            r.anomalies.iter().any(|a| a.contains("monitor on node 2")),
            "{r:?}"
        );
    }
}
