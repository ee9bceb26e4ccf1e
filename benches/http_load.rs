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
//! 3. (1) again with the clients spread over all three nodes (followers forward to the
//!    leader over the cluster's gRPC channel).
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

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use quorumlog::merkle::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::bench::{env_or, exchange, get, post_add_leaf, publish_every_second, wanted};
use support::docker::DockerCluster;
use support::sigsum::{Http, Submitter};
use support::{leaf, Cluster, Handle};
use tokio::time::MissedTickBehavior;

/// Submitter keys the pre-signed requests rotate through.
const KEYS: u64 = 4;
/// Leaves in the tree for the inclusion-proof scenarios.
const PROOF_TREE: u64 = 1_000_000;
/// Leaves per admin `Propose` while filling the tree.
const FILL_BATCH: u64 = 128;
/// Concurrent `Propose` calls while filling the tree.
const FILL_PROPOSERS: u64 = 8;
/// Closed-loop clients of the inclusion-proof scenarios.
const PROOF_CLIENTS: usize = 64;

/// What the clients of one scenario saw inside the measurement window.
#[derive(Default)]
struct Tally {
    ok: u64,
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
    /// Latency of each 200.
    latencies: Vec<Duration>,
}

impl Tally {
    fn record(&mut self, answer: Result<(u16, Bytes), String>, latency: Duration) {
        match answer {
            Ok((200, _)) => {
                self.ok += 1;
                self.latencies.push(latency);
            }
            Ok((202, _)) => self.accepted += 1,
            Ok((status, body)) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| {
                    format!("{status} {}", String::from_utf8_lossy(&body).trim())
                });
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.accepted += other.accepted;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }

    /// The `p`-quantile of the 200 latencies, in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        let l = &self.latencies;
        if l.is_empty() {
            return f64::NAN;
        }
        let i = ((l.len() as f64 * p) as usize).min(l.len() - 1);
        l[i].as_secs_f64() * 1e3
    }

    /// Sorts the latencies and prints one line; returns the rate of 200s per second.
    /// (A 202 is reported on its own for add-leaf, as an error for anything else.)
    fn report(&mut self, label: &str, unit: &str, window: Duration, extra: &str) -> f64 {
        self.latencies.sort_unstable();
        let rate = self.ok as f64 / window.as_secs_f64();
        let accepted = if unit == "200/s" {
            format!(", {} 202", self.accepted)
        } else {
            self.errors += self.accepted;
            String::new()
        };
        println!(
            "{label}: {rate:.0} {unit}, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.0} ms{accepted}, {} errors{extra}",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(1.0),
            self.errors,
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
        rate
    }
}

/// Produces the next request of a client (`None` ends the client): client index, address,
/// the client's random state.
type MakeRequest = Arc<dyn Fn(usize, &str, &mut u64) -> Option<Request<Full<Bytes>>> + Send + Sync>;

/// `clients` closed-loop clients (client `i` on `addrs[i % addrs.len()]`) for `warm` +
/// `measure`; answers completing inside the measurement window are tallied.
async fn closed_loop(
    addrs: &[String],
    clients: usize,
    warm: Duration,
    measure: Duration,
    make: MakeRequest,
) -> Tally {
    let start = Instant::now();
    let (from, until) = (start + warm, start + warm + measure);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, stop, make) = (addrs[i % addrs.len()].clone(), stop.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1);
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(req) = make(i, &addr, &mut rng) else {
                    break;
                };
                let t = Instant::now();
                let answer = exchange(&mut conn, &addr, req).await;
                let done = Instant::now();
                if done >= from && done <= until {
                    tally.record(answer, done - t);
                }
            }
            tally
        }));
    }
    tokio::time::sleep_until(until.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("client task"));
    }
    total
}

/// `clients` clients on `addr` sending `rate` requests per second in all for `warm` +
/// `measure`, each on a timer; latency counts from the scheduled send time.
async fn paced(
    addr: &str,
    clients: usize,
    rate: f64,
    warm: Duration,
    measure: Duration,
    bodies: Arc<Pool>,
) -> Tally {
    let period = Duration::from_secs_f64(clients as f64 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let (from, until) = (start + warm, start + warm + measure);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (addr, bodies) = (addr.to_string(), bodies.clone());
        // Staggered, so the clients do not all fire at once.
        let first = start + period.mul_f64(i as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut timer = tokio::time::interval_at(first, period);
            timer.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut conn = None;
            loop {
                let scheduled = timer.tick().await;
                if scheduled >= until {
                    break;
                }
                let Some(body) = bodies.take() else { break };
                let answer = exchange(&mut conn, &addr, post_add_leaf(&addr, body)).await;
                let done = tokio::time::Instant::now();
                if scheduled >= from {
                    tally.record(answer, done - scheduled);
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.expect("client task"));
    }
    total
}

/// Pre-signed add-leaf bodies, each handed out once.
struct Pool {
    bodies: Vec<Bytes>,
    next: AtomicUsize,
}

impl Pool {
    /// Signs `count` distinct requests for messages `first..` on all cores.
    async fn sign(first: u64, count: usize) -> Arc<Pool> {
        let t = Instant::now();
        let bodies = tokio::task::spawn_blocking(move || {
            let keys: Vec<Submitter> = (1..=KEYS as u8).map(Submitter::new).collect();
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let chunk = count.div_ceil(threads).max(1);
            std::thread::scope(|s| {
                let keys = &keys;
                let parts: Vec<_> = (0..count)
                    .step_by(chunk)
                    .map(|lo| {
                        s.spawn(move || {
                            (lo..(lo + chunk).min(count))
                                .map(|i| {
                                    let n = first + i as u64;
                                    let req = keys[(n % KEYS) as usize].request(n);
                                    Bytes::from(req.to_ascii())
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| p.join().expect("signing thread"))
                    .collect::<Vec<_>>()
            })
        })
        .await
        .expect("signing task");
        eprintln!(
            "(signed {count} add-leaf requests in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        Arc::new(Pool {
            bodies,
            next: AtomicUsize::new(0),
        })
    }

    fn take(&self) -> Option<Bytes> {
        self.bodies
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .cloned()
    }

    /// A note if the pool ran dry before the scenario ended.
    fn note(&self) -> &'static str {
        if self.next.load(Ordering::Relaxed) >= self.bodies.len() {
            " (ran out of pre-signed requests: raise QL_LEAVES)"
        } else {
            ""
        }
    }
}

/// Closed-loop add-leaf against `addrs`; returns the rate of 200s.
async fn add_leaf_closed(label: &str, addrs: &[String], clients: usize, pool: Arc<Pool>) -> f64 {
    let (warm, measure) = (Duration::from_secs(3), Duration::from_secs(15));
    let bodies = pool.clone();
    let make: MakeRequest = Arc::new(move |_, addr, _| Some(post_add_leaf(addr, bodies.take()?)));
    let mut tally = closed_loop(addrs, clients, warm, measure, make).await;
    tally.report(
        &format!("add-leaf {label} {clients} clients"),
        "200/s",
        measure,
        pool.note(),
    )
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
    let mut tally = closed_loop(addrs, PROOF_CLIENTS, warm, measure, make).await;
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
        full = add_leaf_closed("leader", &leader_addr, clients, pool).await;
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
        add_leaf_closed("all nodes", &all_addrs, clients, pool).await;
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
    add_leaf_closed("docker leader", &addr, clients, pool).await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
