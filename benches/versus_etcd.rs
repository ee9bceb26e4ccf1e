//! Quorumlog and etcd side by side, one after the other in one run on one machine.
//!
//! Both are three nodes on loopback, each node fsyncing to the same disk:
//! - etcd: Debian's `etcd-server`, driven through its JSON API (`POST /v3/kv/put`, one
//!   distinct key and one 128-byte value per write; a put is answered once a majority has
//!   committed it);
//! - Quorumlog: `quorumlog serve` with the default configuration (publication every
//!   second), driven through `POST /add-leaf` (one pre-signed 128-byte leaf per request; 200
//!   once a majority has committed and the leader applied it).
//!
//! The same closed-loop load generator (`tests/support/closed_loop.rs`) drives both: `QL_CLIENTS`
//! clients (default 256), spread over the three nodes, each on its own HTTP/1.1 keep-alive
//! connection with one request at a time, 3 s of warm-up and 15 s measured. It prints one
//! line per system (throughput, latency quantiles, CPU per write of every node) and the
//! ratio. If `etcdctl` is installed (Debian's `etcd-client`), etcd's own gRPC benchmark
//! `etcdctl check perf --load=l` runs too, as a reference for what etcd does without the
//! JSON gateway. Nothing is asserted.
//!
//! Run: `cargo bench --bench versus_etcd` (about two minutes; `QL_SCENARIOS=etcd,quorumlog`
//! leaves out `etcdctl`). Every process is killed and every directory removed at the end.

#[path = "../tests/support/mod.rs"]
mod support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::bench::{
    block_on, env_or, exchange, get, post_add_leaf, publish_every_second, wanted,
};
use support::closed_loop::{closed_loop, MakeRequest, Pool, Tally};
use support::{free_base, Cluster};

const WARM: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(15);

/// Three etcd members on loopback; killed (and their data removed) when dropped.
struct Etcd {
    procs: Vec<Child>,
    client_addrs: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = free_base(6);
        let peer = |i: u16| format!("http://127.0.0.1:{}", base + 3 + i);
        let client = |i: u16| format!("127.0.0.1:{}", base + i);
        let initial: Vec<String> = (0..3).map(|i| format!("e{i}={}", peer(i))).collect();
        let mut procs = Vec::new();
        for i in 0..3u16 {
            let log = std::fs::File::create(dir.path().join(format!("e{i}.log"))).expect("log");
            let url = format!("http://{}", client(i));
            let child = Command::new("etcd")
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "quorumlog-bench"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "starting etcd ({e}): install Debian's etcd-server (cluster/setup-host.sh)"
                    )
                });
            procs.push(child);
        }
        Etcd {
            procs,
            client_addrs: (0..3).map(client).collect(),
            _dir: dir,
        }
    }

    /// Waits until every member reports itself healthy (a leader exists and it can serve).
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for addr in &self.client_addrs {
            let mut conn = None;
            loop {
                let answer = exchange(&mut conn, addr, get(addr, "/health".into())).await;
                if matches!(&answer, Ok((200, body)) if body.windows(6).any(|w| w == b"\"true\"")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd at {addr} not healthy after 60 s: {answer:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Child::id).collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// `POST /v3/kv/put` of `key` with a 128-byte value.
fn put(addr: &str, key: &str, value: &str) -> Request<Full<Bytes>> {
    let body = format!(
        "{{\"key\":\"{}\",\"value\":\"{value}\"}}",
        B64.encode(key.as_bytes())
    );
    Request::builder()
        .method(Method::POST)
        .uri("/v3/kv/put")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

/// CPU per write of each process, as "a/b/c us".
fn cpu_per_write(t: &Tally) -> String {
    t.cpu
        .iter()
        .map(|c| format!("{:.0}", c * 1e6 / t.ok.max(1) as f64))
        .collect::<Vec<_>>()
        .join("/")
}

async fn etcd(clients: usize) -> Option<Tally> {
    let etcd = Etcd::start();
    etcd.wait_healthy().await;
    eprintln!("(etcd up)");
    // One fixed random-looking 128-byte value; keys are distinct per client and write.
    let value = Arc::new(B64.encode((0..128u8).map(|b| b.wrapping_mul(151)).collect::<Vec<_>>()));
    let make: MakeRequest = Arc::new(move |i, addr, n| {
        *n += 1;
        Some(put(addr, &format!("bench/{i}/{n}"), &value))
    });
    let mut t = closed_loop(
        &etcd.client_addrs,
        clients,
        WARM,
        MEASURE,
        make,
        &etcd.pids(),
    )
    .await;
    let cpu = format!(", CPU per write {} us", cpu_per_write(&t));
    t.report(
        &format!("etcd put, all nodes, {clients} clients"),
        "200/s",
        MEASURE,
        &cpu,
    );
    if wanted("etcdctl") {
        etcdctl_check_perf(&etcd.client_addrs);
    }
    Some(t)
}

/// etcd's own benchmark over gRPC, if `etcdctl` is installed.
fn etcdctl_check_perf(addrs: &[String]) {
    let endpoints = addrs.join(",");
    match Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &endpoints, "check", "perf", "--load=l"])
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text
                .lines()
                .filter(|l| l.contains("PASS") || l.contains("FAIL"))
            {
                println!("etcdctl check perf --load=l: {}", line.trim());
            }
        }
        Err(e) => eprintln!("(etcdctl not run: {e}; Debian's etcd-client has it)"),
    }
}

async fn quorumlog(clients: usize, leaves: usize) -> Tally {
    let mut c = Cluster::init(3, 0, publish_every_second);
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    let addrs: Vec<String> = (1..=3).map(|id| c.api_addr(id)).collect();
    // Leader first, so its CPU comes first.
    let pids: Vec<u32> = std::iter::once(leader)
        .chain((1..=3).filter(|&id| id != leader))
        .filter_map(|id| c.pid(id))
        .collect();
    eprintln!("(quorumlog up, leader is node {leader})");
    let pool = Pool::sign(0, leaves).await;
    let bodies = pool.clone();
    let make: MakeRequest = Arc::new(move |_, addr, _| Some(post_add_leaf(addr, bodies.take()?)));
    let mut t = closed_loop(&addrs, clients, WARM, MEASURE, make, &pids).await;
    let note = format!(
        ", CPU per leaf {} us (leader first){}",
        cpu_per_write(&t),
        pool.note()
    );
    t.report(
        &format!("quorumlog add-leaf, all nodes, {clients} clients"),
        "200/s",
        MEASURE,
        &note,
    );
    drop(c);
    t
}

async fn run() {
    let clients = env_or("QL_CLIENTS", 256).max(1);
    let leaves = env_or("QL_LEAVES", 600_000);
    let e = if wanted("etcd") || wanted("etcdctl") {
        etcd(clients).await
    } else {
        None
    };
    let q = if wanted("quorumlog") {
        Some(quorumlog(clients, leaves).await)
    } else {
        None
    };
    if let (Some(e), Some(q)) = (e, q) {
        let rate = |t: &Tally| t.ok as f64 / MEASURE.as_secs_f64();
        println!(
            "ratio quorumlog/etcd: {:.2}x throughput, p50 {:.1} vs {:.1} ms, p99 {:.1} vs {:.1} ms",
            rate(&q) / rate(&e).max(1.0),
            q.ms(0.5),
            e.ms(0.5),
            q.ms(0.99),
            e.ms(0.99),
        );
    }
}

fn main() {
    block_on(run());
}
