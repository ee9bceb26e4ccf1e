//! How long a three-node cluster of real `quorumlog serve` processes on loopback stops
//! answering or publishing when its leader changes. Publication runs every second
//! (witness wait one second), everything else is default, including the election
//! timeouts; the load generator is a fourth process on the same machine.
//!
//! Two measurements, one line each (nothing is asserted about time):
//!
//! 1. **Write stall during a planned transfer** (custody `handoff`: the signing key moves
//!    with leadership). `QL_CLIENTS` (default 64) closed-loop clients send pre-signed
//!    `add-leaf` requests, each on its own HTTP/1.1 keep-alive connection, spread
//!    round-robin over all three nodes (followers forward to the leader). The time of every
//!    200 is recorded. Each trial lets the load run steadily for a second, moves leadership
//!    to the next node with the admin `TransferLeader` call, and waits until the new
//!    leader has published a larger head. The stall of a trial is the longest time without
//!    any 200 (over all clients) inside [transfer start - 0.5 s, transfer end + 1 s]. The
//!    duration of the transfer call itself is reported too.
//! 2. **Failover to publication** (custody `file`: every node can sign). With a light
//!    paced load growing the tree, each trial notes the largest head any node serves,
//!    SIGKILLs the leader and polls the two survivors every 20 ms until one serves a
//!    larger head; then it restarts the killed node and waits until all three serve the
//!    same head before the next trial.
//!
//! Run: `cargo bench --bench failover` (about four minutes on two cores). `QL_TRIALS`
//! sets the number of trials of each measurement (default 20), `QL_SCENARIOS` picks
//! measurements (`transfer,failover`), `QL_LEAVES` the number of requests signed before
//! measurement 1 (default 400,000; if they run out, clients sign the rest as they go and
//! the output says so). The cluster processes are killed and their directory removed when
//! the benchmark ends.

#[path = "../tests/support/mod.rs"]
mod support;

use hyper::body::Bytes;
use quorumlog_raft::network::pb::TransferLeaderRequest;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::bench::{
    block_on, env_or, exchange, on_all_cores, post_add_leaf, publish_every_second, wanted, Sender,
};
use support::sigsum::{Http, Submitter};
use support::Cluster;

/// Submitter keys the requests of measurement 1 rotate through.
const KEYS: u8 = 4;
/// Submitter key of the light load of measurement 2.
const LIGHT_KEY: u8 = 9;
/// Clients of the light load, and the pause each makes after an answer.
const LIGHT_CLIENTS: usize = 4;
const LIGHT_PAUSE: Duration = Duration::from_millis(20);
/// How often the failover measurement asks the survivors for their head.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for one HTTP exchange of the load.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

fn custody(mode: &str) -> [String; 2] {
    ["--custody".to_string(), mode.to_string()]
}

/// POSTs `body` to `/add-leaf` over `conn`, connecting first when there is none. A
/// transport error or a timeout drops the connection, so the next call opens a new one.
async fn add_leaf(conn: &mut Option<Sender>, addr: &str, body: Bytes) -> Result<u16, String> {
    match tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        exchange(conn, addr, post_add_leaf(addr, body)),
    )
    .await
    {
        Ok(r) => r.map(|(status, _)| status),
        Err(_) => {
            *conn = None;
            Err(format!("no answer from {addr} in {EXCHANGE_TIMEOUT:?}"))
        }
    }
}

/// Distinct signed add-leaf bodies: a pre-signed stock handed out in order, then bodies
/// signed on demand once the stock is used up.
struct Bodies {
    keys: Vec<Submitter>,
    stock: Vec<Bytes>,
    next: AtomicUsize,
}

impl Bodies {
    fn body(keys: &[Submitter], n: u64) -> Bytes {
        let key = &keys[(n % keys.len() as u64) as usize];
        Bytes::from(key.request(n).to_ascii())
    }

    /// Signs `count` bodies on all cores, from keys with seeds `seeds`.
    async fn sign(seeds: std::ops::RangeInclusive<u8>, count: usize) -> Arc<Bodies> {
        let t = Instant::now();
        let (keys, stock) = tokio::task::spawn_blocking(move || {
            let keys: Vec<Submitter> = seeds.map(Submitter::new).collect();
            let stock = on_all_cores(count, |n| Bodies::body(&keys, n as u64));
            (keys, stock)
        })
        .await
        .expect("signing task");
        if count > 0 {
            eprintln!(
                "(signed {count} add-leaf requests in {:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
        Arc::new(Bodies {
            keys,
            stock,
            next: AtomicUsize::new(0),
        })
    }

    fn take(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.stock.get(n) {
            Some(b) => b.clone(),
            None => Bodies::body(&self.keys, n as u64),
        }
    }

    /// How many bodies had to be signed during the run.
    fn signed_late(&self) -> usize {
        self.next
            .load(Ordering::Relaxed)
            .saturating_sub(self.stock.len())
    }
}

/// What the clients of a load saw.
#[derive(Default)]
struct Seen {
    /// When each 200 arrived.
    oks: Vec<Instant>,
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Seen {
    fn record(&mut self, answer: Result<u16, String>) {
        match answer {
            Ok(200) => self.oks.push(Instant::now()),
            Ok(202) => self.accepted += 1,
            Ok(status) => {
                self.errors += 1;
                self.first_error
                    .get_or_insert_with(|| format!("HTTP status {status}"));
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Seen) {
        self.oks.extend(other.oks);
        self.accepted += other.accepted;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Clients sending add-leaf requests until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    oks: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
    started: Instant,
}

impl Load {
    /// `clients` clients; client `i` starts on `addrs[i % addrs.len()]`. With `pause`
    /// `None` a client sends its next request as soon as the answer is in and stays on its
    /// node; otherwise it waits `pause` after each answer and moves on to the next node
    /// after a failure (as a client of a log with several front ends would).
    fn start(
        addrs: Vec<String>,
        clients: usize,
        pause: Option<Duration>,
        bodies: Arc<Bodies>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let oks = Arc::new(AtomicU64::new(0));
        let addrs = Arc::new(addrs);
        let tasks = (0..clients)
            .map(|i| {
                let (addrs, stop, oks, bodies) =
                    (addrs.clone(), stop.clone(), oks.clone(), bodies.clone());
                tokio::spawn(async move {
                    let mut seen = Seen::default();
                    let mut node = i % addrs.len();
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        let answer = add_leaf(&mut conn, &addrs[node], bodies.take()).await;
                        let ok = matches!(answer, Ok(200 | 202));
                        if matches!(answer, Ok(200)) {
                            oks.fetch_add(1, Ordering::Relaxed);
                        }
                        seen.record(answer);
                        if let Some(pause) = pause {
                            if !ok {
                                node = (node + 1) % addrs.len();
                                conn = None;
                            }
                            tokio::time::sleep(pause).await;
                        } else if !ok {
                            // No busy loop on a node that refuses at once.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    seen
                })
            })
            .collect();
        Load {
            stop,
            oks,
            tasks,
            started: Instant::now(),
        }
    }

    fn oks(&self) -> u64 {
        self.oks.load(Ordering::Relaxed)
    }

    /// Stops the clients; everything they saw, the 200s in time order, and the run time.
    async fn finish(self) -> (Seen, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for t in self.tasks {
            all.merge(t.await.expect("load client"));
        }
        all.oks.sort_unstable();
        (all, self.started.elapsed())
    }
}

/// The longest stretch of `[from, to]` with no element of `sorted` in it.
fn longest_gap(sorted: &[Instant], from: Instant, to: Instant) -> Duration {
    let first = sorted.partition_point(|t| *t <= from);
    let last = sorted.partition_point(|t| *t < to);
    let mut prev = from;
    let mut longest = Duration::ZERO;
    for &t in &sorted[first..last] {
        longest = longest.max(t - prev);
        prev = t;
    }
    longest.max(to - prev)
}

/// "min / median / max" of `values` (in milliseconds, or seconds with `secs`).
fn spread(values: &[Duration], secs: bool) -> String {
    if values.is_empty() {
        return "no data".to_string();
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    let show = |d: Duration| {
        if secs {
            format!("{:.2}", d.as_secs_f64())
        } else {
            format!("{:.0}", d.as_secs_f64() * 1e3)
        }
    };
    let unit = if secs { "s" } else { "ms" };
    format!(
        "min {} / median {} / max {} {unit}",
        show(v[0]),
        show(median),
        show(v[v.len() - 1])
    )
}

/// The size of the head node `id` serves (`None` if it serves none or does not answer).
async fn published(c: &Cluster, http: &Http, id: u64) -> Option<u64> {
    http.tree_head(&c.api_addr(id)).await.map(|h| h.head.size)
}

/// Waits until every node in `ids` serves a head.
async fn all_publish(c: &Cluster, http: &Http, ids: &[u64]) {
    c.wait_for("every node to serve a tree head", 60, || async {
        for &id in ids {
            if published(c, http, id).await.is_none() {
                return false;
            }
        }
        true
    })
    .await;
}

/// Polls every `POLL` until `probe` yields a value or `limit` passes.
async fn poll_until<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One planned transfer: its window and how long its parts took.
struct Transfer {
    from: u64,
    to: u64,
    start: Instant,
    call: Duration,
    /// From the end of the call until the new leader served a larger head.
    publish: Duration,
}

/// Measurement 1.
async fn transfer_stall(trials: usize) {
    let clients = env_or("QL_CLIENTS", 64).max(1);
    let leaves = env_or("QL_LEAVES", 400_000);
    let http = Http::default();
    let mut c = Cluster::init_with(3, 0, &custody("handoff"), publish_every_second);
    for id in 1..=3 {
        c.start(id);
    }
    c.leader(&[1, 2, 3]).await;
    all_publish(&c, &http, &[1, 2, 3]).await;
    let bodies = Bodies::sign(1..=KEYS, leaves).await;
    let addrs: Vec<String> = (1..=3).map(|id| c.api_addr(id)).collect();
    let load = Load::start(addrs, clients, None, bodies.clone());
    eprintln!("(transfer: cluster up, {clients} clients running)");

    let mut done = Vec::new();
    let mut refused = Vec::new();
    // The earliest start of the next trial's steady second, so windows never overlap.
    let mut next = Instant::now() + Duration::from_secs(1);
    for trial in 0..trials {
        let from = c.leader(&[1, 2, 3]).await;
        let to = from % 3 + 1;
        tokio::time::sleep_until(next.max(Instant::now()).into()).await;
        let before = load.oks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if load.oks() == before {
            eprintln!("(trial {trial}: no 200 in the steady second before the transfer)");
        }
        let start = Instant::now();
        let mut req = tonic::Request::new(TransferLeaderRequest { to });
        req.set_timeout(Duration::from_secs(30));
        let reply = c.admin(from).transfer_leader(req).await;
        let end = Instant::now();
        next = end + Duration::from_millis(1500);
        if let Err(e) = reply {
            refused.push(format!("{from}->{to}: {}", e.message()));
            continue;
        }
        let p = published(&c, &http, to).await.unwrap_or(0);
        let grown = poll_until(Duration::from_secs(30), || async {
            published(&c, &http, to).await.filter(|&s| s > p)
        })
        .await;
        if grown.is_none() {
            panic!(
                "trial {trial}: node {to} did not publish within 30 s of leading\n{}",
                c.logs()
            );
        }
        done.push(Transfer {
            from,
            to,
            start,
            call: end - start,
            publish: end.elapsed(),
        });
    }
    tokio::time::sleep_until(next.max(Instant::now()).into()).await;
    let (seen, ran) = load.finish().await;

    let mut stalls = Vec::new();
    // The same measure over the transfer-free stretch before each window (at least a
    // second long), for comparison.
    let mut quiet = Vec::new();
    let mut quiet_from = None;
    for (i, t) in done.iter().enumerate() {
        let from = t.start - Duration::from_millis(500);
        let to = t.start + t.call + Duration::from_secs(1);
        let stall = longest_gap(&seen.oks, from, to);
        if let Some(q) = quiet_from.filter(|&q| q < from) {
            quiet.push(longest_gap(&seen.oks, q, from));
        }
        quiet_from = Some(to);
        eprintln!(
            "(transfer {i}: {}->{}, call {:.0} ms, stall {:.0} ms, new leader published {:.2} s after the call)",
            t.from,
            t.to,
            t.call.as_secs_f64() * 1e3,
            stall.as_secs_f64() * 1e3,
            t.publish.as_secs_f64()
        );
        stalls.push(stall);
    }
    let calls: Vec<Duration> = done.iter().map(|t| t.call).collect();
    let publishes: Vec<Duration> = done.iter().map(|t| t.publish).collect();
    println!(
        "write stall during a planned transfer (custody handoff, publish every 1 s, {clients} clients over 3 nodes, {} transfers): {} (target: median <= 300 ms); transfer call {}",
        done.len(),
        spread(&stalls, false),
        spread(&calls, false),
    );
    println!(
        "  new leader's first larger head {} after the call; load {:.0} 200/s, {} 202, {} errors over {:.0} s",
        spread(&publishes, true),
        seen.oks.len() as f64 / ran.as_secs_f64(),
        seen.accepted,
        seen.errors,
        ran.as_secs_f64()
    );
    println!(
        "  without a transfer (the stretch between two windows, 1 s or more): longest gap {}",
        spread(&quiet, false)
    );
    if let Some(e) = &seen.first_error {
        println!("  first error: {e}");
    }
    if !refused.is_empty() {
        println!(
            "  {} transfers refused (not counted): {}",
            refused.len(),
            refused.join("; ")
        );
    }
    let late = bodies.signed_late();
    if late > 0 {
        println!("  {late} requests were signed during the run (raise QL_LEAVES)");
    }
}

/// Measurement 2.
async fn failover_publish(trials: usize) {
    let http = Http::default();
    let mut c = Cluster::init_with(3, 0, &custody("file"), publish_every_second);
    for id in 1..=3 {
        c.start(id);
    }
    c.leader(&[1, 2, 3]).await;
    all_publish(&c, &http, &[1, 2, 3]).await;
    let addrs: Vec<String> = (1..=3).map(|id| c.api_addr(id)).collect();
    let load = Load::start(
        addrs,
        LIGHT_CLIENTS,
        Some(LIGHT_PAUSE),
        Bodies::sign(LIGHT_KEY..=LIGHT_KEY, 0).await,
    );
    eprintln!("(failover: cluster up, light load running)");

    let mut to_publish = Vec::new();
    let mut to_leader = Vec::new();
    let mut rejoin = Vec::new();
    let mut missed = 0;
    for trial in 0..trials {
        let leader = c.leader(&[1, 2, 3]).await;
        let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        // Let the tree grow, and kill at a different point of the publication cycle in
        // each trial.
        let phase = Duration::from_millis(1000 + (trial as u64 * 370) % 1000);
        tokio::time::sleep(phase).await;
        let mut before = 0;
        for id in 1..=3 {
            before = before.max(published(&c, &http, id).await.unwrap_or(0));
        }
        let killed = Instant::now();
        c.kill(leader);
        let mut elected = None;
        let deadline = killed + Duration::from_secs(60);
        let grown = 'poll: loop {
            for &id in &survivors {
                if published(&c, &http, id).await.is_some_and(|s| s > before) {
                    break 'poll Some((id, killed.elapsed()));
                }
            }
            if elected.is_none() {
                for &id in &survivors {
                    let l = c.status(id).await.ok().and_then(|s| s.leader);
                    if l.is_some_and(|l| l != leader) {
                        elected = Some(killed.elapsed());
                        break;
                    }
                }
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(POLL).await;
        };
        match grown {
            Some((id, took)) => {
                to_publish.push(took);
                to_leader.extend(elected);
                eprintln!(
                    "(failover {trial}: killed {leader}, node {id} served a larger head after {:.2} s, new leader known after {})",
                    took.as_secs_f64(),
                    elected.map_or("-".to_string(), |e| format!("{:.2} s", e.as_secs_f64()))
                );
            }
            None => {
                missed += 1;
                eprintln!("(failover {trial}: no larger head within 60 s of killing {leader})");
            }
        }
        let restarted = Instant::now();
        c.start(leader);
        c.wait_for(
            &format!("node {leader} to serve the same head as the others"),
            120,
            || async {
                let mut heads = Vec::new();
                for id in 1..=3 {
                    match http.tree_head(&c.api_addr(id)).await {
                        Some(h) => heads.push(h),
                        None => return false,
                    }
                }
                heads.iter().all(|h| *h == heads[0])
            },
        )
        .await;
        rejoin.push(restarted.elapsed());
    }
    let (seen, ran) = load.finish().await;
    println!(
        "failover to publication (custody file, publish every 1 s, default election timeouts, leader SIGKILLed, {} trials): {} (target: median <= 3 s)",
        to_publish.len(),
        spread(&to_publish, false),
    );
    println!(
        "  new leader known (survivors' status, polled with the heads) {}; killed node back and serving the same head {}; light load {:.0} 200/s, {} errors",
        spread(&to_leader, false),
        spread(&rejoin, true),
        seen.oks.len() as f64 / ran.as_secs_f64(),
        seen.errors
    );
    if missed > 0 {
        println!("  {missed} trials saw no larger head within 60 s (not counted)");
    }
}

async fn run() {
    let trials = env_or("QL_TRIALS", 20).max(1);
    if wanted("transfer") {
        transfer_stall(trials).await;
    }
    if wanted("failover") {
        failover_publish(trials).await;
    }
}

fn main() {
    block_on(run());
}
