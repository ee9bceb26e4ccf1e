//! Load generator: quorum-durable leaves per second on a three-node cluster of real
//! `quorumlog serve` processes on loopback, proposing through the leader's admin `Propose`
//! call (group commit batches concurrent requests into Raft entries; an acknowledgement
//! means the leaf is fsynced on a majority and applied on the leader).
//!
//! Run: `cargo bench --bench cluster_load` (prints one line per scenario). Bounded: each
//! scenario runs for a fixed time, then the cluster is killed and its directory removed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{leaf, Cluster};

const SECONDS: u64 = 10;

async fn scenario(name: &str, clients: u64, leaves_per_request: u64) {
    let mut c = Cluster::init(3, 0, |s| s.to_string());
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    let h = c.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (h, stop, acked, latencies) =
            (h.clone(), stop.clone(), acked.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = client << 32;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (n..n + leaves_per_request).map(leaf).collect();
                let t = Instant::now();
                if h.propose(leader, &batch).await.is_ok() {
                    latencies.lock().unwrap().push(t.elapsed());
                    acked.fetch_add(leaves_per_request, Ordering::Relaxed);
                }
                n += leaves_per_request;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let entries = h.status(leader).await.unwrap().last_log_index.unwrap_or(0);
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let total = acked.load(Ordering::Relaxed);
    println!(
        "{name}: {clients} clients x {leaves_per_request} leaves/request: {:.0} leaves/s ({total} leaves in {elapsed:.1} s, {entries} Raft entries), request latency p50 {:?} p99 {:?}",
        total as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        scenario("single leaves", 256, 1).await;
        scenario("small batches", 64, 16).await;
        scenario("large batches", 16, 256).await;
    });
}
