//! The log's state machine application. Leaves go into the Merkle tree and the leaf store
//! in the same RocksDB write as Raft's `last_applied`, so a re-applied entry after a crash
//! finds its leaves already present and appends nothing twice. Tree heads (signed, then
//! published with cosignatures) are replicated state too, checked against the tree when
//! applied: a head that is smaller than the last one, or whose root differs from the tree at
//! its size, or whose signature is not the log's, is refused and changes nothing.

use super::command::{decode, encode_result, ApplyOutcome, LogCommand};
use crate::kt::directory::{Applied, Directory};
use crate::merkle::{Hash, MerkleStore};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::leaf::TreeLeaf;
use crate::sigsum::tree_head::{CosignedTreeHead, SignedTreeHead};
use crate::status::{DirectoryStatus, NodeAppStatus, PublishedHead, Publishing};
use quorumlog_raft::types::{Command, CommandResult};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::collections::HashSet;
use std::io;
use std::sync::{Arc, RwLock};

/// Column family holding the 128-byte leaves by index (for get-leaves).
pub const CF_LEAVES: &str = "leaves";
/// Column family holding the latest signed and published tree heads.
pub const CF_HEADS: &str = "tree_heads";
const KEY_SIGNED: &[u8] = b"signed";
const KEY_PUBLISHED: &[u8] = b"published";

#[derive(Default, Clone)]
struct Heads {
    signed: Option<SignedTreeHead>,
    published: Option<CosignedTreeHead>,
}

/// The log's replicated state on one node.
pub struct LeafState {
    log_key: PublicKey,
    tree: RwLock<Option<Arc<MerkleStore>>>,
    heads: RwLock<Heads>,
    directory: Option<Arc<Directory>>,
}

impl LeafState {
    /// An empty state for the log with key `log_key`, bound to a database by
    /// [`LeafState::attach`].
    pub fn new(log_key: PublicKey) -> LeafState {
        LeafState {
            log_key,
            tree: RwLock::default(),
            heads: RwLock::default(),
            directory: None,
        }
    }

    /// The state of a log that also runs a Key Transparency directory (docs/kt.md).
    pub fn with_directory(mut self, directory: Arc<Directory>) -> LeafState {
        self.directory = Some(directory);
        self
    }

    pub fn directory(&self) -> Option<&Arc<Directory>> {
        self.directory.as_ref()
    }

    /// The log's public key.
    pub fn log_key(&self) -> &PublicKey {
        &self.log_key
    }

    /// The Merkle tree, once attached. A snapshot install replaces it.
    pub fn tree(&self) -> Option<Arc<MerkleStore>> {
        self.tree.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest signed tree head recorded in the replicated state.
    pub fn signed_head(&self) -> Option<SignedTreeHead> {
        self.heads.read().unwrap_or_else(|e| e.into_inner()).signed
    }

    /// The latest published (cosigned) tree head this node has applied.
    pub fn published_head(&self) -> Option<CosignedTreeHead> {
        self.heads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .published
            .clone()
    }

    /// The leaf at `index`, if the tree has it.
    pub fn leaf(&self, index: u64) -> io::Result<Option<TreeLeaf>> {
        let Some(tree) = self.tree() else {
            return Ok(None);
        };
        let cf = tree
            .db()
            .cf_handle(CF_LEAVES)
            .ok_or_else(|| io::Error::other("leaves column family missing"))?;
        Ok(tree
            .db()
            .get_cf(cf, index.to_be_bytes())
            .map_err(io::Error::other)?
            .and_then(|b| TreeLeaf::from_bytes(&b)))
    }

    /// Leaves `[start, end)`, read in one pass.
    pub fn leaves(&self, start: u64, end: u64) -> io::Result<Vec<TreeLeaf>> {
        let tree = self
            .tree()
            .ok_or_else(|| io::Error::other("state database not attached"))?;
        let db = tree.db();
        let cf = db
            .cf_handle(CF_LEAVES)
            .ok_or_else(|| io::Error::other("leaves column family missing"))?;
        let keys: Vec<[u8; 8]> = (start..end).map(|i| i.to_be_bytes()).collect();
        let mut out = Vec::with_capacity(keys.len());
        for (i, v) in db
            .batched_multi_get_cf(cf, keys.iter(), true)
            .into_iter()
            .enumerate()
        {
            let v = v.map_err(io::Error::other)?;
            let leaf = v.and_then(|b| TreeLeaf::from_bytes(&b)).ok_or_else(|| {
                io::Error::other(format!("leaf {} missing from the store", start + i as u64))
            })?;
            out.push(leaf);
        }
        Ok(out)
    }

    fn load_heads(db: &DB) -> io::Result<Heads> {
        let cf = db
            .cf_handle(CF_HEADS)
            .ok_or_else(|| io::Error::other("tree heads column family missing"))?;
        let get = |k: &[u8]| db.get_cf(cf, k).map_err(io::Error::other);
        let signed = match get(KEY_SIGNED)? {
            Some(b) => Some(SignedTreeHead::parse(&b).map_err(io::Error::other)?),
            None => None,
        };
        let published = match get(KEY_PUBLISHED)? {
            Some(b) => Some(CosignedTreeHead::parse(&b).map_err(io::Error::other)?),
            None => None,
        };
        Ok(Heads { signed, published })
    }

    /// Checks a head against the tree and the log key.
    fn check_head(
        &self,
        tree: &MerkleStore,
        head: &SignedTreeHead,
        last: Option<u64>,
    ) -> Result<(), String> {
        if let Some(last) = last {
            if head.size < last {
                return Err(format!(
                    "tree head of size {} is smaller than the recorded size {last}",
                    head.size
                ));
            }
        }
        if head.size > tree.size() {
            return Err(format!(
                "tree head of size {} is beyond the tree (size {})",
                head.size,
                tree.size()
            ));
        }
        let root = tree.root(head.size).map_err(|e| e.to_string())?;
        if root != head.root_hash {
            return Err(format!(
                "tree head root {} differs from the tree's root {root} at size {}",
                head.root_hash, head.size
            ));
        }
        head.verify(&self.log_key).map_err(|e| e.to_string())
    }

    /// Applies a run of leaf batches in one write.
    fn apply_leaves(
        &self,
        tree: &MerkleStore,
        batches: &[Vec<TreeLeaf>],
        progress: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<Vec<CommandResult>> {
        let leaves: Vec<&TreeLeaf> = batches.iter().flatten().collect();
        let hashes: Vec<Hash> = leaves.iter().map(|l| l.leaf_hash()).collect();
        let start = tree.size();
        let leaves_cf = tree
            .db()
            .cf_handle(CF_LEAVES)
            .ok_or_else(|| io::Error::other("leaves column family missing"))?;
        let outcome = tree
            .append_with(&hashes, |batch, outcome| {
                let mut written = HashSet::new();
                for (leaf, &i) in leaves.iter().zip(&outcome.indexes) {
                    if i >= start && written.insert(i) {
                        batch.put_cf(leaves_cf, i.to_be_bytes(), leaf.to_bytes());
                    }
                }
                progress(batch);
            })
            .map_err(io::Error::other)?;
        let mut indexes = outcome.indexes.into_iter();
        Ok(batches
            .iter()
            .map(|b| {
                encode_result(&ApplyOutcome::Indexes(
                    indexes.by_ref().take(b.len()).collect(),
                ))
            })
            .collect())
    }

    /// Applies one non-leaf command (a head, a directory command, or an invalid command)
    /// in its own write.
    fn apply_other(
        &self,
        tree: &MerkleStore,
        command: Result<LogCommand, String>,
        progress: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<CommandResult> {
        let db = tree.db();
        let cf = db
            .cf_handle(CF_HEADS)
            .ok_or_else(|| io::Error::other("tree heads column family missing"))?;
        let mut heads = self.heads.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut batch = WriteBatch::default();
        let outcome = match command {
            Err(e) => ApplyOutcome::Invalid(e),
            // Runs of leaf batches go to apply_leaves; this arm only keeps the match total.
            Ok(LogCommand::Leaves(_)) => ApplyOutcome::Invalid("misrouted leaf batch".into()),
            Ok(LogCommand::SignedHead(h)) => {
                match self.check_head(tree, &h, heads.signed.map(|s| s.size)) {
                    Ok(()) => {
                        batch.put_cf(cf, KEY_SIGNED, h.to_ascii());
                        heads.signed = Some(h);
                        ApplyOutcome::HeadRecorded
                    }
                    Err(e) => ApplyOutcome::Invalid(e),
                }
            }
            Ok(LogCommand::PublishedHead(h)) => {
                let last = heads.published.as_ref().map(|p| p.head.size);
                match self.check_head(tree, &h.head, last) {
                    Ok(()) => {
                        batch.put_cf(cf, KEY_PUBLISHED, h.to_ascii());
                        heads.published = Some(h);
                        ApplyOutcome::HeadRecorded
                    }
                    Err(e) => ApplyOutcome::Invalid(e),
                }
            }
            Ok(kt) => return self.apply_directory(tree, kt, progress),
        };
        progress(&mut batch);
        db.write(batch).map_err(io::Error::other)?;
        if outcome == ApplyOutcome::HeadRecorded {
            *self.heads.write().unwrap_or_else(|e| e.into_inner()) = heads;
        } else if let ApplyOutcome::Invalid(e) = &outcome {
            tracing::warn!(reason = %e, "refused a replicated command");
        }
        Ok(encode_result(&outcome))
    }

    /// Applies a directory command, each in one write with its progress.
    fn apply_directory(
        &self,
        tree: &MerkleStore,
        command: LogCommand,
        progress: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<CommandResult> {
        let refuse = |reason: String,
                      progress: &mut dyn FnMut(&mut WriteBatch)|
         -> io::Result<CommandResult> {
            tracing::warn!(reason = %reason, "refused a directory command");
            let mut batch = WriteBatch::default();
            progress(&mut batch);
            tree.db().write(batch).map_err(io::Error::other)?;
            Ok(encode_result(&ApplyOutcome::Invalid(reason)))
        };
        let Some(dir) = &self.directory else {
            return refuse("this log runs no directory".into(), progress);
        };
        let applied = match command {
            LogCommand::KtUpdate(u) => dir.apply_update(&u, progress)?,
            LogCommand::KtMarker {
                epoch,
                timestamp_ms,
            } => dir.apply_marker(epoch, timestamp_ms, progress)?,
            LogCommand::KtHead { head, leaf } => {
                if let Err(e) = dir.check_head(&head, &leaf) {
                    return refuse(e, progress);
                }
                // The head and its Sigsum leaf land together: every recorded head is in
                // the log that witnesses cosign.
                let leaves_cf = tree
                    .db()
                    .cf_handle(CF_LEAVES)
                    .ok_or_else(|| io::Error::other("leaves column family missing"))?;
                let start = tree.size();
                let mut meta = Err(io::Error::other("head not staged"));
                let out = tree
                    .append_with(&[leaf.leaf_hash()], |batch, out| {
                        if out.indexes[0] >= start {
                            batch.put_cf(leaves_cf, out.indexes[0].to_be_bytes(), leaf.to_bytes());
                        }
                        meta = dir.put_head(batch, &head, out.indexes[0]);
                        progress(batch);
                    })
                    .map_err(io::Error::other)?;
                dir.headed(meta?);
                return Ok(encode_result(&ApplyOutcome::KtHead {
                    leaf_index: out.indexes[0],
                }));
            }
            _ => Err("not a directory command".into()),
        };
        match applied {
            Ok(Applied::Mutation { log_index, verdict }) => {
                Ok(encode_result(&ApplyOutcome::KtUpdate {
                    log_index,
                    verdict: verdict.map_or(0, |r| r.code()),
                }))
            }
            Ok(Applied::Epoch(e)) => Ok(encode_result(&ApplyOutcome::KtEpoch(e))),
            Err(reason) => refuse(reason, progress),
        }
    }
}

/// The state machine the node's [`crate::app::LogApplication`] runs.
impl LeafState {
    pub fn column_families(&self) -> Vec<ColumnFamilyDescriptor> {
        let mut cfs = MerkleStore::column_families();
        let mut leaves = Options::default();
        // Signatures and hashes do not compress; trying costs CPU at every flush. A
        // smaller memtable spreads flushes out instead of one 64 MiB burst.
        leaves.set_compression_type(rocksdb::DBCompressionType::None);
        leaves.set_write_buffer_size(16 << 20);
        cfs.push(ColumnFamilyDescriptor::new(CF_LEAVES, leaves));
        cfs.push(ColumnFamilyDescriptor::new(CF_HEADS, Options::default()));
        if self.directory.is_some() {
            cfs.extend(Directory::column_families());
        }
        cfs
    }

    pub fn db_options(&self) -> Options {
        MerkleStore::db_options()
    }

    pub fn attach(&self, db: Arc<DB>) -> io::Result<()> {
        let heads = Self::load_heads(&db)?;
        if let Some(dir) = &self.directory {
            dir.attach(db.clone())?;
        }
        let tree = MerkleStore::new(db).map_err(io::Error::other)?;
        *self.tree.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(tree));
        *self.heads.write().unwrap_or_else(|e| e.into_inner()) = heads;
        Ok(())
    }

    /// Applies the commands in order. Runs of leaf batches share one write; every other
    /// command is its own write, checked against the state as it stands at its place in
    /// the log. Every write records Raft's progress up to its last command, so nothing is
    /// applied twice after a crash.
    pub fn apply(
        &self,
        commands: &[&Command],
        progress: &mut dyn FnMut(&mut WriteBatch, usize),
    ) -> io::Result<Vec<CommandResult>> {
        let tree = self
            .tree()
            .ok_or_else(|| io::Error::other("state database not attached"))?;
        let decoded: Vec<Result<LogCommand, String>> = commands.iter().map(|c| decode(c)).collect();
        let mut results = Vec::with_capacity(commands.len());
        let mut rest = decoded.into_iter().peekable();
        while let Some(cmd) = rest.next() {
            match cmd {
                Ok(LogCommand::Leaves(first)) => {
                    let mut run = vec![first];
                    while let Some(Ok(LogCommand::Leaves(_))) = rest.peek() {
                        if let Some(Ok(LogCommand::Leaves(l))) = rest.next() {
                            run.push(l);
                        }
                    }
                    let done = results.len() + run.len();
                    results.extend(self.apply_leaves(&tree, &run, &mut |b| progress(b, done))?);
                }
                other => {
                    let done = results.len() + 1;
                    results.push(self.apply_other(&tree, other, &mut |b| progress(b, done))?);
                }
            }
        }
        if commands.is_empty() {
            // Only membership or blank entries: still record Raft's progress.
            let mut batch = WriteBatch::default();
            progress(&mut batch, 0);
            tree.db().write(batch).map_err(io::Error::other)?;
        }
        Ok(results)
    }

    /// This node's status, with the node-local facts about publication it is given.
    pub fn status(&self, publishing: Publishing, key_loaded: bool) -> NodeAppStatus {
        let tree = self.tree();
        let tree_size = tree.as_ref().map_or(0, |t| t.size());
        let root_hash = tree
            .and_then(|t| t.root(tree_size).ok())
            .map(|r| r.to_hex());
        NodeAppStatus {
            tree_size,
            root_hash,
            signed_size: self.signed_head().map(|h| h.size),
            published: self.published_head().as_ref().map(PublishedHead::from),
            publishing,
            key_loaded,
            directory: self.directory.as_ref().map(|d| {
                let m = d.meta();
                DirectoryStatus {
                    epoch: m.epoch,
                    signed_epoch: m.signed_epoch,
                    pending: m.pending,
                    log_size: d.mutation_log().map_or(0, |l| l.size()),
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::signer::LogSigner;
    use crate::replicated::command::{decode_result, encode_leaves};
    use crate::replicated::command::{encode, LogCommand};
    use crate::sigsum::crypto::Signature;

    const SEED: [u8; 32] = [9; 32];

    fn leaf(n: u8) -> TreeLeaf {
        TreeLeaf {
            checksum: Hash([n; 32]),
            signature: Signature([n; 64]),
            key_hash: Hash([1; 32]),
        }
    }

    fn open(dir: &std::path::Path) -> LeafState {
        let state = LeafState::new(LogSigner::from_seed(&SEED).public_key());
        let mut opts = state.db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&opts, dir, state.column_families()).unwrap();
        state.attach(Arc::new(db)).unwrap();
        state
    }

    #[test]
    fn applying_an_entry_twice_adds_nothing_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let cmd = encode_leaves(&[leaf(1), leaf(2), leaf(1)]);
        let mut metas = 0;
        let first = state.apply(&[&cmd], &mut |_, _| metas += 1).unwrap();
        // As after a crash between applying and recording last_applied elsewhere.
        let again = state.apply(&[&cmd], &mut |_, _| metas += 1).unwrap();
        assert_eq!(metas, 2, "the Raft progress goes into every apply's batch");
        assert_eq!(first, again);
        assert_eq!(
            decode_result(&first[0]).unwrap(),
            ApplyOutcome::Indexes(vec![0, 1, 0])
        );
        assert_eq!(state.tree().unwrap().size(), 2);
        assert_eq!(state.leaf(1).unwrap(), Some(leaf(2)));
        assert_eq!(state.leaf(2).unwrap(), None);
    }

    #[test]
    fn an_invalid_command_applies_nothing_but_others_in_the_chunk_do() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let bad = Command(vec![0; 100]);
        let good = encode_leaves(&[leaf(5)]);
        let out = state.apply(&[&bad, &good], &mut |_, _| {}).unwrap();
        assert!(matches!(
            decode_result(&out[0]).unwrap(),
            ApplyOutcome::Invalid(_)
        ));
        assert_eq!(
            decode_result(&out[1]).unwrap(),
            ApplyOutcome::Indexes(vec![0])
        );
        assert_eq!(state.tree().unwrap().size(), 1);
    }

    fn outcome(state: &LeafState, cmd: LogCommand) -> ApplyOutcome {
        decode_result(&state.apply(&[&encode(&cmd)], &mut |_, _| {}).unwrap()[0]).unwrap()
    }

    #[test]
    fn tree_heads_are_checked_against_the_tree_and_never_regress() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let signer = LogSigner::from_seed(&SEED);
        let tree = state.tree().unwrap();
        state
            .apply(
                &[&encode_leaves(&[leaf(1), leaf(2), leaf(3)])],
                &mut |_, _| {},
            )
            .unwrap();
        let at = |n: u64| signer.sign_tree_head(n, tree.root(n).unwrap());
        assert_eq!(
            outcome(&state, LogCommand::SignedHead(at(2))),
            ApplyOutcome::HeadRecorded
        );
        // Smaller than the recorded head: refused.
        assert!(matches!(
            outcome(&state, LogCommand::SignedHead(at(1))),
            ApplyOutcome::Invalid(_)
        ));
        // A root that is not the tree's at that size (a fork): refused.
        let forked = signer.sign_tree_head(3, Hash([0xee; 32]));
        assert!(matches!(
            outcome(&state, LogCommand::SignedHead(forked)),
            ApplyOutcome::Invalid(_)
        ));
        // Beyond the tree: refused.
        assert!(matches!(
            outcome(
                &state,
                LogCommand::SignedHead(signer.sign_tree_head(4, Hash([0; 32])))
            ),
            ApplyOutcome::Invalid(_)
        ));
        // Signed by another key: refused.
        let stranger = LogSigner::from_seed(&[3; 32]).sign_tree_head(3, tree.root(3).unwrap());
        assert!(matches!(
            outcome(&state, LogCommand::SignedHead(stranger)),
            ApplyOutcome::Invalid(_)
        ));
        assert_eq!(state.signed_head(), Some(at(2)));
        let published = |n| CosignedTreeHead {
            head: at(n),
            cosignatures: vec![],
        };
        assert_eq!(
            outcome(&state, LogCommand::PublishedHead(published(3))),
            ApplyOutcome::HeadRecorded
        );
        assert!(matches!(
            outcome(&state, LogCommand::PublishedHead(published(2))),
            ApplyOutcome::Invalid(_)
        ));
        assert_eq!(state.published_head(), Some(published(3)));
        // Heads are in the database: a fresh attach (restart, snapshot install) sees them.
        let signed2 = at(2);
        drop(tree);
        drop(state);
        let again = open(dir.path());
        assert_eq!(again.signed_head(), Some(signed2));
        assert_eq!(again.published_head().map(|p| p.head.size), Some(3));
    }

    #[test]
    fn a_head_after_leaves_in_one_chunk_sees_those_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let signer = LogSigner::from_seed(&SEED);
        // Root of a 2-leaf tree, computed on a scratch state.
        let scratch_dir = tempfile::tempdir().unwrap();
        let scratch = open(scratch_dir.path());
        scratch
            .apply(&[&encode_leaves(&[leaf(1), leaf(2)])], &mut |_, _| {})
            .unwrap();
        let head = signer.sign_tree_head(2, scratch.tree().unwrap().root(2).unwrap());
        let leaves = encode_leaves(&[leaf(1), leaf(2)]);
        let sign = encode(&LogCommand::SignedHead(head));
        let more = encode_leaves(&[leaf(3)]);
        let mut metas = Vec::new();
        let out = state
            .apply(&[&leaves, &sign, &more], &mut |_, done| metas.push(done))
            .unwrap();
        assert_eq!(metas, vec![1, 2, 3], "every write records its progress");
        assert_eq!(decode_result(&out[1]).unwrap(), ApplyOutcome::HeadRecorded);
        assert_eq!(
            decode_result(&out[2]).unwrap(),
            ApplyOutcome::Indexes(vec![2])
        );
        assert_eq!(state.signed_head(), Some(head));
    }
}
