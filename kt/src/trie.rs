//! The map as a versioned compressed trie, so that an epoch costs work for the indexes it
//! changes and proofs are served at any past epoch.
//!
//! Only two kinds of node are stored: leaves (at depth 256) and *branches*, the nodes
//! where both subtrees are non-empty. Between a branch and the trie node below it the
//! path runs through subtrees with one empty side, whose hashes follow from the lower node
//! alone ([`climb`]). So a map of n leaves stores n leaves and n - 1 branches, and each
//! parent keeps the hash of each child *at the top of its edge*, which makes the sibling
//! hashes of a proof reads, not computations.
//!
//! Every record is stored under its node id and the epoch that wrote it; reading at epoch
//! `e` takes the newest record not after `e` ([`Versioned`]). Updating writes new
//! records only along the paths of the changed indexes, and never changes an old record.

use crate::hasher::{bit, masked, Coniks, Hash, Index, DEPTH};
use crate::map::Proof;
use sha2::digest::Digest;
use std::collections::BTreeMap;
use thiserror::Error;

/// A stored node: its depth and the first `depth` bits of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeId {
    pub depth: u16,
    pub prefix: Index,
}

impl NodeId {
    fn new(depth: usize, path: &Index) -> NodeId {
        NodeId {
            depth: depth as u16,
            prefix: masked(path, depth),
        }
    }

    fn depth(&self) -> usize {
        self.depth as usize
    }

    /// `depth (2 bytes) || prefix (32)`, big-endian; the root pointer is depth 0xffff.
    pub fn key(&self) -> [u8; 34] {
        let mut k = [0u8; 34];
        k[..2].copy_from_slice(&self.depth.to_be_bytes());
        k[2..].copy_from_slice(&self.prefix);
        k
    }

    fn from_key(k: &[u8]) -> Option<NodeId> {
        let depth = u16::from_be_bytes(k.get(..2)?.try_into().ok()?);
        let prefix = k.get(2..34)?.try_into().ok()?;
        (depth as usize <= DEPTH && k.len() == 34).then_some(NodeId { depth, prefix })
    }
}

/// Key of the record that points at the trie's top node.
pub const ROOT_KEY: [u8; 34] = {
    let mut k = [0u8; 34];
    k[0] = 0xff;
    k[1] = 0xff;
    k
};

/// A child as its parent sees it: where the node is, and the subtree's hash at the top of
/// the edge (one level below the parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edge {
    node: NodeId,
    top: Hash,
}

/// What is stored under a node id (or [`ROOT_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Leaf(Hash),
    Branch {
        left: Edge,
        right: Edge,
    },
    /// The top node, with its subtree's hash at depth 0 (the map root).
    Root(Edge),
}

fn put_edge(b: &mut Vec<u8>, e: &Edge) {
    b.extend_from_slice(&e.node.key());
    b.extend_from_slice(&e.top.0);
}

fn get_edge(b: &[u8]) -> Option<Edge> {
    Some(Edge {
        node: NodeId::from_key(b.get(..34)?)?,
        top: Hash(b.get(34..66)?.try_into().ok()?),
    })
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(133);
        match self {
            Record::Leaf(h) => {
                b.push(1);
                b.extend_from_slice(&h.0);
            }
            Record::Branch { left, right } => {
                b.push(2);
                put_edge(&mut b, left);
                put_edge(&mut b, right);
            }
            Record::Root(e) => {
                b.push(3);
                put_edge(&mut b, e);
            }
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Record> {
        match (b.first()?, b.len()) {
            (1, 33) => Some(Record::Leaf(Hash(b[1..].try_into().ok()?))),
            (2, 133) => Some(Record::Branch {
                left: get_edge(&b[1..67])?,
                right: get_edge(&b[67..])?,
            }),
            (3, 67) => Some(Record::Root(get_edge(&b[1..])?)),
            _ => None,
        }
    }
}

/// A record to store: key and value, under the epoch being built.
pub type Write = ([u8; 34], Vec<u8>);

/// Versioned records: the newest value of `key` written at an epoch not after `epoch`.
pub trait Versioned {
    fn get(&self, key: &[u8; 34], epoch: u64) -> Result<Option<Vec<u8>>, TrieError>;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TrieError {
    #[error("the map store failed: {0}")]
    Store(String),
    #[error("corrupt map record under node {0}")]
    Corrupt(String),
    #[error("a trie branch at depth {0} is missing a child the path needs")]
    Broken(usize),
}

/// The hash at depth `top` of a subtree whose only non-empty node below `top` on `path`
/// is at depth `depth` with hash `hash`: every level between has one empty side.
pub fn climb<D: Digest>(h: &Coniks<D>, top: usize, depth: usize, path: &Index, hash: Hash) -> Hash {
    let mut cur = hash;
    for d in (top..depth).rev() {
        let mut other = *path;
        other[d / 8] ^= 0x80 >> (d % 8);
        let empty = h.empty(&other, d + 1);
        cur = if bit(path, d) {
            h.children(&empty, &cur)
        } else {
            h.children(&cur, &empty)
        };
    }
    cur
}

/// Length of the common prefix of `a` and `b`, in bits, at most `limit`.
fn common_bits(a: &Index, b: &Index, limit: usize) -> usize {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            return (i * 8 + diff.leading_zeros() as usize).min(limit);
        }
    }
    limit
}

/// Reads the map as of one epoch.
pub struct Reader<'a, D, S: ?Sized> {
    h: &'a Coniks<D>,
    store: &'a S,
    epoch: u64,
}

// Only references and a number: copying a reader never copies the store.
impl<D, S: ?Sized> Clone for Reader<'_, D, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D, S: ?Sized> Copy for Reader<'_, D, S> {}

impl<'a, D: Digest, S: Versioned + ?Sized> Reader<'a, D, S> {
    pub fn new(h: &'a Coniks<D>, store: &'a S, epoch: u64) -> Self {
        Reader { h, store, epoch }
    }

    fn record(&self, key: &[u8; 34]) -> Result<Option<Record>, TrieError> {
        match self.store.get(key, self.epoch)? {
            None => Ok(None),
            Some(b) => Record::decode(&b)
                .map(Some)
                .ok_or_else(|| TrieError::Corrupt(hex(key))),
        }
    }

    fn root_edge(&self) -> Result<Option<Edge>, TrieError> {
        match self.record(&ROOT_KEY)? {
            None => Ok(None),
            Some(Record::Root(e)) => Ok(Some(e)),
            Some(_) => Err(TrieError::Corrupt("root".into())),
        }
    }

    /// The node's own hash (at its own depth).
    fn own_hash(&self, node: &NodeId) -> Result<(Hash, Record), TrieError> {
        match self.record(&node.key())? {
            Some(Record::Leaf(h)) if node.depth() == DEPTH => Ok((h, Record::Leaf(h))),
            Some(r @ Record::Branch { .. }) if node.depth() < DEPTH => {
                let Record::Branch { left, right } = &r else {
                    unreachable!("matched a branch")
                };
                Ok((self.h.children(&left.top, &right.top), r))
            }
            _ => Err(TrieError::Broken(node.depth())),
        }
    }

    /// The map root at this epoch.
    pub fn root(&self) -> Result<Hash, TrieError> {
        Ok(match self.root_edge()? {
            Some(e) => e.top,
            None => self.h.empty(&[0; 32], 0),
        })
    }

    /// The proof for `index` at this epoch, and the leaf hash it holds (if any).
    pub fn prove(&self, index: &Index) -> Result<(Proof, Option<Hash>), TrieError> {
        let mut siblings = vec![None; DEPTH];
        let mut next = self.root_edge()?;
        while let Some(edge) = next.take() {
            let node = edge.node;
            let c = common_bits(index, &node.prefix, node.depth());
            if c < node.depth() {
                // The index leaves this edge at depth c: the node's subtree, climbed to
                // depth c + 1, is the only non-empty sibling left; below it all is empty.
                let (own, _) = self.own_hash(&node)?;
                siblings[c] = Some(climb(self.h, c + 1, node.depth(), &node.prefix, own));
                return Ok((Proof { siblings }, None));
            }
            match self.own_hash(&node)? {
                (h, Record::Leaf(_)) => return Ok((Proof { siblings }, Some(h))),
                (_, Record::Branch { left, right }) => {
                    let d = node.depth();
                    let (mine, other) = if bit(index, d) {
                        (right, left)
                    } else {
                        (left, right)
                    };
                    siblings[d] = Some(other.top);
                    next = Some(mine);
                }
                (_, Record::Root(_)) => unreachable!("own_hash returns leaves and branches"),
            }
        }
        Ok((Proof { siblings }, None))
    }
}

/// Versioned records in memory, for monitors, tests and benchmarks.
#[derive(Debug, Default)]
pub struct MemoryStore(BTreeMap<([u8; 34], u64), Vec<u8>>);

impl MemoryStore {
    /// Stores what [`update`] returned for `epoch`.
    pub fn write(&mut self, epoch: u64, writes: Vec<Write>) {
        for (k, v) in writes {
            self.0.insert((k, epoch), v);
        }
    }
}

impl Versioned for MemoryStore {
    fn get(&self, key: &[u8; 34], epoch: u64) -> Result<Option<Vec<u8>>, TrieError> {
        Ok(self
            .0
            .range((*key, 0)..=(*key, epoch))
            .next_back()
            .map(|(_, v)| v.clone()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Batches smaller than this are merged on the calling thread: below it, starting a thread
/// costs more than the hashing it would share.
const PARALLEL_MIN: usize = 2048;

/// Builds epoch `epoch` from the map at `epoch - 1` (read from `store`) and `changes`
/// (`(index, new leaf hash)`, sorted by index, indexes distinct). Returns the new root and
/// the records to store under `epoch`, as `(key, value)`; the caller writes them in one
/// batch.
///
/// A large batch is split between the machine's cores where the trie branches near the
/// top: the two sides of a branch are independent subtrees. The result, records included,
/// is the same as on one thread.
pub fn update<D: Digest + Sync, S: Versioned + Sync + ?Sized>(
    h: &Coniks<D>,
    store: &S,
    epoch: u64,
    changes: &[(Index, Hash)],
) -> Result<(Hash, Vec<Write>), TrieError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    update_on(h, store, epoch, changes, threads)
}

/// [`update`] with the batch shared by at most `threads` threads.
pub fn update_on<D: Digest + Sync, S: Versioned + Sync + ?Sized>(
    h: &Coniks<D>,
    store: &S,
    epoch: u64,
    changes: &[(Index, Hash)],
    threads: usize,
) -> Result<(Hash, Vec<Write>), TrieError> {
    let before = Reader::new(h, store, epoch.saturating_sub(1));
    let mut u = Updater {
        r: before,
        writes: Vec::new(),
        threads: threads.max(1),
    };
    let old = u.r.root_edge()?;
    let Some(edge) = u.merge(0, old, changes)? else {
        return Ok((h.empty(&[0; 32], 0), u.writes));
    };
    if old != Some(edge) {
        u.writes.push((ROOT_KEY, Record::Root(edge).encode()));
    }
    Ok((edge.top, u.writes))
}

struct Updater<'a, D, S: ?Sized> {
    r: Reader<'a, D, S>,
    writes: Vec<Write>,
    /// Threads this updater may use, itself included.
    threads: usize,
}

impl<D: Digest + Sync, S: Versioned + Sync + ?Sized> Updater<'_, D, S> {
    fn write(&mut self, node: NodeId, rec: &Record) {
        self.writes.push((node.key(), rec.encode()));
    }

    /// Runs `left` and `right`, the two sides of one branch, on two threads when both are
    /// big enough and a thread is to spare, else one after the other. The left side's
    /// records come first either way.
    fn both<L: Send, R>(
        &mut self,
        sizes: (usize, usize),
        left: impl FnOnce(&mut Self) -> L + Send,
        right: impl FnOnce(&mut Self) -> R,
    ) -> (L, R) {
        if self.threads < 2 || sizes.0.min(sizes.1) < PARALLEL_MIN {
            let l = left(self);
            return (l, right(self));
        }
        let mut l_side = Updater {
            r: self.r,
            writes: Vec::new(),
            threads: self.threads / 2,
        };
        let mut r_side = Updater {
            r: self.r,
            writes: Vec::new(),
            threads: self.threads - l_side.threads,
        };
        let (l, r) = std::thread::scope(|s| {
            let task = s.spawn(|| left(&mut l_side));
            let r = right(&mut r_side);
            let l = task
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (l, r)
        });
        self.writes.extend(l_side.writes);
        self.writes.extend(r_side.writes);
        (l, r)
    }

    /// The edge hanging at depth `top` (one below its parent) once `batch` (all under
    /// that position) is merged into `existing`.
    fn merge(
        &mut self,
        top: usize,
        existing: Option<Edge>,
        batch: &[(Index, Hash)],
    ) -> Result<Option<Edge>, TrieError> {
        if batch.is_empty() {
            return Ok(existing);
        }
        let Some(edge) = existing else {
            return Ok(Some(self.fresh(top, batch)));
        };
        let node = edge.node;
        // Where the batch and the node's path part: the shallowest divergence.
        let c = batch
            .iter()
            .map(|(i, _)| common_bits(i, &node.prefix, node.depth()))
            .min()
            .expect("batch is not empty");
        if c < node.depth() {
            // A new branch at depth c: the node on one side, part of the batch perhaps
            // joining it, the rest of the batch on the other side.
            let node_right = bit(&node.prefix, c);
            let split = batch.partition_point(|(i, _)| !bit(i, c));
            let (l, r) = batch.split_at(split);
            let (same, other) = if node_right { (r, l) } else { (l, r) };
            let (own, _) = self.r.own_hash(&node)?;
            let lowered = Edge {
                node,
                top: climb(self.r.h, c + 1, node.depth(), &node.prefix, own),
            };
            let (mine, theirs) = self.both(
                (same.len(), other.len()),
                |u| u.merge(c + 1, Some(lowered), same),
                |u| u.fresh(c + 1, other),
            );
            let mine = mine?.expect("non-empty");
            let (left, right) = if node_right {
                (theirs, mine)
            } else {
                (mine, theirs)
            };
            return Ok(Some(self.branch(top, c, &node.prefix, left, right)));
        }
        // The whole batch lies under the node.
        match self.r.own_hash(&node)?.1 {
            Record::Leaf(_) => {
                let (index, leaf) = batch[0];
                debug_assert_eq!(batch.len(), 1, "indexes are distinct");
                self.write(node, &Record::Leaf(leaf));
                Ok(Some(Edge {
                    node,
                    top: climb(self.r.h, top, DEPTH, &index, leaf),
                }))
            }
            Record::Branch { left, right } => {
                let d = node.depth();
                let split = batch.partition_point(|(i, _)| !bit(i, d));
                let (lb, rb) = batch.split_at(split);
                let (left, right) = self.both(
                    (lb.len(), rb.len()),
                    |u| u.merge(d + 1, Some(left), lb),
                    |u| u.merge(d + 1, Some(right), rb),
                );
                let (left, right) = (left?.expect("non-empty"), right?.expect("non-empty"));
                Ok(Some(self.branch(top, d, &node.prefix, left, right)))
            }
            Record::Root(_) => Err(TrieError::Corrupt(hex(&node.key()))),
        }
    }

    /// Writes a branch at depth `d` on `path` and returns its edge hanging at `top`.
    fn branch(&mut self, top: usize, d: usize, path: &Index, left: Edge, right: Edge) -> Edge {
        let node = NodeId::new(d, path);
        let own = self.r.h.children(&left.top, &right.top);
        self.write(node, &Record::Branch { left, right });
        Edge {
            node,
            top: climb(self.r.h, top, d, path, own),
        }
    }

    /// A new subtree holding exactly `batch` (non-empty), hanging at depth `top`.
    fn fresh(&mut self, top: usize, batch: &[(Index, Hash)]) -> Edge {
        let (first, last) = (&batch[0].0, &batch[batch.len() - 1].0);
        if batch.len() == 1 {
            let node = NodeId::new(DEPTH, first);
            self.write(node, &Record::Leaf(batch[0].1));
            return Edge {
                node,
                top: climb(self.r.h, top, DEPTH, first, batch[0].1),
            };
        }
        // Sorted, so the first and last index part where the whole batch first does.
        let d = common_bits(first, last, DEPTH);
        let split = batch.partition_point(|(i, _)| !bit(i, d));
        let (lb, rb) = batch.split_at(split);
        let (left, right) = self.both(
            (lb.len(), rb.len()),
            |u| u.fresh(d + 1, lb),
            |u| u.fresh(d + 1, rb),
        );
        self.branch(top, d, first, left, right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasher::ConiksSha256;
    use crate::map;
    use proptest::prelude::*;

    fn index() -> impl Strategy<Value = Index> {
        // Few distinct first bytes and a short random tail, so updates hit existing
        // leaves, split edges high and low, and share long prefixes.
        (0u8..4, 0u8..4, any::<[u8; 30]>()).prop_map(|(a, b, rest)| {
            let mut i = [0u8; 32];
            i[0] = a << 6;
            i[1] = b;
            i[2..].copy_from_slice(&rest);
            i
        })
    }

    fn epochs() -> impl Strategy<Value = Vec<BTreeMap<Index, u8>>> {
        prop::collection::vec(
            prop::collection::btree_map(index(), any::<u8>(), 0..8),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After every epoch the trie's root and proofs, at that epoch and every earlier
        /// one, are those of the map defined from all its leaves (`map::root`/`prove`).
        #[test]
        fn the_trie_agrees_with_the_definition_at_every_epoch(
            epochs in epochs(),
            probes in prop::collection::vec(index(), 4),
        ) {
            let h = ConiksSha256::new(3);
            let mut store = MemoryStore::default();
            let mut leaves: BTreeMap<Index, Hash> = BTreeMap::new();
            let mut history = vec![leaves.clone()];
            for (n, changes) in epochs.iter().enumerate() {
                let epoch = n as u64 + 1;
                let batch: Vec<(Index, Hash)> =
                    changes.iter().map(|(i, v)| (*i, h.leaf(i, &[*v]))).collect();
                let (root, writes) = update(&h, &store, epoch, &batch).unwrap();
                store.write(epoch, writes);
                leaves.extend(batch.iter().copied());
                history.push(leaves.clone());
                let all: Vec<(Index, Hash)> = leaves.iter().map(|(i, l)| (*i, *l)).collect();
                prop_assert_eq!(root, map::root(&h, &all));
                for (e, then) in history.iter().enumerate() {
                    let then: Vec<(Index, Hash)> = then.iter().map(|(i, l)| (*i, *l)).collect();
                    let r = Reader::new(&h, &store, e as u64);
                    prop_assert_eq!(r.root().unwrap(), map::root(&h, &then));
                    let members = then.iter().map(|(i, _)| *i).take(3);
                    for ix in probes.iter().copied().chain(members) {
                        let (proof, leaf) = r.prove(&ix).unwrap();
                        prop_assert_eq!(&proof, &map::prove(&h, &then, &ix), "epoch {}", e);
                        let want = then.iter().find(|(i, _)| *i == ix).map(|(_, l)| *l);
                        prop_assert_eq!(leaf, want);
                    }
                }
            }
        }
    }

    /// Large batches are split over threads; the root and every record must be those of
    /// one thread, for a fresh trie and for one merged into an existing trie.
    #[test]
    fn threads_change_nothing_but_speed() {
        use sha2::{Digest, Sha256};
        let h = ConiksSha256::new(9);
        let index = |n: u32| -> Index { Sha256::digest(n.to_be_bytes()).into() };
        let batch = |range: std::ops::Range<u32>, tag: u8| {
            let mut b: Vec<(Index, Hash)> = range
                .map(|n| (index(n), h.leaf(&index(n), &[tag])))
                .collect();
            b.sort();
            b
        };
        let first = batch(0..10_000, 1);
        // The quarters under the root are big enough to be split off, twice over.
        for q in 0..4u8 {
            let n = first.iter().filter(|(i, _)| i[0] >> 6 == q).count();
            assert!(n >= PARALLEL_MIN, "quarter {q} holds {n}");
        }
        // Epoch 2 changes old leaves and adds new ones.
        let second = batch(5_000..15_000, 2);

        let (mut one, mut many) = (MemoryStore::default(), MemoryStore::default());
        for (epoch, changes) in [(1, &first), (2, &second)] {
            let a = update_on(&h, &one, epoch, changes, 1).unwrap();
            let b = update_on(&h, &many, epoch, changes, 4).unwrap();
            assert_eq!(a, b, "epoch {epoch}");
            one.write(epoch, a.1);
            many.write(epoch, b.1);
        }
        let all: BTreeMap<Index, Hash> = first.iter().chain(&second).copied().collect();
        let all: Vec<(Index, Hash)> = all.into_iter().collect();
        assert_eq!(
            Reader::new(&h, &many, 2).root().unwrap(),
            map::root(&h, &all)
        );
    }

    #[test]
    fn an_epoch_without_changes_writes_nothing() {
        let h = ConiksSha256::new(3);
        let mut store = MemoryStore::default();
        let (_, writes) = update(&h, &store, 1, &[([1; 32], h.leaf(&[1; 32], b"x"))]).unwrap();
        assert_eq!(writes.len(), 2, "a leaf and the root pointer");
        store.write(1, writes);
        let (root, writes) = update(&h, &store, 2, &[]).unwrap();
        assert!(writes.is_empty());
        assert_eq!(root, Reader::new(&h, &store, 1).root().unwrap());
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let h = ConiksSha256::new(3);
        let mut store = MemoryStore::default();
        store.write(1, vec![(ROOT_KEY, vec![3, 1, 2])]);
        let r = Reader::new(&h, &store, 1);
        assert!(matches!(r.root(), Err(TrieError::Corrupt(_))));
        assert!(r.prove(&[0; 32]).is_err());
        assert!(update(&h, &store, 2, &[([1; 32], Hash([0; 32]))]).is_err());
    }
}
