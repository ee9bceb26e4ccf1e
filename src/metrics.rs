//! The node's metrics, rendered in the Prometheus text format by the ops listener. Each
//! part of the node records into one shared [`Metrics`]; Raft gauges are read at scrape
//! time from the Raft node itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A histogram with fixed bucket bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths of the unit, so it fits an integer atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];

/// Everything the node counts.
pub struct Metrics {
    /// Leaves newly appended through this node's group commit.
    pub leaves_appended: AtomicU64,
    /// Leaves per Raft entry.
    pub batch_leaves: Histogram,
    /// Seconds from proposing a batch to its commit and apply on the leader.
    pub commit_latency: Histogram,
    /// 1 while this node holds the signing key and leads, so it publishes.
    pub publishing: AtomicU64,
    /// 1 while this node holds the signing key.
    pub signing_key_loaded: AtomicU64,
    add_leaf: Mutex<BTreeMap<u16, u64>>,
    witness: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            leaves_appended: AtomicU64::new(0),
            batch_leaves: Histogram::new(BATCH_BOUNDS),
            commit_latency: Histogram::new(LATENCY_BOUNDS),
            publishing: AtomicU64::new(0),
            signing_key_loaded: AtomicU64::new(0),
            add_leaf: Mutex::default(),
            witness: Mutex::default(),
        }
    }
}

/// Raft and replicated state read at scrape time.
pub struct RaftGauges {
    /// Size of the published head this node serves (0 before the first).
    pub published_size: u64,
    /// Size of the latest signed head in the replicated state (0 before the first).
    pub signed_size: u64,
    /// Current term.
    pub term: u64,
    /// Current leader id (0 if none is known).
    pub leader: u64,
    /// Committed log index.
    pub committed: u64,
    /// Applied log index.
    pub applied: u64,
    /// 1 if this node is the leader.
    pub is_leader: bool,
    /// Leaves in this node's applied tree.
    pub tree_size: u64,
}

impl Metrics {
    /// Counts one add-leaf answer with HTTP status `status`.
    pub fn add_leaf_answered(&self, status: u16) {
        *self
            .add_leaf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// Counts one witness request outcome (`ok`, `conflict`, `error`).
    pub fn witness_result(&self, witness: &str, result: &'static str) {
        *self
            .witness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((witness.to_string(), result))
            .or_default() += 1;
    }

    /// Records one committed batch.
    pub fn batch_committed(&self, leaves: usize, latency: Duration) {
        self.batch_leaves.observe(leaves as f64);
        self.commit_latency.observe(latency.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self, raft: &RaftGauges) -> String {
        let mut o = String::with_capacity(4096);
        let gauge = |o: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            &mut o,
            "quorumlog_leaves_appended_total",
            "Leaves appended through this node's group commit.",
            "counter",
            self.leaves_appended.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "quorumlog_tree_size",
            "Leaves in this node's applied tree.",
            "gauge",
            raft.tree_size,
        );
        gauge(
            &mut o,
            "quorumlog_published_size",
            "Size of the published (cosigned) tree head this node serves.",
            "gauge",
            raft.published_size,
        );
        gauge(
            &mut o,
            "quorumlog_signed_size",
            "Size of the latest signed tree head in the replicated state.",
            "gauge",
            raft.signed_size,
        );
        gauge(
            &mut o,
            "quorumlog_publishing",
            "1 if this node leads and holds the signing key, so it publishes tree heads.",
            "gauge",
            self.publishing.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "quorumlog_signing_key_loaded",
            "1 if this node holds the log's signing key.",
            "gauge",
            self.signing_key_loaded.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "quorumlog_raft_term",
            "Current Raft term.",
            "gauge",
            raft.term,
        );
        gauge(
            &mut o,
            "quorumlog_raft_leader",
            "Id of the current leader (0: none known).",
            "gauge",
            raft.leader,
        );
        gauge(
            &mut o,
            "quorumlog_raft_is_leader",
            "1 if this node is the leader.",
            "gauge",
            u64::from(raft.is_leader),
        );
        gauge(
            &mut o,
            "quorumlog_raft_commit_index",
            "Committed Raft log index.",
            "gauge",
            raft.committed,
        );
        gauge(
            &mut o,
            "quorumlog_raft_applied_index",
            "Applied Raft log index.",
            "gauge",
            raft.applied,
        );
        self.batch_leaves.render(
            &mut o,
            "quorumlog_batch_leaves",
            "Leaves per Raft entry proposed by this node.",
        );
        self.commit_latency.render(
            &mut o,
            "quorumlog_commit_latency_seconds",
            "Time from proposing a batch to its commit and apply.",
        );
        let _ = writeln!(
            o,
            "# HELP quorumlog_add_leaf_total add-leaf answers by HTTP status.\n# TYPE quorumlog_add_leaf_total counter"
        );
        for (status, n) in self
            .add_leaf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(o, "quorumlog_add_leaf_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP quorumlog_witness_requests_total add-checkpoint requests by witness and result.\n# TYPE quorumlog_witness_requests_total counter"
        );
        for ((w, r), n) in self
            .witness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let w = w.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                o,
                "quorumlog_witness_requests_total{{witness=\"{w}\",result=\"{r}\"}} {n}"
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_labels() {
        let m = Metrics::default();
        m.batch_committed(10, Duration::from_millis(3));
        m.add_leaf_answered(200);
        m.add_leaf_answered(200);
        m.witness_result("w\"1", "ok");
        let text = m.render(&RaftGauges {
            term: 4,
            leader: 2,
            committed: 9,
            applied: 8,
            is_leader: false,
            tree_size: 10,
            published_size: 9,
            signed_size: 10,
        });
        assert!(text.contains("quorumlog_batch_leaves_bucket{le=\"16\"} 1"));
        assert!(text.contains("quorumlog_batch_leaves_bucket{le=\"4\"} 0"));
        assert!(text.contains("quorumlog_commit_latency_seconds_count 1"));
        assert!(text.contains("quorumlog_add_leaf_total{status=\"200\"} 2"));
        assert!(
            text.contains("quorumlog_witness_requests_total{witness=\"w\\\"1\",result=\"ok\"} 1")
        );
        assert!(text.contains("quorumlog_raft_term 4\n"));
        assert!(text.contains("quorumlog_tree_size 10\n"));
    }
}
