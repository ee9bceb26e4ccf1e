//! No regression: a node never serves a smaller published head than it already served.
//!
//! - Per node, in real-time order (its final head last), the size of the heads it served
//!   never decreases: the published head is replicated state that only moves forward. A
//!   read is compared with the reads of the same node that completed before it was
//!   invoked; reads overlapping in time may be served in either order.
//! - Per client, sizes never decrease *when read from the same node*. Reads are served
//!   from each node's local replicated state (docs/design.md, "Reads"), so a client that
//!   moves from an up-to-date node to a lagging follower can legitimately see a smaller
//!   head; such cross-node decreases are exactly the stale reads below and are reported as
//!   the metric `client_cross_node_decreases`, not as anomalies.
//! - Metric `stale_reads`: reads where a node served a head smaller than one a different
//!   node had served in a read that completed before this read was invoked (real-time
//!   order). Not an invalidity: followers apply the published head late, and a
//!   partitioned minority keeps serving its last one.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Analysis, Anomalies, CheckResult, ObservedHead};
use crate::history::Process;

/// Stale reads listed in the details.
const STALE_EXAMPLES: usize = 20;

/// Runs the no-regression check.
pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut anomalies = Anomalies::default();

    // Per node, in real-time order: a head is a regression if a read of the same node that
    // completed before this one was invoked had served a larger size. Reads that overlap
    // in time may be served in either order (found by a 30-minute partition run: two
    // readers' concurrent requests to one node, answered 3580 and 3560, were taken for a
    // regression when compared in completion order).
    let mut by_node: BTreeMap<u64, Vec<&ObservedHead<'_>>> = BTreeMap::new();
    for h in &a.heads {
        if let Some(node) = h.node {
            by_node.entry(node).or_default().push(h);
        }
    }
    // Per node: (completion time, the largest head served up to then), by completion time.
    let mut node_prefix: BTreeMap<u64, Vec<(u64, &ObservedHead<'_>)>> = BTreeMap::new();
    for (node, mut v) in by_node {
        v.sort_by_key(|h| h.complete_ns);
        let mut best: Option<&ObservedHead<'_>> = None;
        let prefix = v
            .into_iter()
            .map(|h| {
                if best.is_none_or(|b| h.head.size > b.head.size) {
                    best = Some(h);
                }
                (h.complete_ns, best.expect("set above"))
            })
            .collect();
        node_prefix.insert(node, prefix);
    }
    let mut node_regressions = 0usize;
    for h in &a.heads {
        let Some(node) = h.node else { continue };
        let prefix = &node_prefix[&node];
        let i = prefix.partition_point(|(t, _)| *t < h.invoke_ns);
        if i == 0 {
            continue;
        }
        let m = prefix[i - 1].1;
        if h.head.size < m.head.size {
            node_regressions += 1;
            anomalies.push(format!(
                "node {node} served size {} in {} after serving size {} in {}",
                h.head.size,
                h.describe(),
                m.head.size,
                m.describe()
            ));
        }
    }
    let node_max: BTreeMap<u64, &ObservedHead<'_>> = node_prefix
        .iter()
        .filter_map(|(n, v)| v.last().map(|(_, h)| (*n, *h)))
        .collect();

    let mut client_max: BTreeMap<u64, &ObservedHead<'_>> = BTreeMap::new();
    let (mut client_regressions, mut cross_node) = (0usize, 0usize);
    for h in &a.heads {
        let Some(Process::Client(c)) = h.process else {
            continue;
        };
        match client_max.get(&c) {
            Some(m) if h.head.size < m.head.size => {
                if h.node.is_some() && h.node != m.node {
                    cross_node += 1;
                } else {
                    client_regressions += 1;
                    anomalies.push(format!(
                        "client {c} saw size {} in {} after size {} in {}",
                        h.head.size,
                        h.describe(),
                        m.head.size,
                        m.describe()
                    ));
                }
            }
            Some(m) if h.head.size == m.head.size => {}
            _ => {
                client_max.insert(c, h);
            }
        }
    }

    // Per node: (completion time, running max size), sorted by time, over history reads.
    let mut served: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let reads: Vec<&ObservedHead<'_>> =
        a.heads.iter().filter(|h| h.event_index.is_some()).collect();
    for h in &reads {
        if let Some(n) = h.node {
            served
                .entry(n)
                .or_default()
                .push((h.complete_ns, h.head.size));
        }
    }
    for v in served.values_mut() {
        v.sort_unstable();
        let mut m = 0;
        for e in v.iter_mut() {
            m = m.max(e.1);
            e.1 = m;
        }
    }
    let (mut stale_reads, mut max_staleness) = (0usize, 0u64);
    let mut examples = Vec::new();
    for h in &reads {
        let Some(node) = h.node else { continue };
        let newest_elsewhere = served
            .iter()
            .filter(|(n, _)| **n != node)
            .filter_map(|(n, v)| {
                let i = v.partition_point(|(t, _)| *t < h.invoke_ns);
                (i > 0).then(|| (v[i - 1].1, *n))
            })
            .max();
        if let Some((size, other)) = newest_elsewhere {
            if size > h.head.size {
                stale_reads += 1;
                max_staleness = max_staleness.max(size - h.head.size);
                if examples.len() < STALE_EXAMPLES {
                    examples.push(format!(
                        "{} while node {other} had already served size {size}",
                        h.describe()
                    ));
                }
            }
        }
    }

    let details = json!({
        "reads": reads.len(),
        "node_regressions": node_regressions,
        "client_regressions": client_regressions,
        "client_cross_node_decreases": cross_node,
        "stale_reads": stale_reads,
        "max_staleness_leaves": max_staleness,
        "stale_read_examples": examples,
        "largest_size_per_node": node_max.iter().map(|(n, h)| (n.to_string(), h.head.size)).collect::<BTreeMap<_, _>>(),
    });
    let summary = format!(
        "{node_regressions} per-node and {client_regressions} per-client regressions over {} reads; {stale_reads} stale cross-node reads (metric)",
        reads.len()
    );
    anomalies.finish("no-regression", summary, details)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Sim;
    use super::super::Analysis;
    use super::*;

    fn run(s: &Sim) -> CheckResult {
        let cfg = s.config();
        let f = s.final_state();
        check(&Analysis::new(&s.events, &f, &cfg))
    }

    #[test]
    fn clean_run_has_no_regression_but_one_stale_read() {
        let r = run(&Sim::clean());
        assert!(r.valid, "{:?}", r.anomalies);
        // Node 3 served size 3 during the partition after nodes 1 and 2 had served 6.
        assert_eq!(r.details["stale_reads"], 1);
        assert_eq!(r.details["max_staleness_leaves"], 3);
        assert_eq!(r.details["client_cross_node_decreases"], 1);
    }

    #[test]
    fn a_node_whose_published_size_goes_down_is_a_regression() {
        let mut s = Sim::clean();
        s.read_head(4, 1, s.head(6));
        let r = run(&s);
        assert!(!r.valid);
        assert_eq!(r.details["node_regressions"], 1);
        assert!(
            r.anomalies[0].starts_with("node 1 served size 6"),
            "{:?}",
            r.anomalies
        );
        // Client 4 never saw anything larger, so only the node check fires.
        assert_eq!(r.details["client_regressions"], 0);
    }

    #[test]
    fn a_client_seeing_one_node_go_back_is_a_regression() {
        let mut s = Sim::clean();
        s.read_head(2, 3, s.head(7));
        let r = run(&s);
        assert!(!r.valid);
        assert_eq!(r.details["client_regressions"], 1);
        assert_eq!(r.details["node_regressions"], 1);
    }

    #[test]
    fn a_final_head_below_what_the_node_served_is_a_regression() {
        let s = Sim::clean();
        let mut f = s.final_state();
        f.nodes.get_mut(&2).unwrap().head = Some(s.head(7));
        let cfg = s.config();
        let r = check(&Analysis::new(&s.events, &f, &cfg));
        assert!(!r.valid);
        assert!(r.anomalies[0].contains("final head 7"), "{:?}", r.anomalies);
    }

    /// Read A of `second_node` is invoked, then read B of node 1 completes with size 3,
    /// then A completes with size 1 (A may have been served first); then a read of size 1
    /// of `second_node` invoked after B completed.
    fn overlapping_then_ordered(second_node: u64) -> (CheckResult, CheckResult) {
        let mut s = Sim::new();
        for seq in 0..3 {
            s.ack(0, 1, seq);
        }
        s.op_ns = 10 * super::super::testkit::MS;
        s.read_head(1, 1, s.head(3));
        s.now_ns -= 8 * super::super::testkit::MS;
        s.read_head(2, second_node, s.head(1));
        let overlapping = run(&s);
        s.read_head(2, second_node, s.head(1));
        (overlapping, run(&s))
    }

    #[test]
    fn overlapping_reads_of_one_node_are_not_a_regression() {
        let (overlapping, ordered) = overlapping_then_ordered(1);
        assert_eq!(
            overlapping.details["node_regressions"], 0,
            "{:?}",
            overlapping.anomalies
        );
        assert_eq!(
            ordered.details["node_regressions"], 1,
            "{:?}",
            ordered.anomalies
        );
        assert!(!ordered.valid);
    }

    #[test]
    fn reads_overlapping_in_time_are_not_stale() {
        let (overlapping, ordered) = overlapping_then_ordered(2);
        assert_eq!(overlapping.details["stale_reads"], 0);
        assert_eq!(ordered.details["stale_reads"], 1);
        assert!(ordered.valid);
    }
}
