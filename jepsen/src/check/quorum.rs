//! Quorum bound: every published head is backed by a majority of the cluster.
//!
//! Invalidity: a distinct observed head (size S, root R) for which fewer than
//! `node_count / 2 + 1` nodes have a final tree of at least S leaves whose root at S is R.
//! A head is signed only over committed entries, and committed entries survive on a
//! majority, so a head backed by fewer nodes means the log published something a failover
//! could lose.
//!
//! Metric `heads_ahead_of_status`: heads whose size exceeded the majority tree size the
//! nodes reported (`status` `tree_size`) when the head was first observed, plus
//! `status_tolerance`. For each node we take the first `ok` status invoked at or after
//! that moment; since a node's applied tree only grows, the size it reports is an *upper
//! bound* on its tree at that moment, so an excess is real rather than an artefact of
//! polling. A node with no such status counts as unbounded (no evidence). This is still
//! not an invalidity: `tree_size` is the *applied* tree, and a follower may hold
//! committed entries it has not applied yet.

use std::collections::BTreeMap;

use serde_json::json;

use super::merkle::Hash;
use super::{short, Analysis, Anomalies, CheckResult};
use crate::history::Op;

/// Heads ahead of the status bound listed in the details.
const AHEAD_EXAMPLES: usize = 20;

/// Runs the quorum-bound check.
pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut anomalies = Anomalies::default();
    let majority = a.config.majority();

    // Distinct heads and when each was first observed.
    let mut distinct: BTreeMap<(u64, Hash), (u64, String)> = BTreeMap::new();
    for h in &a.heads {
        let Ok(p) = &h.parsed else { continue };
        let e = distinct
            .entry((p.size, p.root))
            .or_insert((h.complete_ns, h.describe()));
        if h.complete_ns < e.0 {
            *e = (h.complete_ns, h.describe());
        }
    }

    let mut underbacked = 0usize;
    for ((size, root), (_, first)) in &distinct {
        let backing: Vec<u64> = a
            .trees
            .iter()
            .filter(|(_, t)| t.tree.root_at(*size).as_ref() == Some(root))
            .map(|(id, _)| *id)
            .collect();
        if (backing.len() as u64) < majority {
            underbacked += 1;
            anomalies.push(format!(
                "head {size}@{} (first seen as {first}) is in the final trees of only {} node(s) {backing:?}; a majority is {majority} of {}",
                short(root),
                backing.len(),
                a.config.node_count
            ));
        }
    }

    // Per node: (invoke time, reported tree size), by invoke time.
    let mut status: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for o in a.ops.iter().filter(|o| o.is_ok()) {
        if let (Op::Status(Some(s)), Some(node)) = (o.op(), o.node()) {
            if let Some(size) = s.tree_size {
                status.entry(node).or_default().push((o.invoke_ns(), size));
            }
        }
    }
    for v in status.values_mut() {
        v.sort_unstable();
    }
    let tolerance = a.config.status_tolerance;
    let (mut assessed, mut ahead) = (0usize, 0usize);
    let mut examples = Vec::new();
    for ((size, _), (t, first)) in &distinct {
        let mut bounds: Vec<u64> = status
            .values()
            .map(|v| {
                let i = v.partition_point(|(at, _)| at < t);
                v.get(i).map_or(u64::MAX, |(_, s)| *s)
            })
            .collect();
        let unbounded = (a.config.node_count as usize).saturating_sub(bounds.len());
        bounds.extend(std::iter::repeat_n(u64::MAX, unbounded));
        bounds.sort_unstable_by(|x, y| y.cmp(x));
        let Some(&majority_size) = bounds.get(majority as usize - 1) else {
            continue;
        };
        if majority_size == u64::MAX {
            continue;
        }
        assessed += 1;
        if *size > majority_size.saturating_add(tolerance) {
            ahead += 1;
            if examples.len() < AHEAD_EXAMPLES {
                examples.push(format!(
                    "{first}: majority reported at most {majority_size} leaves"
                ));
            }
        }
    }

    let details = json!({
        "distinct_heads": distinct.len(),
        "majority": majority,
        "underbacked_heads": underbacked,
        "status_assessed_heads": assessed,
        "heads_ahead_of_status": ahead,
        "status_tolerance": tolerance,
        "heads_ahead_of_status_examples": examples,
    });
    let summary = format!(
        "{underbacked} of {} distinct heads lack a majority ({majority}) of final trees; {ahead} of {assessed} assessed heads ran ahead of the majority's reported tree size (metric)",
        distinct.len()
    );
    anomalies.finish("quorum-bound", summary, details)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Sim;
    use super::super::{Analysis, FinalState};
    use super::*;

    fn run(s: &Sim, f: &FinalState) -> CheckResult {
        let cfg = s.config();
        check(&Analysis::new(&s.events, f, &cfg))
    }

    #[test]
    fn clean_run_is_majority_backed() {
        let s = Sim::clean();
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(r.details["distinct_heads"], 4);
        assert_eq!(r.details["heads_ahead_of_status"], 0);
        // Heads 7 and 8 have a later status from every node (8 leaves); 3 and 6 do too.
        assert_eq!(r.details["status_assessed_heads"], 4);
    }

    #[test]
    fn a_head_backed_by_one_of_three_final_trees_is_rejected() {
        let s = Sim::clean();
        let mut f = s.final_state();
        for id in [2, 3] {
            let n = f.nodes.get_mut(&id).unwrap();
            n.leaves.truncate(6);
            n.head = Some(s.head(6));
        }
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["underbacked_heads"], 2, "{:?}", r.anomalies);
        assert!(r.anomalies[0].contains("head 7@"), "{:?}", r.anomalies);
        assert!(r.anomalies[0].contains("[1]"), "{:?}", r.anomalies);
        // Two of three is a majority.
        let mut f = s.final_state();
        f.nodes.get_mut(&3).unwrap().leaves.truncate(6);
        assert!(run(&s, &f).valid);
    }

    #[test]
    fn a_head_ahead_of_the_majority_status_is_counted_not_failed() {
        let mut s = Sim::new();
        for seq in 0..4 {
            s.ack(0, 1, seq);
        }
        s.read_head(1, 1, s.head(4));
        s.status(9, 1, 4);
        s.status(9, 2, 2);
        s.status(9, 3, 3);
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(r.details["heads_ahead_of_status"], 1);
        let mut cfg = s.config();
        cfg.status_tolerance = 1;
        let f = s.final_state();
        let r = check(&Analysis::new(&s.events, &f, &cfg));
        assert_eq!(r.details["heads_ahead_of_status"], 0);
        // Without a later status from two nodes there is no bound to compare with.
        let mut s2 = Sim::new();
        s2.ack(0, 1, 0);
        s2.status(9, 1, 0);
        s2.read_head(1, 1, s2.head(1));
        s2.status(9, 2, 0);
        let r = run(&s2, &s2.final_state());
        assert_eq!(r.details["status_assessed_heads"], 0);
    }
}
