//! Load generator for the public Sigsum HTTP API of a three-node cluster of real
//! `quorumlog serve` processes on loopback (publication every second, default group
//! commit), with the load generator in a fourth process on the same machine.
//!
//! It measures, printing one line per scenario (nothing is asserted about time):
//!
//! 1. `add-leaf` throughput with N closed-loop clients (default 256, `QL_CLIENTS`), each
//!    on its own HTTP/1.1 keep-alive connection to the leader with one request at a time.
//!    Requests are distinct and signed before the clock starts (`QL_LEAVES` of them,
//!    default 400,000, from four submitter keys). 200 means committed by a majority and
//!    applied; 202 (commit slower than the configured wait) is counted separately.
//! 2. `add-leaf` latency at half the throughput of (1): the same clients each pace their
//!    requests on a timer; latency is taken from the scheduled send time, so a stalled
//!    server is not hidden by clients that stop sending.
//! 3. (1) again with the clients spread over all three nodes (followers check and forward
//!    to the leader over the cluster's gRPC channel).
//!
//! Every add-leaf scenario on loopback also prints the CPU (user + system) each node process
//! spent per added leaf inside the window, the leader's first.
//! 4. `get-inclusion-proof` at a tree of 1,000,000 leaves (filled through the admin
//!    `Propose` call in batches of 1024), 64 closed-loop clients asking for random leaves,
//!    once against the leader and once spread over all nodes.
//! 5. `docker`: with the loopback cluster stopped, the Docker cluster of
//!    `cluster/docker.sh` (three containers and a witness container): the time from `up` to
//!    a cosigned head on every node (images already built), then (1) against its leader
//!    through the port published on 127.0.0.1.
//!
//! Run: `cargo bench --bench http_load` (about four minutes). `QL_SCENARIOS` picks
//! scenarios (`leader,half,all,proofs,docker`); with `QL_FULL_RATE=<200/s>` the half-load
//! run skips measuring the full rate first. The cluster processes are killed, the
//! containers and volumes removed and their directories deleted when the benchmark ends.

#[path = "../tests/support/mod.rs"]
mod support;

use quorumlog::merkle::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::bench::{block_on, env_or, get, post_add_leaf, publish_every_second, wanted};
use support::closed_loop::{closed_loop, paced, MakeRequest, Pool};
use support::docker::DockerCluster;
use support::sigsum::Http;
use support::{leaf, Cluster, Handle};
/// Leaves in the tree for the inclusion-proof scenarios.
const PROOF_TREE: u64 = 1_000_000;
/// Leaves per admin `Propose` while filling the tree.
const FILL_BATCH: u64 = 128;
/// Concurrent `Propose` calls while filling the tree.
const FILL_PROPOSERS: u64 = 8;
/// Closed-loop clients of the inclusion-proof scenarios.
const PROOF_CLIENTS: usize = 64;

/// Closed-loop add-leaf against `addrs`; returns the rate of 200s. With the nodes'
/// process ids (`nodes`, leader first) it also prints the CPU each spent per added leaf.
async fn add_leaf_closed(
    label: &str,
    addrs: &[String],
    clients: usize,
    pool: Arc<Pool>,
    nodes: &[u32],
) -> f64 {
    let (warm, measure) = (Duration::from_secs(3), Duration::from_secs(15));
    let bodies = pool.clone();
    let make: MakeRequest = Arc::new(move |_, addr, _| Some(post_add_leaf(addr, bodies.take()?)));
    let mut tally = closed_loop(addrs, clients, warm, measure, make, nodes).await;
    let per_leaf = |cpu: f64| cpu * 1e6 / tally.ok.max(1) as f64;
    let cpu = match tally.cpu.split_first() {
        Some((leader, followers)) => format!(
            ", CPU per leaf: leader {:.0} us, followers {} us",
            per_leaf(*leader),
            followers
                .iter()
                .map(|&c| format!("{:.0}", per_leaf(c)))
                .collect::<Vec<_>>()
                .join("/")
        ),
        None => String::new(),
    };
    tally.report(
        &format!("add-leaf {label} {clients} clients"),
        "200/s",
        measure,
        &format!("{cpu}{}", pool.note()),
    )
}

/// Process ids of the cluster's nodes, the leader's first.
fn pids_leader_first(c: &Cluster, leader: u64) -> Vec<u32> {
    std::iter::once(leader)
        .chain((1..=3).filter(|&id| id != leader))
        .filter_map(|id| c.pid(id))
        .collect()
}

/// The leader's tree size, from its admin status.
async fn tree_size(c: &Cluster, id: u64) -> u64 {
    c.app(id).await.expect("status").tree_size
}

/// Fills the tree to at least `target` leaves with synthetic leaves; their leaf hashes.
async fn fill(c: &Cluster, leader: u64, target: u64) -> Vec<Hash> {
    let have = tree_size(c, leader).await;
    // At least some synthetic leaves, so there is always something to prove.
    let batches = target
        .saturating_sub(have)
        .max(64 * FILL_BATCH)
        .div_ceil(FILL_BATCH);
    let base = 1u64 << 40;
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..FILL_PROPOSERS {
        let (h, next) = (c.handle(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut retries = 0u64;
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed) as u64;
                if b >= batches {
                    return retries;
                }
                let first = base + b * FILL_BATCH;
                let batch: Vec<u64> = (first..first + FILL_BATCH).collect();
                let mut tries = 0;
                // add-leaf is idempotent: a batch is sent again whole until all answer 200.
                while let Err(e) = h.add(leader, &batch).await {
                    retries += 1;
                    tries += 1;
                    assert!(tries < 20, "filling the tree: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.expect("proposer");
    }
    let secs = t.elapsed().as_secs_f64();
    let added = batches * FILL_BATCH;
    println!(
        "fill: {added} leaves ({have} already in the tree) by {FILL_PROPOSERS} proposers x {FILL_BATCH} leaves in {secs:.1} s ({:.0} leaves/s, {retries} retries)",
        added as f64 / secs
    );
    tokio::task::spawn_blocking(move || {
        (base..base + added)
            .map(|n| leaf(n).leaf_hash())
            .collect::<Vec<_>>()
    })
    .await
    .expect("hashing")
}

/// The smallest published head size over `ids`, once each is at least `size`.
async fn published_at_least(c: &Handle, http: &Http, ids: &[u64], size: u64) -> u64 {
    c.wait_until(
        || format!("nodes {ids:?} to publish a head of size >= {size}"),
        120,
        || async {
            let mut min = u64::MAX;
            for &id in ids {
                min = min.min(http.tree_head(&c.api_addr(id)).await?.head.size);
            }
            (min >= size).then_some(min)
        },
    )
    .await
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn proofs(label: &str, addrs: &[String], size: u64, hashes: Arc<Vec<Hash>>) {
    let (warm, measure) = (Duration::from_secs(1), Duration::from_secs(10));
    let make: MakeRequest = Arc::new(move |_, addr, rng| {
        let h = hashes[(splitmix(rng) % hashes.len() as u64) as usize];
        Some(get(
            addr,
            format!("/get-inclusion-proof/{size}/{}", h.to_hex()),
        ))
    });
    let mut tally = closed_loop(addrs, PROOF_CLIENTS, warm, measure, make, &[]).await;
    tally.report(
        &format!("inclusion proof at {size} {label} {PROOF_CLIENTS} clients"),
        "proofs/s",
        measure,
        "",
    );
}

async fn run() {
    let clients = env_or("QL_CLIENTS", 256).max(1);
    let leaves = env_or("QL_LEAVES", 400_000);
    let http = Http::default();

    let mut c = Cluster::init(3, 0, publish_every_second);
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    published_at_least(&c, &http, &[1, 2, 3], 0).await;
    let leader_addr = vec![c.api_addr(leader)];
    let all_addrs: Vec<String> = (1..=3).map(|id| c.api_addr(id)).collect();
    eprintln!("(cluster up, leader is node {leader})");

    // 1. Closed loop against the leader.
    let mut full = env_or("QL_FULL_RATE", 0) as f64;
    if wanted("leader") || full == 0.0 {
        let pool = Pool::sign(0, leaves).await;
        let pids = pids_leader_first(&c, leader);
        full = add_leaf_closed("leader", &leader_addr, clients, pool, &pids).await;
    }

    // 2. Half that rate, paced.
    if wanted("half") {
        let half = (full / 2.0).max(1.0);
        let (warm, measure) = (Duration::from_secs(1), Duration::from_secs(10));
        let needed = (half * 1.3 * (warm + measure).as_secs_f64()) as usize + clients;
        let pool = Pool::sign(1 << 32, needed).await;
        let mut tally = paced(&leader_addr[0], clients, half, warm, measure, pool.clone()).await;
        let achieved = tally.ok + tally.accepted + tally.errors;
        tally.report(
            &format!("add-leaf leader paced at {half:.0}/s by {clients} clients"),
            "200/s",
            measure,
            &format!(
                ", {:.0} requests/s sent (latency from scheduled send){}",
                achieved as f64 / measure.as_secs_f64(),
                pool.note()
            ),
        );
    }

    // 3. Closed loop spread over all nodes.
    if wanted("all") {
        let spread_leaves = leaves.max((full * 18.0 * 1.5) as usize);
        let pool = Pool::sign(2 << 32, spread_leaves).await;
        let pids = pids_leader_first(&c, leader);
        add_leaf_closed("all nodes", &all_addrs, clients, pool, &pids).await;
    }

    // 4. Inclusion proofs at 1M leaves.
    if wanted("proofs") {
        let leader = c.leader(&[1, 2, 3]).await;
        let leader_addr = vec![c.api_addr(leader)];
        let hashes = Arc::new(fill(&c, leader, PROOF_TREE).await);
        let t = Instant::now();
        let size = published_at_least(&c, &http, &[1, 2, 3], PROOF_TREE).await;
        eprintln!(
            "(all nodes published a head >= {PROOF_TREE} {:.1} s after the fill)",
            t.elapsed().as_secs_f64()
        );
        proofs("leader", &leader_addr, size, hashes.clone()).await;
        proofs("all nodes", &all_addrs, size, hashes).await;
    }

    // 5. The Docker cluster, alone on the machine.
    drop(c);
    if wanted("docker") {
        docker(clients, leaves).await;
    }
}

/// `up` of the Docker cluster, then the closed loop of (1) against its leader.
async fn docker(clients: usize, leaves: usize) {
    let dc = std::sync::Arc::new(DockerCluster::new("bench", 63));
    let t = Instant::now();
    let up = dc.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        up.run_with(std::path::Path::new(support::BIN), &["up"])
    })
    .await
    .expect("docker.sh up");
    assert!(ok, "cluster/docker.sh up failed:\n{out}");
    println!(
        "docker: up to a cosigned head on every node in {:.1} s (images already built)",
        t.elapsed().as_secs_f64()
    );
    let leader = dc.status().expect("status").leader.expect("a leader");
    let addr = vec![dc.handle().api_addr(leader)];
    let pool = Pool::sign(3 << 32, leaves).await;
    add_leaf_closed("docker leader", &addr, clients, pool, &[]).await;
}

fn main() {
    block_on(run());
}
