//! The node's metrics, in the Prometheus text format (0.0.4) by the ops listener, kept with
//! `prometheus-client`. Each part of the node records into one shared [`Metrics`]; Raft
//! gauges are read at scrape time from the Raft node itself.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
const BATCH_BOUNDS: [f64; 7] = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddLeafLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabels {
    /// The witness's name from the policy: operator-chosen text, escaped by the encoder.
    witness: String,
    result: &'static str,
}

/// Raft and replicated state read at scrape time.
pub struct RaftGauges {
    /// Size of the published head this node serves (0 before the first).
    pub published_size: u64,
    /// Size of the latest signed head in the replicated state (0 before the first).
    pub signed_size: u64,
    pub term: u64,
    /// Current leader id (0 if none is known).
    pub leader: u64,
    pub committed: u64,
    pub applied: u64,
    pub is_leader: bool,
    /// Leaves in this node's applied tree.
    pub tree_size: u64,
}

/// Gauges set from [`RaftGauges`] at each scrape.
struct ScrapeGauges {
    tree_size: Gauge,
    published_size: Gauge,
    signed_size: Gauge,
    term: Gauge,
    leader: Gauge,
    is_leader: Gauge,
    committed: Gauge,
    applied: Gauge,
}

/// Everything the node counts.
pub struct Metrics {
    registry: Registry,
    leaves_appended: Counter,
    batch_leaves: Histogram,
    commit_latency: Histogram,
    publishing: Gauge,
    signing_key_loaded: Gauge,
    add_leaf: Family<AddLeafLabels, Counter>,
    witness: Family<WitnessLabels, Counter>,
    scrape: ScrapeGauges,
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

/// A u64 as a gauge value; the counts here stay far below 2^63.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        // prometheus-client adds the `_total` suffix to counters and a full stop to help.
        let leaves_appended = Counter::default();
        r.register(
            "quorumlog_leaves_appended",
            "Leaves appended through this node's group commit",
            leaves_appended.clone(),
        );
        let scrape = ScrapeGauges {
            tree_size: gauge(
                &mut r,
                "quorumlog_tree_size",
                "Leaves in this node's applied tree",
            ),
            published_size: gauge(
                &mut r,
                "quorumlog_published_size",
                "Size of the published (cosigned) tree head this node serves",
            ),
            signed_size: gauge(
                &mut r,
                "quorumlog_signed_size",
                "Size of the latest signed tree head in the replicated state",
            ),
            term: gauge(&mut r, "quorumlog_raft_term", "Current Raft term"),
            leader: gauge(
                &mut r,
                "quorumlog_raft_leader",
                "Id of the current leader (0: none known)",
            ),
            is_leader: gauge(
                &mut r,
                "quorumlog_raft_is_leader",
                "1 if this node is the leader",
            ),
            committed: gauge(
                &mut r,
                "quorumlog_raft_commit_index",
                "Committed Raft log index",
            ),
            applied: gauge(
                &mut r,
                "quorumlog_raft_applied_index",
                "Applied Raft log index",
            ),
        };
        let publishing = gauge(
            &mut r,
            "quorumlog_publishing",
            "1 if this node leads and holds the signing key, so it publishes tree heads",
        );
        let signing_key_loaded = gauge(
            &mut r,
            "quorumlog_signing_key_loaded",
            "1 if this node holds the log's signing key",
        );
        let batch_leaves = Histogram::new(BATCH_BOUNDS);
        r.register(
            "quorumlog_batch_leaves",
            "Leaves per Raft entry proposed by this node",
            batch_leaves.clone(),
        );
        let commit_latency = Histogram::new(LATENCY_BOUNDS);
        r.register(
            "quorumlog_commit_latency_seconds",
            "Time from proposing a batch to its commit and apply",
            commit_latency.clone(),
        );
        let add_leaf = Family::<AddLeafLabels, Counter>::default();
        r.register(
            "quorumlog_add_leaf",
            "add-leaf answers by HTTP status",
            add_leaf.clone(),
        );
        let witness = Family::<WitnessLabels, Counter>::default();
        r.register(
            "quorumlog_witness_requests",
            "add-checkpoint requests by witness and result",
            witness.clone(),
        );
        Metrics {
            registry: r,
            leaves_appended,
            batch_leaves,
            commit_latency,
            publishing,
            signing_key_loaded,
            add_leaf,
            witness,
            scrape,
        }
    }
}

impl Metrics {
    /// Counts one add-leaf answer with HTTP status `status`.
    pub fn add_leaf_answered(&self, status: u16) {
        self.add_leaf.get_or_create(&AddLeafLabels { status }).inc();
    }

    /// Counts a batch of add-leaf answers, one label lookup per distinct status.
    pub fn add_leaf_answered_all(&self, statuses: impl IntoIterator<Item = u16>) {
        let mut counts: Vec<(u16, u64)> = Vec::new();
        for status in statuses {
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => counts.push((status, 1)),
            }
        }
        for (status, n) in counts {
            self.add_leaf
                .get_or_create(&AddLeafLabels { status })
                .inc_by(n);
        }
    }

    /// Counts one witness request outcome (`ok`, `conflict`, `error`).
    pub fn witness_result(&self, witness: &str, result: &'static str) {
        self.witness
            .get_or_create(&WitnessLabels {
                witness: witness.to_string(),
                result,
            })
            .inc();
    }

    /// Records one committed batch.
    pub fn batch_committed(&self, leaves: usize, latency: Duration) {
        self.batch_leaves.observe(leaves as f64);
        self.commit_latency.observe(latency.as_secs_f64());
        self.leaves_appended.inc_by(leaves as u64);
    }

    /// Records whether this node publishes (it leads and holds the key).
    pub fn set_publishing(&self, publishing: bool) {
        self.publishing.set(i64::from(publishing));
    }

    pub fn is_publishing(&self) -> bool {
        self.publishing.get() == 1
    }

    pub fn set_signing_key_loaded(&self, loaded: bool) {
        self.signing_key_loaded.set(i64::from(loaded));
    }

    /// The exposition, with the Raft gauges set from `raft`.
    pub fn render(&self, raft: &RaftGauges) -> String {
        let g = &self.scrape;
        g.tree_size.set(int(raft.tree_size));
        g.published_size.set(int(raft.published_size));
        g.signed_size.set(int(raft.signed_size));
        g.term.set(int(raft.term));
        g.leader.set(int(raft.leader));
        g.is_leader.set(i64::from(raft.is_leader));
        g.committed.set(int(raft.committed));
        g.applied.set(int(raft.applied));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> RaftGauges {
        RaftGauges {
            term: 4,
            leader: 2,
            committed: 9,
            applied: 8,
            is_leader: false,
            tree_size: 10,
            published_size: 9,
            signed_size: 10,
        }
    }

    #[test]
    fn renders_counters_histograms_and_labels() {
        let m = Metrics::default();
        m.batch_committed(10, Duration::from_millis(3));
        m.add_leaf_answered(200);
        m.add_leaf_answered(200);
        m.witness_result("w1", "ok");
        let text = m.render(&gauges());
        for line in [
            "quorumlog_batch_leaves_bucket{le=\"16\"} 1\n",
            "quorumlog_batch_leaves_bucket{le=\"4\"} 0\n",
            "quorumlog_commit_latency_seconds_count 1\n",
            "quorumlog_leaves_appended_total 10\n",
            "quorumlog_add_leaf_total{status=\"200\"} 2\n",
            "quorumlog_witness_requests_total{witness=\"w1\",result=\"ok\"} 1\n",
            "quorumlog_raft_term 4\n",
            "quorumlog_tree_size 10\n",
            "# TYPE quorumlog_add_leaf_total counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn witness_names_are_escaped() {
        let m = Metrics::default();
        m.witness_result("evil\"}\nquorumlog_raft_term 99\n\\", "error");
        let text = m.render(&gauges());
        assert!(
            text.contains(
                "quorumlog_witness_requests_total{witness=\"evil\\\"}\\nquorumlog_raft_term 99\\n\\\\\",result=\"error\"} 1\n"
            ),
            "{text}"
        );
        // The injected sample must not appear as a line of its own.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("quorumlog_raft_term 99")),
            "{text}"
        );
    }
}
