//! No fork: there is one log, and every head and proof anybody saw belongs to it.
//!
//! - every observed head decodes and its log signature verifies over the checkpoint body
//!   (and, given witness keys, every cosignature by a configured witness verifies);
//! - at most one root per size;
//! - every observed head's root equals the root recomputed from the reference (longest)
//!   final tree at its size, and no head is larger than that tree;
//! - every node's final tree is a prefix of the reference tree (same leaf at each index);
//! - every `ok` consistency and inclusion proof verifies.

use std::collections::BTreeMap;

use serde_json::json;

use super::checkpoint::decode_hex;
use super::merkle::{verify_consistency, verify_inclusion, Hash};
use super::{short, Analysis, Anomalies, CheckResult};
use crate::history::Op;

/// Runs the no-fork check.
pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut anomalies = Anomalies::default();
    let reference = a.reference_tree();
    let reference_size = reference.map_or(0, |t| t.tree.len());

    let (mut bad_format, mut bad_signatures, mut bad_cosignatures) = (0usize, 0usize, 0usize);
    let (mut root_mismatches, mut beyond_tree) = (0usize, 0usize);
    let mut unknown_cosigners = 0usize;
    let mut by_size: BTreeMap<u64, BTreeMap<Hash, Vec<String>>> = BTreeMap::new();
    for h in &a.heads {
        let p = match &h.parsed {
            Ok(p) => p,
            Err(e) => {
                bad_format += 1;
                anomalies.push(format!("{} does not decode: {e}", h.describe()));
                continue;
            }
        };
        if !h.signature_valid {
            bad_signatures += 1;
            anomalies.push(format!(
                "{}: the log signature does not verify over its checkpoint",
                h.describe()
            ));
        }
        if h.invalid_cosignatures > 0 {
            bad_cosignatures += h.invalid_cosignatures;
            anomalies.push(format!(
                "{}: {} cosignature(s) by configured witnesses do not verify",
                h.describe(),
                h.invalid_cosignatures
            ));
        }
        unknown_cosigners += h.unknown_cosigners;
        by_size
            .entry(p.size)
            .or_default()
            .entry(p.root)
            .or_default()
            .push(h.describe());
        match reference.map(|t| t.tree.root_at(p.size)) {
            Some(Some(r)) if r == p.root => {}
            Some(Some(r)) => {
                root_mismatches += 1;
                anomalies.push(format!(
                    "{}: root differs from the final tree's root {} at that size",
                    h.describe(),
                    short(&r)
                ));
            }
            _ => {
                beyond_tree += 1;
                anomalies.push(format!(
                    "{}: larger than the longest final tree ({reference_size} leaves)",
                    h.describe()
                ));
            }
        }
    }
    let mut forked_sizes = 0usize;
    for (size, roots) in &by_size {
        if roots.len() > 1 {
            forked_sizes += 1;
            let seen: Vec<String> = roots
                .iter()
                .map(|(r, who)| format!("{} ({} time(s), first {})", short(r), who.len(), who[0]))
                .collect();
            anomalies.push(format!(
                "fork at size {size}: {} different roots: {}",
                roots.len(),
                seen.join("; ")
            ));
        }
    }

    let mut divergent_nodes = 0usize;
    if let (Some(ref_id), Some(r)) = (a.reference, reference) {
        for (id, t) in &a.trees {
            let diverges = t
                .tree
                .leaves()
                .iter()
                .zip(r.tree.leaves())
                .position(|(x, y)| x != y);
            if let Some(i) = diverges {
                divergent_nodes += 1;
                anomalies.push(format!(
                    "final tree of node {id} diverges from node {ref_id}'s at index {i} (leaf {} vs {})",
                    short(&t.tree.leaves()[i]),
                    short(&r.tree.leaves()[i])
                ));
            }
        }
    }

    let (mut consistency_checked, mut consistency_failed) = (0usize, 0usize);
    let (mut inclusion_checked, mut inclusion_failed) = (0usize, 0usize);
    for o in a.ops.iter().filter(|o| o.is_ok()) {
        match o.op() {
            Op::Consistency(c) => {
                consistency_checked += 1;
                let result = (|| {
                    let old =
                        decode_hex::<32>("old_root", &c.old_root).map_err(|e| e.to_string())?;
                    let new =
                        decode_hex::<32>("new_root", &c.new_root).map_err(|e| e.to_string())?;
                    let path = decode_path(&c.path)?;
                    verify_consistency(c.old_size, c.new_size, &old, &new, &path)
                        .map_err(|e| e.to_string())
                })();
                if let Err(e) = result {
                    consistency_failed += 1;
                    anomalies.push(format!(
                        "consistency proof {} -> {} (event {}, node {:?}) does not verify: {e}",
                        c.old_size,
                        c.new_size,
                        o.end_index(),
                        o.node()
                    ));
                }
            }
            Op::Inclusion(i) => {
                inclusion_checked += 1;
                let result = (|| {
                    let leaf =
                        decode_hex::<32>("leaf_hash", &i.leaf_hash).map_err(|e| e.to_string())?;
                    let root = decode_hex::<32>("root", &i.root).map_err(|e| e.to_string())?;
                    let index = i
                        .index
                        .ok_or("an ok inclusion proof without a leaf index")?;
                    let path = decode_path(&i.path)?;
                    verify_inclusion(&leaf, index, i.size, &path, &root).map_err(|e| e.to_string())
                })();
                if let Err(e) = result {
                    inclusion_failed += 1;
                    anomalies.push(format!(
                        "inclusion proof of leaf {} in size {} (event {}, node {:?}) does not verify: {e}",
                        i.leaf_hash.chars().take(16).collect::<String>(),
                        i.size,
                        o.end_index(),
                        o.node()
                    ));
                }
            }
            _ => {}
        }
    }

    let distinct_heads: usize = by_size.values().map(BTreeMap::len).sum();
    let details = json!({
        "heads_observed": a.heads.len(),
        "distinct_heads": distinct_heads,
        "malformed_heads": bad_format,
        "bad_signatures": bad_signatures,
        "bad_cosignatures": bad_cosignatures,
        "unknown_cosigners": unknown_cosigners,
        "forked_sizes": forked_sizes,
        "root_mismatches": root_mismatches,
        "heads_beyond_final_tree": beyond_tree,
        "divergent_nodes": divergent_nodes,
        "reference_node": a.reference,
        "reference_size": reference_size,
        "consistency_checked": consistency_checked,
        "consistency_failed": consistency_failed,
        "inclusion_checked": inclusion_checked,
        "inclusion_failed": inclusion_failed,
    });
    let summary = format!(
        "{} heads ({distinct_heads} distinct) checked against the {reference_size}-leaf final tree: {bad_signatures} bad signatures, {forked_sizes} forked sizes, {root_mismatches} wrong roots; {divergent_nodes} divergent nodes; {consistency_failed}/{consistency_checked} consistency and {inclusion_failed}/{inclusion_checked} inclusion proofs failed",
        a.heads.len()
    );
    anomalies.finish("no-fork", summary, details)
}

fn decode_path(path: &[String]) -> Result<Vec<Hash>, String> {
    path.iter()
        .map(|p| decode_hex::<32>("path", p).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Sim;
    use super::super::{Analysis, FinalLeaf, FinalState};
    use super::*;
    use crate::history::Op;

    fn run(s: &Sim, f: &FinalState) -> CheckResult {
        let cfg = s.config();
        check(&Analysis::new(&s.events, f, &cfg))
    }

    #[test]
    fn clean_run_has_no_fork() {
        let s = Sim::clean();
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(r.details["consistency_checked"], 2);
        assert_eq!(r.details["inclusion_checked"], 2);
        assert_eq!(r.details["heads_observed"], 10);
        assert_eq!(r.details["distinct_heads"], 4);
    }

    #[test]
    fn two_roots_for_one_size_are_a_fork() {
        let mut s = Sim::clean();
        let forged = s.signed_head(6, [0xaa; 32]);
        s.read_head(4, 3, forged);
        let r = run(&s, &s.final_state());
        assert!(!r.valid);
        assert_eq!(r.details["forked_sizes"], 1);
        assert_eq!(r.details["bad_signatures"], 0);
        assert!(
            r.anomalies.iter().any(|m| m.starts_with("fork at size 6")),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn a_head_whose_signature_does_not_verify_is_rejected() {
        let mut s = Sim::clean();
        let mut h = s.head(7);
        h.signature = s.head(8).signature;
        s.read_head(4, 2, h);
        let r = run(&s, &s.final_state());
        assert!(!r.valid);
        assert_eq!(r.details["bad_signatures"], 1);
        assert_eq!(r.details["forked_sizes"], 0);
    }

    #[test]
    fn a_head_with_a_root_not_recomputed_from_the_final_tree_is_rejected() {
        let mut s = Sim::clean();
        // The only head of size 4 ever seen: no fork by size, but the wrong root.
        let wrong = s.signed_head(4, s.root_at(5));
        s.read_head(4, 1, wrong);
        let r = run(&s, &s.final_state());
        assert!(!r.valid);
        assert_eq!(r.details["root_mismatches"], 1);
        assert_eq!(r.details["forked_sizes"], 0);
        // A head beyond every final tree is also rejected.
        let mut s = Sim::clean();
        let ahead = s.signed_head(9, [1; 32]);
        s.read_head(4, 1, ahead);
        let r = run(&s, &s.final_state());
        assert_eq!(r.details["heads_beyond_final_tree"], 1);
    }

    #[test]
    fn a_bad_cosignature_from_a_configured_witness_is_rejected() {
        let mut s = Sim::clean();
        let mut h = s.head(7);
        h.cosignatures[0].signature = s.head(8).cosignatures[0].signature.clone();
        s.read_head(4, 2, h);
        let r = run(&s, &s.final_state());
        assert!(!r.valid);
        assert_eq!(r.details["bad_cosignatures"], 1);
    }

    #[test]
    fn diverging_final_trees_are_a_fork() {
        let s = Sim::clean();
        let mut f = s.final_state();
        let leaves = &mut f.nodes.get_mut(&2).unwrap().leaves;
        leaves.truncate(5);
        leaves.push(FinalLeaf::from(&Sim::leaf(1, 3)));
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["divergent_nodes"], 1);
        assert!(
            r.anomalies.iter().any(|m| m.contains("index 5")),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn tampered_proofs_fail() {
        let mut s = Sim::clean();
        for e in &mut s.events {
            match &mut e.op {
                Op::Consistency(c) if !c.path.is_empty() => c.path[0] = "00".repeat(32),
                Op::Inclusion(i) if i.index.is_some() => i.index = Some(1),
                _ => {}
            }
        }
        let r = run(&s, &s.final_state());
        assert!(!r.valid);
        assert_eq!(r.details["consistency_failed"], 2);
        assert_eq!(r.details["inclusion_failed"], 2);
    }
}
