//! Durability: an acknowledged leaf survives on every node and gets published.
//!
//! - Every leaf whose `add_leaf` completed `ok` (HTTP 200) must be in the final tree of
//!   every node: 200 means a majority fsynced it, so no failover may lose it.
//! - It must also be covered by a published, cosigned head (log signature valid, at least
//!   one cosignature, one valid when witness keys are configured) whose size exceeds the
//!   leaf's index, observed no later than `max(ack, last heal) + interval + witness
//!   timeout + slack`. The brief's bound is "last heal (or first event) + ..."; taking the
//!   later of that and the acknowledgement also covers leaves acknowledged after the last
//!   heal, which then get one publication round (plus slack) of their own. During faults
//!   publication may legitimately stall, hence measuring from the last heal.
//! - A leaf whose only submissions all `fail`ed must not be in any final tree.
//! - `info` submissions may or may not be present; they are only counted.

use std::collections::HashMap;

use serde_json::json;

use super::merkle::Hash;
use super::ops::Operation;
use super::{describe_leaf, ms, Analysis, Anomalies, CheckResult};
use crate::history::{EventType, LeafValue, NemesisPhase, Op};

/// Every submission of one leaf.
#[derive(Default)]
struct Submissions<'a> {
    value: Option<&'a LeafValue>,
    ok: Vec<&'a Operation<'a>>,
    fail: usize,
    info: usize,
}

/// Runs the durability check.
pub(crate) fn check(a: &Analysis<'_>) -> CheckResult {
    let mut anomalies = Anomalies::default();
    let cfg = a.config;

    let known_nodes = a.final_state.nodes.len() as u64;
    if known_nodes < cfg.node_count {
        anomalies.push(format!(
            "final state has only {known_nodes} of {} nodes; durability on the others is unverified",
            cfg.node_count
        ));
    }

    let mut by_leaf: HashMap<Hash, Submissions<'_>> = HashMap::new();
    let mut malformed = 0usize;
    for o in a.ops_where(|op| matches!(op, Op::AddLeaf(_))) {
        let Op::AddLeaf(v) = o.op() else { continue };
        let h = match super::checkpoint::tree_leaf_hash(&v.checksum, &v.signature, &v.key_hash) {
            Ok(h) => h,
            Err(e) => {
                malformed += 1;
                anomalies.push(format!(
                    "add_leaf event {} of {} has a malformed leaf: {e}",
                    o.invoke.index,
                    describe_leaf(v, None)
                ));
                continue;
            }
        };
        let s = by_leaf.entry(h).or_default();
        s.value.get_or_insert(v);
        match o.outcome() {
            EventType::Ok => s.ok.push(o),
            EventType::Fail => s.fail += 1,
            _ => s.info += 1,
        }
    }

    // Coverage is measured from the last heal (or the start of the test).
    let last_heal_ns = a
        .ops_where(|op| matches!(op, Op::Nemesis(n) if n.phase == NemesisPhase::Stop))
        .map(|o| o.end_ns())
        .max();
    let base_ns = last_heal_ns.unwrap_or(a.start_ns);
    let window = cfg.publish_interval + cfg.witness_timeout + cfg.coverage_slack;
    let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    let witnesses = !cfg.witness_keys.is_empty();
    let cosigned: Vec<_> = a
        .heads
        .iter()
        .filter(|h| h.is_cosigned(witnesses))
        .collect();

    let reference = a.reference_tree();
    let (mut acknowledged, mut lost, mut uncovered) = (0usize, 0usize, 0usize);
    let (mut failed, mut failed_present) = (0usize, 0usize);
    let (mut indeterminate, mut indeterminate_present) = (0usize, 0usize);
    let mut lag_ms: Vec<f64> = Vec::new();

    let mut leaves: Vec<(&Hash, &Submissions<'_>)> = by_leaf.iter().collect();
    leaves.sort_by_key(|(_, s)| s.value.map(|v| (v.client, v.seq)));
    for (h, s) in leaves {
        let v = s.value.expect("every entry has a value");
        let present: Vec<u64> = a
            .trees
            .iter()
            .filter(|(_, t)| t.contains(h))
            .map(|(id, _)| *id)
            .collect();
        if s.ok.is_empty() {
            if s.info > 0 {
                indeterminate += 1;
                indeterminate_present += usize::from(!present.is_empty());
            } else if s.fail > 0 {
                failed += 1;
                if !present.is_empty() {
                    failed_present += 1;
                    anomalies.push(format!(
                        "{} failed definitely ({} fail completion(s), nothing else) but is in the final tree of node(s) {present:?}",
                        describe_leaf(v, Some(h)),
                        s.fail
                    ));
                }
            }
            continue;
        }

        acknowledged += 1;
        let first_ack = s.ok.iter().min_by_key(|o| o.end_ns()).expect("non-empty");
        let ack_ns = first_ack.end_ns();
        let missing: Vec<u64> = a
            .trees
            .iter()
            .filter(|(_, t)| !t.contains(h))
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            lost += 1;
            anomalies.push(format!(
                "{} acknowledged at {:.0} ms (event {}) is missing from the final tree of node(s) {missing:?}",
                describe_leaf(v, Some(h)),
                ms(ack_ns),
                first_ack.end_index()
            ));
        }

        let index = reference
            .and_then(|t| t.index_of(h))
            .or_else(|| a.trees.values().filter_map(|t| t.index_of(h)).min());
        let Some(index) = index else { continue };
        let deadline_ns = base_ns.max(ack_ns).saturating_add(window_ns);
        let first_cover = cosigned
            .iter()
            .filter(|c| c.head.size > index)
            .map(|c| c.complete_ns)
            .min();
        match first_cover {
            Some(t) if t <= deadline_ns => lag_ms.push(ms(t.saturating_sub(ack_ns))),
            _ => {
                uncovered += 1;
                let largest = cosigned
                    .iter()
                    .filter(|c| c.complete_ns <= deadline_ns)
                    .map(|c| c.head.size)
                    .max();
                anomalies.push(format!(
                    "{} at index {index}, acknowledged at {:.0} ms, is not covered by a cosigned head observed by {:.0} ms (largest cosigned size by then: {}; first covering head at: {})",
                    describe_leaf(v, Some(h)),
                    ms(ack_ns),
                    ms(deadline_ns),
                    largest.map_or("none".into(), |s| s.to_string()),
                    first_cover.map_or("never".into(), |t| format!("{:.0} ms", ms(t))),
                ));
            }
        }
    }

    lag_ms.sort_by(f64::total_cmp);
    let details = json!({
        "acknowledged": acknowledged,
        "lost": lost,
        "uncovered": uncovered,
        "failed": failed,
        "failed_present": failed_present,
        "indeterminate": indeterminate,
        "indeterminate_present": indeterminate_present,
        "malformed_submissions": malformed,
        "final_nodes": known_nodes,
        "coverage_base_ms": ms(base_ns),
        "coverage_window_ms": ms(window_ns),
        "cosigned_heads_observed": cosigned.len(),
        "ack_to_cosigned_head_ms_p50": lag_ms.get(lag_ms.len().saturating_sub(1) / 2),
        "ack_to_cosigned_head_ms_max": lag_ms.last(),
    });
    let summary = format!(
        "{acknowledged} acknowledged: {lost} lost, {uncovered} not covered by a cosigned head in time; {failed_present} of {failed} failed leaves present; {indeterminate_present} of {indeterminate} indeterminate leaves present"
    );
    anomalies.finish("durability", summary, details)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Sim;
    use super::super::{Analysis, FinalLeaf};
    use super::*;
    use crate::history::{NemesisPhase, Op};

    fn run(s: &Sim, f: &super::super::FinalState) -> CheckResult {
        let cfg = s.config();
        check(&Analysis::new(&s.events, f, &cfg))
    }

    #[test]
    fn clean_run_is_durable() {
        let s = Sim::clean();
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(r.details["acknowledged"], 7);
        assert_eq!(r.details["lost"], 0);
        assert_eq!(r.details["failed"], 1);
        assert_eq!(r.details["indeterminate"], 2);
        assert_eq!(r.details["indeterminate_present"], 1);
    }

    #[test]
    fn an_acknowledged_leaf_missing_from_one_node_is_lost() {
        let s = Sim::clean();
        let mut f = s.final_state();
        let gone = FinalLeaf::from(&Sim::leaf(1, 1));
        f.nodes.get_mut(&3).unwrap().leaves.retain(|l| *l != gone);
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["lost"], 1);
        assert!(
            r.anomalies[0].contains("client 1 seq 1"),
            "{:?}",
            r.anomalies
        );
        assert!(r.anomalies[0].contains("[3]"), "{:?}", r.anomalies);
    }

    #[test]
    fn a_leaf_never_covered_by_a_cosigned_head_is_reported() {
        let mut s = Sim::clean();
        // Strip the cosignatures of every size-8 head: the last leaf (index 7) is then
        // covered only by uncosigned heads.
        for e in &mut s.events {
            if let Op::ReadHead(Some(h)) = &mut e.op {
                if h.size == 8 {
                    h.cosignatures.clear();
                }
            }
        }
        let mut f = s.final_state();
        for n in f.nodes.values_mut() {
            n.head.as_mut().unwrap().cosignatures.clear();
        }
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["uncovered"], 1);
        assert!(
            r.anomalies[0].contains("client 1 seq 4"),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn a_cosignature_that_does_not_verify_does_not_cover() {
        let mut s = Sim::clean();
        for e in &mut s.events {
            if let Op::ReadHead(Some(h)) = &mut e.op {
                if h.size == 8 {
                    h.cosignatures[0].timestamp += 1;
                }
            }
        }
        let mut f = s.final_state();
        for n in f.nodes.values_mut() {
            n.head.as_mut().unwrap().cosignatures[0].timestamp += 1;
        }
        let r = run(&s, &f);
        assert_eq!(r.details["uncovered"], 1, "{:?}", r.anomalies);
        // Without witness keys any cosignature line counts.
        let mut cfg = s.config();
        cfg.witness_keys.clear();
        let r = check(&Analysis::new(&s.events, &f, &cfg));
        assert!(r.valid, "{:?}", r.anomalies);
    }

    #[test]
    fn a_covering_head_seen_only_after_the_deadline_is_too_late() {
        let mut s = Sim::new();
        s.ack(0, 1, 0);
        s.read_head(1, 1, s.head(0));
        s.advance_ms(30_000); // more than 3 s + 3 s + 10 s
        s.read_head(1, 1, s.head(1));
        let f = s.final_state();
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["uncovered"], 1);

        // Within the window it is fine, and the window starts at the last heal.
        let mut s = Sim::new();
        s.ack(0, 1, 0);
        s.nemesis("pause", NemesisPhase::Start);
        s.advance_ms(60_000);
        s.nemesis("pause", NemesisPhase::Stop);
        s.advance_ms(12_000);
        s.read_head(1, 1, s.head(1));
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
    }

    #[test]
    fn a_failed_leaf_that_is_present_is_an_anomaly() {
        let s = Sim::clean();
        let mut f = s.final_state();
        let failed = FinalLeaf::from(&Sim::leaf(0, 4));
        for n in f.nodes.values_mut() {
            n.leaves.push(failed.clone());
        }
        let r = run(&s, &f);
        assert!(!r.valid);
        assert_eq!(r.details["failed_present"], 1);
        assert!(
            r.anomalies[0].contains("client 0 seq 4"),
            "{:?}",
            r.anomalies
        );
    }

    #[test]
    fn a_failed_leaf_retried_with_another_outcome_may_be_present() {
        let mut s = Sim::new();
        s.add_leaf(0, 1, 0, EventType::Fail, false);
        s.add_leaf(0, 1, 0, EventType::Info, true);
        s.read_head(1, 1, s.head(1));
        let r = run(&s, &s.final_state());
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(r.details["indeterminate_present"], 1);
    }

    #[test]
    fn a_node_missing_from_the_final_state_is_reported() {
        let s = Sim::clean();
        let mut f = s.final_state();
        f.nodes.remove(&2);
        let r = run(&s, &f);
        assert!(!r.valid);
        assert!(r.anomalies[0].contains("2 of 3"), "{:?}", r.anomalies);
    }
}
