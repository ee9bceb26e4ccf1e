//! A load of add-leaf submissions and an observer of every node's published head, for
//! tests that disturb a cluster (leader kills, transfers) and then check the invariants.

use super::sigsum::{Http, Submitter};
use super::Handle;
use quorumlog::merkle::{verify_consistency, Hash};
use quorumlog::sigsum::crypto::PublicKey;
use quorumlog::sigsum::leaf::{parse_leaves, TreeLeaf};
use quorumlog::sigsum::proofs::ConsistencyProof;
use quorumlog::sigsum::tree_head::CosignedTreeHead;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The sequence number of the marker leaf [`verify_run`] submits (no writer reaches it).
const MARKER: u64 = 1 << 62;

/// Heads seen per node, in the order first seen.
pub type Seen = BTreeMap<u64, Vec<CosignedTreeHead>>;

/// Writers submitting to every node in turn, and an observer of published heads.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    seen: Arc<Mutex<Seen>>,
    /// Answers other than 200 and 202 (status and body).
    failures: Arc<Mutex<Vec<String>>>,
    /// Requests that got no HTTP answer at all (the node was down).
    unanswered: Arc<std::sync::atomic::AtomicU64>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    observer: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts `writers` writers (leaves of submitter `seed`) and the observer on nodes 1-3.
    pub fn start(c: Handle, http: Http, writers: u64, seed: u8) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let unanswered: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let observer = {
            let (c, http, seen, stop) = (c.clone(), http.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for id in 1..=3u64 {
                        if let Some(h) = http.tree_head(&c.api_addr(id)).await {
                            let mut s = seen.lock().unwrap();
                            let v = s.entry(id).or_default();
                            if v.last() != Some(&h) {
                                v.push(h);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        let writers = (0..writers)
            .map(|w| {
                let (c, http, acked, stop) = (c.clone(), http.clone(), acked.clone(), stop.clone());
                let (failures, unanswered) = (failures.clone(), unanswered.clone());
                tokio::spawn(async move {
                    let s = Submitter::new(seed);
                    let mut n = w;
                    let mut attempt = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // A refused or failed attempt moves on to the next node, so a dead
                        // node does not hold a writer.
                        attempt += 1;
                        let via = 1 + ((n + attempt) % 3);
                        let body = s.request(n).to_ascii().into_bytes();
                        match http.post(&c.api_addr(via), "add-leaf", body, None).await {
                            Ok(a) if a.status == 200 => {
                                acked.lock().unwrap().push(n);
                                n += writers;
                            }
                            // Not yet committed: retried, as sigsum-submit does.
                            Ok(a) if a.status == 202 => {}
                            Ok(a) => failures.lock().unwrap().push(format!(
                                "node {via}: {} {}",
                                a.status,
                                a.body.trim()
                            )),
                            Err(_) => {
                                // A node that is down: back off a little, then the next node.
                                unanswered.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            seen,
            failures,
            unanswered,
            writers,
            observer,
        }
    }

    /// Leaves answered 200 so far.
    pub fn acked_len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Answers other than 200 and 202 so far.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// Requests that got no HTTP answer (connection refused or reset, timeout).
    pub fn unanswered(&self) -> u64 {
        self.unanswered.load(Ordering::Relaxed)
    }

    /// Stops everything; the leaves answered 200 and the heads seen.
    pub async fn finish(self) -> (Vec<u64>, Seen) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            w.await.unwrap();
        }
        let _ = self.observer.await;
        let acked = self.acked.lock().unwrap().clone();
        let seen = self.seen.lock().unwrap().clone();
        (acked, seen)
    }
}

/// The safety checker for observed heads: on each node the published size never goes down,
/// two heads of the same size have the same root (no fork), and every head is signed by the
/// log. Returns the root of every observed size (for consistency checks against the end).
pub fn check_heads(
    seen: &BTreeMap<u64, Vec<CosignedTreeHead>>,
    key: &PublicKey,
) -> Result<HashMap<u64, Hash>, String> {
    let mut by_size: HashMap<u64, Hash> = HashMap::new();
    for (id, heads) in seen {
        for w in heads.windows(2) {
            if w[0].head.size > w[1].head.size {
                return Err(format!(
                    "node {id} went from {} to {}",
                    w[0].head.size, w[1].head.size
                ));
            }
        }
        for h in heads {
            h.head
                .verify(key)
                .map_err(|e| format!("node {id}, head {}: {e}", h.head.size))?;
            let root = *by_size.entry(h.head.size).or_insert(h.head.root_hash);
            if root != h.head.root_hash {
                return Err(format!("two different heads of size {}", h.head.size));
            }
        }
    }
    Ok(by_size)
}

/// After a run: no regression or fork among the heads seen, every head consistent with the
/// final one, and every leaf answered 200 in it. Returns the distinct sizes seen.
pub async fn verify_run(
    c: &Handle,
    http: &Http,
    key: &PublicKey,
    acked: &[u64],
    seen: &Seen,
    seed: u8,
) -> Vec<u64> {
    assert!(!acked.is_empty(), "the load got no leaf accepted");
    // A marker leaf submitted after every acknowledged one: a head that includes it includes
    // them all (they were committed before it), whatever the tree held before this run.
    let s = Submitter::new(seed);
    let marker = s.leaf(MARKER);
    let body = s.request(MARKER).to_ascii();
    c.wait_until(
        || "the marker leaf to be accepted".to_string(),
        60,
        || async {
            for id in 1..=3 {
                let addr = c.api_addr(id);
                let a = http.post(&addr, "add-leaf", body.clone().into_bytes(), None);
                if a.await.is_ok_and(|a| a.status == 200) {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    let last = c
        .wait_until(
            || "every node to publish the same head, with the marker leaf".to_string(),
            60,
            || async {
                let mut heads = Vec::new();
                for id in 1..=3 {
                    heads.push(http.tree_head(&c.api_addr(id)).await?);
                }
                let first = heads[0].head;
                if first.size < acked.len() as u64 || heads.iter().any(|h| h.head != first) {
                    return None;
                }
                let path = format!(
                    "get-inclusion-proof/{}/{}",
                    first.size.max(2),
                    marker.leaf_hash()
                );
                let a = http.get(&c.api_addr(1), &path).await.ok()?;
                (a.status == 200).then(|| heads[0].clone())
            },
        )
        .await;
    let mut seen = seen.clone();
    seen.entry(1).or_default().push(last.clone());
    let by_size = check_heads(&seen, key).unwrap();
    let mut sizes: Vec<u64> = by_size.keys().copied().filter(|&s| s > 0).collect();
    sizes.sort_unstable();
    for &s in &sizes {
        if s == last.head.size {
            continue;
        }
        let a = http
            .get(
                &c.api_addr(1),
                &format!("get-consistency-proof/{s}/{}", last.head.size),
            )
            .await
            .unwrap();
        let p = ConsistencyProof::parse(a.body.as_bytes()).unwrap();
        verify_consistency(
            s,
            last.head.size,
            &by_size[&s],
            &last.head.root_hash,
            &p.path,
        )
        .unwrap_or_else(|e| panic!("head {s} forks from {}: {e:?}", last.head.size));
    }
    // Every acknowledged leaf is in the tree of the final head (read back in ranges), and a
    // sample of them has an inclusion proof.
    let size = last.head.size;
    let present = leaf_hashes(c, http, 2, size).await;
    for n in acked {
        let lh = s.leaf(*n).leaf_hash();
        assert!(present.contains(&lh), "acknowledged leaf {n} missing");
    }
    for n in acked.iter().step_by((acked.len() / 50).max(1)) {
        let lh = s.leaf(*n).leaf_hash();
        let a = http
            .get(
                &c.api_addr(2),
                &format!("get-inclusion-proof/{}/{lh}", size.max(2)),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "acknowledged leaf {n} missing: {}", a.body);
    }
    sizes
}

/// The leaf hashes of node `id`'s first `size` leaves, read with get-leaves ranges (one
/// request per leaf would exhaust the ephemeral ports on a long run).
pub async fn leaf_hashes(
    c: &Handle,
    http: &Http,
    id: u64,
    size: u64,
) -> std::collections::HashSet<Hash> {
    let mut present = std::collections::HashSet::new();
    let mut start = 0;
    while start < size {
        let end = (start + 512).min(size);
        let a = http
            .get(&c.api_addr(id), &format!("get-leaves/{start}/{end}"))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "get-leaves {start}..{end}: {}", a.body);
        let leaves = parse_leaves(a.body.as_bytes()).unwrap();
        assert!(
            !leaves.is_empty(),
            "get-leaves {start}..{end} returned nothing"
        );
        start += leaves.len() as u64;
        present.extend(leaves.iter().map(TreeLeaf::leaf_hash));
    }
    present
}
