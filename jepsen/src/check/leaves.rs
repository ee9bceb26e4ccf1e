//! No phantom or duplicate leaves: every leaf in every final tree was submitted by the
//! workload, and none appears twice in one tree (Sigsum add-leaf is idempotent: a
//! resubmission must be answered from the tree, not appended again).

use std::collections::{BTreeMap, HashSet};

use serde_json::json;

use super::checkpoint::tree_leaf_hash;
use super::merkle::Hash;
use super::{short, Analysis, Anomalies, CheckResult};
use crate::history::Op;

/// Runs the phantom/duplicate check.
pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut anomalies = Anomalies::default();

    // Both the invoke's and the completion's value, in case a workload records them apart.
    let mut submitted: HashSet<Hash> = a
        .ops
        .iter()
        .flat_map(|o| [Some(o.invoke), o.completion].into_iter().flatten())
        .filter_map(|e| match &e.op {
            Op::AddLeaf(v) => tree_leaf_hash(&v.checksum, &v.signature, &v.key_hash).ok(),
            _ => None,
        })
        .collect();
    // The directory submits its signed map heads itself (the directory checker verifies
    // each against the directory key).
    for h in a.final_state.directory.values().flat_map(|d| &d.heads) {
        if let Some(leaf) = hex::decode(&h.leaf).ok().filter(|l| l.len() == 128) {
            if let Ok(lh) = tree_leaf_hash(
                &hex::encode(&leaf[..32]),
                &hex::encode(&leaf[32..96]),
                &hex::encode(&leaf[96..]),
            ) {
                submitted.insert(lh);
            }
        }
    }

    let (mut phantoms, mut duplicates, mut malformed) = (0usize, 0usize, 0usize);
    let mut sizes = BTreeMap::new();
    for (id, t) in &a.trees {
        sizes.insert(id.to_string(), t.tree.len());
        for (i, why) in &t.malformed {
            malformed += 1;
            anomalies.push(format!("node {id} index {i}: malformed leaf: {why}"));
        }
        let bad: HashSet<u64> = t.malformed.iter().map(|(i, _)| *i).collect();
        for (i, h) in t.tree.leaves().iter().enumerate() {
            if !submitted.contains(h) && !bad.contains(&(i as u64)) {
                phantoms += 1;
                anomalies.push(format!(
                    "node {id} index {i}: leaf {} was never submitted",
                    short(h)
                ));
            }
        }
        let mut repeated: Vec<(&Hash, &Vec<u64>)> =
            t.positions.iter().filter(|(_, p)| p.len() > 1).collect();
        repeated.sort_by_key(|(_, p)| p[0]);
        for (h, p) in repeated {
            duplicates += 1;
            anomalies.push(format!(
                "node {id}: leaf {} appears {} times, at indices {p:?}",
                short(h),
                p.len()
            ));
        }
    }

    let details = json!({
        "submitted_leaves": submitted.len(),
        "final_tree_sizes": sizes,
        "phantoms": phantoms,
        "duplicates": duplicates,
        "malformed": malformed,
    });
    let summary = format!(
        "{phantoms} phantom, {duplicates} duplicated and {malformed} malformed leaves across {} final trees",
        a.trees.len()
    );
    anomalies.finish("no-phantom-or-duplicate", summary, details)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Sim;
    use super::super::{Analysis, FinalLeaf, FinalState};
    use super::*;

    fn run(s: &Sim, f: &FinalState) -> CheckResult {
        let cfg = s.config();
        check(&Analysis::new(&s.events, f, &cfg))
    }

    #[test]
    fn clean_run_has_only_submitted_unique_leaves() {
        let s = Sim::clean();
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(r.details["submitted_leaves"], 10);
    }

    #[test]
    fn a_leaf_nobody_submitted_is_a_phantom() {
        let s = Sim::clean();
        let mut f = s.final_state();
        f.nodes
            .get_mut(&2)
            .unwrap()
            .leaves
            .push(FinalLeaf::from(&Sim::leaf(7, 7)));
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["phantoms"], 1);
        assert!(
            r.anomalies[0].starts_with("node 2 index 8"),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn a_leaf_twice_in_one_tree_is_a_duplicate() {
        let s = Sim::clean();
        let mut f = s.final_state();
        let first = f.nodes[&1].leaves[0].clone();
        for n in f.nodes.values_mut() {
            n.leaves.push(first.clone());
        }
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["duplicates"], 3);
        assert_eq!(r.details["phantoms"], 0);
        assert!(r.anomalies[0].contains("[0, 8]"), "{:?}", r.anomalies);
    }

    #[test]
    fn a_malformed_leaf_is_reported_once() {
        let s = Sim::clean();
        let mut f = s.final_state();
        f.nodes.get_mut(&3).unwrap().leaves[2].signature = "xyz".into();
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["malformed"], 1);
        assert_eq!(r.details["phantoms"], 0);
    }
}
