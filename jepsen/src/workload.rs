//! The workload: writers submitting unique signed leaves to random nodes at a target rate
//! and retrying as Sigsum clients do, readers polling every node's tree head and fetching
//! consistency and inclusion proofs, and a poller of every node's `/status.json`. Every
//! request is an `invoke` and a completion in the history.

use crate::client::{leaf_hash_hex, parse_proof, parse_tree_head, Api, Submitter};
use crate::cluster::NODES;
use crate::directory::{read_heads, DirectoryWriter};
use crate::history::{
    ConsistencyValue, EventType, HeadValue, InclusionValue, LeafValue, Op, Process, Recorder,
    StatusValue,
};
use crate::schedule::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Readers polling tree heads.
const READERS: u64 = 2;
/// How often a reader polls every node.
const READ_EVERY: Duration = Duration::from_millis(250);
/// How often the status poller asks every node.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// A writer waits this long before resending after a 202 (sigsum-submit waits 2 s).
const RETRY_AFTER_202: Duration = Duration::from_millis(500);

/// The settings of a workload.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadSpec {
    /// Writer processes.
    pub(crate) concurrency: u64,
    /// add-leaf 200s per second wanted from all writers together.
    pub(crate) rate: f64,
    /// Seed of the run (keys, node choice).
    pub(crate) seed: u64,
    /// Also run the directory workload (`--directory`).
    pub(crate) directory: bool,
}

/// Directory writers, and the updates per second they make together.
const DIRECTORY_WRITERS: u64 = 2;
const DIRECTORY_RATE: f64 = 10.0;

/// A running workload.
pub(crate) struct Workload {
    stop_writers: Arc<AtomicBool>,
    stop_readers: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// What the readers share: the leaves acknowledged so far (for inclusion proofs).
type Acked = Arc<Mutex<Vec<LeafValue>>>;

impl Workload {
    /// Starts writers, readers and the status poller against `addrs` (node k at index k-1).
    pub(crate) fn start(spec: &WorkloadSpec, addrs: Vec<String>, rec: Arc<Recorder>) -> Workload {
        let api = Api::new(Duration::from_secs(5));
        let stop_writers = Arc::new(AtomicBool::new(false));
        let stop_readers = Arc::new(AtomicBool::new(false));
        let acked: Acked = Arc::default();
        let addrs = Arc::new(addrs);
        let per_writer = Duration::from_secs_f64(spec.concurrency as f64 / spec.rate.max(0.01));
        let writers: Vec<_> = (0..spec.concurrency)
            .map(|c| {
                let w = Writer {
                    process: c,
                    submitter: Submitter::new(spec.seed, c),
                    rng: Rng::new(spec.seed ^ (c + 1).wrapping_mul(0x9e37_79b9)),
                    api: api.clone(),
                    addrs: addrs.clone(),
                    rec: rec.clone(),
                    acked: acked.clone(),
                    stop: stop_writers.clone(),
                    every: per_writer,
                };
                tokio::spawn(w.run())
            })
            .collect();
        let mut readers: Vec<_> = (0..READERS)
            .map(|r| {
                let reader = Reader {
                    process: spec.concurrency + r,
                    rng: Rng::new(spec.seed ^ 0xabcd ^ r),
                    api: api.clone(),
                    addrs: addrs.clone(),
                    rec: rec.clone(),
                    acked: acked.clone(),
                    stop: stop_readers.clone(),
                    last: BTreeMap::new(),
                };
                tokio::spawn(reader.run())
            })
            .collect();
        readers.push(tokio::spawn(poll_status(
            spec.concurrency + READERS,
            api.clone(),
            addrs.clone(),
            rec.clone(),
            stop_readers.clone(),
        )));
        let mut writers = writers;
        if spec.directory {
            let first = spec.concurrency + READERS + 1;
            for w in 0..DIRECTORY_WRITERS {
                let dw = DirectoryWriter {
                    process: first + w,
                    run: spec.seed,
                    api: api.clone(),
                    addrs: addrs.clone(),
                    rec: rec.clone(),
                    stop: stop_writers.clone(),
                    every: Duration::from_secs_f64(DIRECTORY_WRITERS as f64 / DIRECTORY_RATE),
                };
                writers.push(tokio::spawn(dw.run()));
            }
            readers.push(tokio::spawn(read_heads(
                first + DIRECTORY_WRITERS,
                api,
                addrs,
                rec,
                stop_readers.clone(),
            )));
        }
        Workload {
            stop_writers,
            stop_readers,
            writers,
            readers,
        }
    }

    /// Stops the writers (a leaf in flight ends as it ends; one being retried stays `info`).
    pub(crate) async fn stop_writers(&mut self) {
        self.stop_writers.store(true, Ordering::SeqCst);
        for w in self.writers.drain(..) {
            let _ = w.await;
        }
    }

    /// Stops the readers and the status poller.
    pub(crate) async fn stop_readers(&mut self) {
        self.stop_readers.store(true, Ordering::SeqCst);
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
    }
}

struct Writer {
    process: u64,
    submitter: Submitter,
    rng: Rng,
    api: Api,
    addrs: Arc<Vec<String>>,
    rec: Arc<Recorder>,
    acked: Acked,
    stop: Arc<AtomicBool>,
    every: Duration,
}

impl Writer {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        'leaves: while !self.stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let sub = self.submitter.submission(seq);
            seq += 1;
            // One leaf, resent until a 200 (or a definite refusal), as sigsum-submit does.
            while !self.stop.load(Ordering::Relaxed) {
                let node = 1 + self.rng.below(self.addrs.len() as u64);
                let p = Process::Client(self.process);
                let op = Op::AddLeaf(sub.leaf.clone());
                self.rec
                    .record(p, EventType::Invoke, Some(node), op.clone(), None);
                let answer = self
                    .api
                    .add_leaf(&self.addrs[(node - 1) as usize], &sub.body)
                    .await;
                let (kind, error) = match &answer {
                    Ok((200, _)) => (EventType::Ok, None),
                    // Refused for good: the leaf is not in the log.
                    Ok((s @ 400..=499, body)) => (EventType::Fail, Some(format!("{s} {body}"))),
                    Ok((s, body)) => (EventType::Info, Some(format!("{s} {}", body.trim()))),
                    Err(e) => (EventType::Info, Some(e.clone())),
                };
                self.rec.record(p, kind, Some(node), op, error);
                match kind {
                    EventType::Ok => {
                        self.acked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(sub.leaf.clone());
                        continue 'leaves;
                    }
                    EventType::Fail => continue 'leaves,
                    _ => tokio::time::sleep(RETRY_AFTER_202).await,
                }
            }
        }
    }
}

struct Reader {
    process: u64,
    rng: Rng,
    api: Api,
    addrs: Arc<Vec<String>>,
    rec: Arc<Recorder>,
    acked: Acked,
    stop: Arc<AtomicBool>,
    /// The last head this reader saw from each node.
    last: BTreeMap<u64, HeadValue>,
}

impl Reader {
    async fn run(mut self) {
        let mut round = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            round += 1;
            for node in 1..=self.addrs.len() as u64 {
                let Some(head) = self.read_head(node).await else {
                    continue;
                };
                if let Some(old) = self.last.get(&node).cloned() {
                    if old.size > 0 && head.size > old.size {
                        self.consistency(node, &old, &head).await;
                    }
                }
                // An inclusion proof for a random acknowledged leaf now and then.
                if round.is_multiple_of(4) && head.size >= 2 {
                    let leaf = {
                        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
                        (!acked.is_empty())
                            .then(|| acked[self.rng.below(acked.len() as u64) as usize].clone())
                    };
                    if let Some(leaf) = leaf {
                        self.inclusion(node, &leaf, &head).await;
                    }
                }
                self.last.insert(node, head);
            }
            tokio::time::sleep(READ_EVERY).await;
        }
    }

    fn addr(&self, node: u64) -> &str {
        &self.addrs[(node - 1) as usize]
    }

    async fn read_head(&mut self, node: u64) -> Option<HeadValue> {
        let p = Process::Client(self.process);
        self.rec
            .record(p, EventType::Invoke, Some(node), Op::ReadHead(None), None);
        let answer = self.api.get(self.addr(node), "get-tree-head").await;
        let (kind, head, error) = match answer {
            Ok((200, body)) => match parse_tree_head(&body) {
                Some(h) => (EventType::Ok, Some(h), None),
                None => (EventType::Fail, None, Some(format!("malformed: {body}"))),
            },
            Ok((s, body)) => (EventType::Fail, None, Some(format!("{s} {}", body.trim()))),
            Err(e) => (EventType::Fail, None, Some(e)),
        };
        self.rec
            .record(p, kind, Some(node), Op::ReadHead(head.clone()), error);
        head
    }

    /// Fetches a proof: `ok` with the leaf index (if any) and path, or `fail` and why.
    async fn proof(&self, node: u64, path: &str) -> Result<(Option<u64>, Vec<String>), String> {
        match self.api.get(self.addr(node), path).await {
            Ok((200, body)) => parse_proof(&body).ok_or_else(|| format!("malformed: {body}")),
            Ok((s, body)) => Err(format!("{s} {}", body.trim())),
            Err(e) => Err(e),
        }
    }

    /// Records `op` as invoked on `node`, runs `fetch`, and records its completion.
    async fn traced<F>(&self, node: u64, op: Op, fetch: F)
    where
        F: AsyncFnOnce(&Self, Op) -> Result<Op, (Op, String)>,
    {
        let p = Process::Client(self.process);
        self.rec
            .record(p, EventType::Invoke, Some(node), op.clone(), None);
        match fetch(self, op).await {
            Ok(done) => self.rec.record(p, EventType::Ok, Some(node), done, None),
            Err((op, e)) => self.rec.record(p, EventType::Fail, Some(node), op, Some(e)),
        }
    }

    async fn consistency(&mut self, node: u64, old: &HeadValue, new: &HeadValue) {
        let value = ConsistencyValue {
            old_size: old.size,
            old_root: old.root_hash.clone(),
            new_size: new.size,
            new_root: new.root_hash.clone(),
            path: Vec::new(),
        };
        let path = format!("get-consistency-proof/{}/{}", old.size, new.size);
        self.traced(node, Op::Consistency(value.clone()), async |r, op| match r
            .proof(node, &path)
            .await
        {
            Ok((_, hashes)) => Ok(Op::Consistency(ConsistencyValue {
                path: hashes,
                ..value
            })),
            Err(e) => Err((op, e)),
        })
        .await;
    }

    async fn inclusion(&mut self, node: u64, leaf: &LeafValue, head: &HeadValue) {
        let Some(leaf_hash) = leaf_hash_hex(leaf) else {
            return;
        };
        let value = InclusionValue {
            leaf_hash,
            size: head.size,
            root: head.root_hash.clone(),
            index: None,
            path: Vec::new(),
        };
        let path = format!("get-inclusion-proof/{}/{}", head.size, value.leaf_hash);
        // A 404 is no anomaly: the leaf may be acknowledged but not yet in this head.
        self.traced(node, Op::Inclusion(value.clone()), async |r, op| {
            match r.proof(node, &path).await {
                Ok((Some(index), hashes)) => Ok(Op::Inclusion(InclusionValue {
                    index: Some(index),
                    path: hashes,
                    ..value
                })),
                Ok((None, _)) => Err((op, "no leaf_index".into())),
                Err(e) => Err((op, e)),
            }
        })
        .await;
    }
}

/// Asks every node for its `/status.json` every second; records what it says of itself.
async fn poll_status(
    process: u64,
    api: Api,
    addrs: Arc<Vec<String>>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let p = Process::Client(process);
    while !stop.load(Ordering::Relaxed) {
        for node in 1..=NODES.min(addrs.len() as u64) {
            rec.record(p, EventType::Invoke, Some(node), Op::Status(None), None);
            let (kind, value, error) =
                match api.get(&addrs[(node - 1) as usize], "status.json").await {
                    Ok((200, body)) => match own_status(&body, node) {
                        Some(v) => (EventType::Ok, Some(v), None),
                        None => (EventType::Fail, None, Some("no report of itself".into())),
                    },
                    Ok((s, body)) => (EventType::Fail, None, Some(format!("{s} {}", body.trim()))),
                    Err(e) => (EventType::Fail, None, Some(e)),
                };
            rec.record(p, kind, Some(node), Op::Status(value), error);
        }
        tokio::time::sleep(STATUS_EVERY).await;
    }
}

/// What node `node` reports of itself in its `/status.json` (read as plain JSON: the
/// suite does not link the server's types).
fn own_status(body: &str, node: u64) -> Option<StatusValue> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let me = v
        .get("members")?
        .as_array()?
        .iter()
        .find(|m| m.get("id").and_then(|i| i.as_u64()) == Some(node))?
        .get("node")?;
    let app = me.get("app");
    Some(StatusValue {
        tree_size: app.and_then(|a| a.get("tree_size")?.as_u64()),
        committed_index: me.get("committed_index").and_then(|c| c.as_u64()),
        published_size: app.and_then(|a| a.get("published")?.get("size")?.as_u64()),
        role: me.get("role").and_then(|r| r.as_str()).map(str::to_string),
    })
}
