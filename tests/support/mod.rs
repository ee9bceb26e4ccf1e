//! A real cluster for integration tests: `quorumlog` processes on loopback, configured by
//! `quorumlog init-cluster` in a temporary directory. Every process is killed and the
//! directory removed when the `Cluster` is dropped, also when a test fails.

#![allow(dead_code)]

pub mod bench;
pub mod closed_loop;
pub mod docker;
pub mod load;
pub mod script;
pub mod sigsum;

use quorumlog::config::NodeConfig;
use quorumlog::merkle::MerkleStore;
use quorumlog::sigsum::leaf::TreeLeaf;
use quorumlog::status::NodeAppStatus;
use quorumlog_raft::network::client::connect_lazy;
use quorumlog_raft::network::pb::admin_client::AdminClient;
use quorumlog_raft::network::pb::raft_client::RaftClient;
use quorumlog_raft::network::pb::{NodeStatus, StatusRequest};
use quorumlog_raft::network::tls::{install_crypto_provider, TlsFiles};
use quorumlog_raft::network::ProtocolHeader;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_quorumlog");

static NEXT_BASE: AtomicU16 = AtomicU16::new(0);

/// The first of `count` consecutive loopback ports that are free now.
pub fn free_base(count: u16) -> u16 {
    // Below the kernel's ephemeral range (32768+), so outgoing connections never take a
    // port a node is about to listen on again after a restart.
    let start = 20000 + (std::process::id() % 200) as u16 * 50;
    loop {
        let base = start + NEXT_BASE.fetch_add(count, Ordering::SeqCst);
        let listeners: Vec<_> = (base..base + count)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if listeners.iter().all(|l| l.is_ok()) {
            return base;
        }
    }
}

/// Publication every 300 ms so tests do not wait long for heads.
pub fn fast_publish(c: &mut NodeConfig) {
    c.publish.interval_ms = 300;
    c.publish.witness_timeout_ms = 300;
}

/// The config as `init-cluster` wrote it.
pub fn as_written(_: &mut NodeConfig) {}

/// The submitter of every leaf the tests add (`leaf(n)` and [`Handle::add`]).
pub fn submitter() -> sigsum::Submitter {
    sigsum::Submitter::new(0x51)
}

/// The leaf [`Handle::add`] puts in the tree for `n`.
pub fn leaf(n: u64) -> TreeLeaf {
    submitter().leaf(n)
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    procs: BTreeMap<u64, Child>,
    handle: Handle,
}

/// The client side of a cluster (no process ownership), usable from many tasks.
#[derive(Clone)]
pub struct Handle {
    pub path: PathBuf,
    pub base_port: u16,
    channels: std::sync::Arc<std::sync::Mutex<BTreeMap<(u64, u64), Channel>>>,
}

impl Cluster {
    /// Writes a cluster of `n` nodes (room for `spare` more) and applies `edit` to each
    /// node's config.
    pub fn init(n: u64, spare: u64, edit: impl Fn(&mut NodeConfig)) -> Cluster {
        Self::init_with(n, spare, &[], edit)
    }

    /// Like [`Cluster::init`], with extra `init-cluster` arguments (such as `--witness`).
    pub fn init_with(
        n: u64,
        spare: u64,
        extra: &[String],
        edit: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        Self::init_in(dir, n, spare, extra, edit)
    }

    /// Like [`Cluster::init_with`], in a directory the caller already prepared.
    pub fn init_in(
        dir: tempfile::TempDir,
        n: u64,
        spare: u64,
        extra: &[String],
        edit: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        install_crypto_provider();
        let base_port = free_base(((n + spare) * 3) as u16);
        let out = Command::new(BIN)
            .args(["init-cluster", "--nodes", &n.to_string(), "--dir"])
            .arg(dir.path().join("cluster"))
            .args(["--base-port", &base_port.to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init-cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let handle = Handle {
            path: dir.path().join("cluster"),
            base_port,
            channels: Default::default(),
        };
        let c = Cluster {
            dir,
            procs: BTreeMap::new(),
            handle,
        };
        for id in 1..=n {
            c.edit_config(id, &edit);
        }
        c
    }

    pub fn start(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(format!("node{id}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.config_path(id))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.insert(id, child);
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to node `id`'s process.
    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.procs[&id].id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// The process id of running node `id`.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.procs.get(&id).map(Child::id)
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.procs.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A cloneable client of this cluster.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl std::ops::Deref for Cluster {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Handle {
    /// A client of a cluster made elsewhere (by `cluster/run.sh`, say) in `path`.
    pub fn at(path: PathBuf, base_port: u16) -> Handle {
        install_crypto_provider();
        Handle {
            path,
            base_port,
            channels: Default::default(),
        }
    }

    /// The log's public key, from the cluster directory.
    pub fn log_key(&self) -> quorumlog::sigsum::crypto::PublicKey {
        let hex = std::fs::read_to_string(self.path.join("log.pub")).unwrap();
        let mut k = [0u8; 32];
        hex::decode_to_slice(hex.trim(), &mut k).unwrap();
        quorumlog::sigsum::crypto::PublicKey(k)
    }

    /// Runs `quorumlog ARGS`; panics with its error output if it fails; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "quorumlog {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `quorumlog admin --config <node id's config> ARGS`, as [`Handle::cli`].
    pub fn admin_cli(&self, id: u64, args: &[&str]) -> String {
        let config = self.config_path(id);
        let mut all = vec!["admin", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.cli(&all)
    }

    /// `quorumlog new-node`: certificate and configuration for node `id` of this cluster.
    pub fn new_node(&self, id: u64) {
        let (id, dir, base) = (
            id.to_string(),
            self.path.to_str().unwrap().to_string(),
            self.base_port.to_string(),
        );
        self.cli(&["new-node", "--id", &id, "--dir", &dir, "--base-port", &base]);
    }

    pub fn config_path(&self, id: u64) -> PathBuf {
        self.path.as_path().join(format!("node{id}/config.toml"))
    }

    /// Applies `edit` to node `id`'s config file, as the typed config: a field that is
    /// renamed or removed breaks the test at compile time instead of silently not applying.
    pub fn edit_config(&self, id: u64, edit: impl Fn(&mut NodeConfig)) {
        let p = self.config_path(id);
        let mut cfg: NodeConfig = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        edit(&mut cfg);
        std::fs::write(&p, toml::to_string(&cfg).unwrap()).unwrap();
    }

    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.path.as_path().join(format!("node{id}"))
    }

    pub fn tls(&self, id: u64) -> TlsFiles {
        let d = self.node_dir(id);
        TlsFiles::load(
            &self.path.as_path().join("ca.pem"),
            &d.join("node.pem"),
            &d.join("node.key"),
        )
        .unwrap()
    }

    pub fn api_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.base_port + 3 * (id as u16 - 1))
    }

    pub fn raft_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.base_port + 3 * (id as u16 - 1) + 1)
    }

    pub fn ops_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.base_port + 3 * (id as u16 - 1) + 2)
    }

    /// A channel to node `to` authenticated as node `as_node`, reused across calls.
    pub fn channel(&self, as_node: u64, to: u64) -> Channel {
        let mut cache = self.channels.lock().unwrap();
        cache
            .entry((as_node, to))
            .or_insert_with(|| connect_lazy(&self.tls(as_node), to, &self.raft_addr(to)).unwrap())
            .clone()
    }

    /// Drops the cached channels, so later calls present the certificates on disk now
    /// (after `renew-cert`).
    pub fn forget_channels(&self) {
        self.channels.lock().unwrap().clear();
    }

    /// An admin client to node `to` authenticated as node `to` itself.
    pub fn admin(&self, to: u64) -> AdminClient<Channel> {
        AdminClient::new(self.channel(to, to))
    }

    /// An admin client to node `to` authenticated with the operator certificate.
    pub fn operator(&self, to: u64) -> AdminClient<Channel> {
        let mut cache = self.channels.lock().unwrap();
        let ch = cache
            .entry((0, to))
            .or_insert_with(|| connect_lazy(&self.operator_tls(), to, &self.raft_addr(to)).unwrap())
            .clone();
        AdminClient::new(ch)
    }

    /// The operator's certificate and key, as init-cluster wrote them.
    pub fn operator_tls(&self) -> TlsFiles {
        let op = self.path.join("operator");
        TlsFiles::load(
            &self.path.join("ca.pem"),
            &op.join("operator.pem"),
            &op.join("operator.key"),
        )
        .unwrap()
    }

    /// A Raft client as node `as_node`, sending this version's protocol header.
    pub fn raft_client(
        &self,
        as_node: u64,
        to: u64,
    ) -> RaftClient<InterceptedService<Channel, ProtocolHeader>> {
        RaftClient::with_interceptor(self.channel(as_node, to), ProtocolHeader)
    }

    pub async fn status(&self, id: u64) -> Result<NodeStatus, tonic::Status> {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        self.admin(id).status(req).await.map(|r| r.into_inner())
    }

    /// Polls `cond` until it holds or `secs` pass; panics with `what` on timeout.
    pub async fn wait_for<F, Fut>(&self, what: &str, secs: u64, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.wait_until(
            || what.to_string(),
            secs,
            || {
                let f = cond();
                async move { f.await.then_some(()) }
            },
        )
        .await
    }

    /// Polls `probe` until it yields a value or `secs` pass; panics with `what` on timeout.
    pub async fn wait_until<T, F, Fut>(
        &self,
        what: impl Fn() -> String,
        secs: u64,
        mut probe: F,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "timed out after {secs}s waiting for {}\n{}",
            what(),
            self.logs()
        );
    }

    /// The leader every node among `ids` agrees on.
    pub async fn leader(&self, ids: &[u64]) -> u64 {
        self.wait_until(
            || "an agreed leader".to_string(),
            30,
            || async {
                let mut leaders = Vec::new();
                for &id in ids {
                    leaders.push(self.status(id).await.ok()?.leader);
                }
                match leaders.first() {
                    Some(Some(l)) if leaders.iter().all(|x| *x == Some(*l)) && ids.contains(l) => {
                        Some(*l)
                    }
                    _ => None,
                }
            },
        )
        .await
    }

    /// Submits the leaves for `ns` through node `via`'s public API, concurrently, as
    /// Sigsum clients do; `Ok` once every one answered 200 (committed by a quorum).
    pub async fn add(&self, via: u64, ns: &[u64]) -> Result<(), String> {
        let http = sigsum::Http::default();
        let s = submitter();
        let addr = self.api_addr(via);
        let answers = futures::future::join_all(ns.iter().map(|&n| {
            let body = s.request(n).to_ascii().into_bytes();
            let (http, addr) = (&http, &addr);
            async move { http.post(addr, "add-leaf", body, None).await }
        }))
        .await;
        for a in answers {
            match a {
                Ok(a) if a.status == 200 => {}
                Ok(a) => return Err(format!("node {via}: {} {}", a.status, a.body.trim())),
                Err(e) => return Err(format!("node {via}: {e}")),
            }
        }
        Ok(())
    }

    /// Submits through the first of `ids` that takes all of `ns`, retrying while
    /// leadership settles (a 202 or 503 is retried, as clients do).
    pub async fn add_any(&self, ids: &[u64], ns: &[u64]) {
        let last = std::sync::Mutex::new(String::new());
        self.wait_until(
            || {
                format!(
                    "nodes {ids:?} to commit leaves {ns:?}; last answer {}",
                    last.lock().unwrap()
                )
            },
            30,
            || async {
                for &id in ids {
                    match self.add(id, ns).await {
                        Ok(()) => return Some(()),
                        Err(e) => *last.lock().unwrap() = e,
                    }
                }
                None
            },
        )
        .await
    }

    /// The log's part of node `id`'s status.
    pub async fn app(&self, id: u64) -> Result<NodeAppStatus, String> {
        let s = self.status(id).await.map_err(|e| e.to_string())?;
        NodeAppStatus::decode(&s.app_status).ok_or_else(|| format!("node {id}: no app status"))
    }

    /// Waits until every node in `ids` reports the same replicated state (tree, signed and
    /// published heads) at tree size `size`; returns it.
    pub async fn wait_converged(&self, ids: &[u64], size: u64) -> NodeAppStatus {
        let seen = std::sync::Mutex::new(Vec::new());
        let what = || {
            let seen = seen.lock().unwrap();
            format!("nodes {ids:?} to converge at size {size}; last seen {seen:?}")
        };
        self.wait_until(what, 60, || async {
            let mut view = Vec::new();
            for &id in ids {
                view.push(self.app(id).await);
            }
            *seen.lock().unwrap() = view.clone();
            let apps: Vec<NodeAppStatus> = view.into_iter().collect::<Result<_, _>>().ok()?;
            // Compare the replicated state only, not node-local publishing facts.
            let state = |a: &NodeAppStatus| {
                (
                    a.tree_size,
                    a.root_hash.clone(),
                    a.signed_size,
                    a.published.clone(),
                )
            };
            let same = apps.iter().all(|a| state(a) == state(&apps[0]));
            (same && apps[0].tree_size == size).then(|| apps[0].clone())
        })
        .await
    }

    /// The tree of a stopped node, read straight from its state database.
    pub fn open_tree(&self, id: u64) -> MerkleStore {
        open_state(&self.node_dir(id).join("data"))
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in 1..=8u64 {
            let p = self.path.as_path().join(format!("node{id}.log"));
            if let Ok(t) = std::fs::read_to_string(&p) {
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                out.push_str(&format!("--- node {id} (last lines) ---\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::env::var_os("QUORUMLOG_KEEP_TEST_DIRS").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept test cluster directory {}", kept.display());
        }
    }
}

/// Opens the active state database under a node's data directory.
pub fn open_state(data: &Path) -> MerkleStore {
    let state = data.join("state");
    let active = std::fs::read_to_string(state.join("ACTIVE")).unwrap();
    let path = state.join(active.trim());
    let known: Vec<String> = MerkleStore::column_families()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut cfs = MerkleStore::column_families();
    for name in rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap() {
        if !known.contains(&name) {
            cfs.push(rocksdb::ColumnFamilyDescriptor::new(
                name,
                rocksdb::Options::default(),
            ));
        }
    }
    let db = rocksdb::DB::open_cf_descriptors(&MerkleStore::db_options(), &path, cfs).unwrap();
    MerkleStore::new(std::sync::Arc::new(db)).unwrap()
}
