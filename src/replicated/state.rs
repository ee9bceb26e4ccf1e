//! The log's state machine application: leaves go into the Merkle tree and the leaf store
//! in the same RocksDB write as Raft's `last_applied`, so a re-applied entry after a crash
//! finds its leaves already present and appends nothing twice.

use super::command::{decode_leaves, encode_result, ApplyOutcome};
use crate::merkle::{Hash, MerkleStore};
use crate::sigsum::leaf::TreeLeaf;
use quorumlog_raft::types::{Command, CommandResult};
use quorumlog_raft::Application;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::collections::HashSet;
use std::io;
use std::sync::{Arc, RwLock};

/// Column family holding the 128-byte leaves by index (for get-leaves).
pub const CF_LEAVES: &str = "leaves";

/// The log's replicated state on one node.
#[derive(Default)]
pub struct LeafState {
    tree: RwLock<Option<Arc<MerkleStore>>>,
}

impl LeafState {
    /// An empty state, bound to a database by [`Application::attach`].
    pub fn new() -> LeafState {
        LeafState::default()
    }

    /// The Merkle tree, once attached. A snapshot install replaces it.
    pub fn tree(&self) -> Option<Arc<MerkleStore>> {
        self.tree.read().unwrap_or_else(|e| e.into_inner()).clone()
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
}

impl Application for LeafState {
    fn column_families(&self) -> Vec<ColumnFamilyDescriptor> {
        let mut cfs = MerkleStore::column_families();
        cfs.push(ColumnFamilyDescriptor::new(CF_LEAVES, Options::default()));
        cfs
    }

    fn db_options(&self) -> Options {
        MerkleStore::db_options()
    }

    fn attach(&self, db: Arc<DB>) -> io::Result<()> {
        let tree = MerkleStore::new(db).map_err(io::Error::other)?;
        *self.tree.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(tree));
        Ok(())
    }

    fn apply(
        &self,
        commands: &[&Command],
        meta: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<Vec<CommandResult>> {
        let tree = self
            .tree()
            .ok_or_else(|| io::Error::other("state database not attached"))?;
        let decoded: Vec<Result<Vec<TreeLeaf>, String>> =
            commands.iter().map(|c| decode_leaves(c)).collect();
        let leaves: Vec<&TreeLeaf> = decoded.iter().flatten().flatten().collect();
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
                meta(batch);
            })
            .map_err(io::Error::other)?;
        let mut indexes = outcome.indexes.into_iter();
        Ok(decoded
            .iter()
            .map(|d| match d {
                Ok(ls) => encode_result(&ApplyOutcome::Indexes(
                    indexes.by_ref().take(ls.len()).collect(),
                )),
                Err(e) => encode_result(&ApplyOutcome::Invalid(e.clone())),
            })
            .collect())
    }

    fn summary(&self) -> String {
        match self.tree() {
            None => "tree=unattached".into(),
            Some(t) => {
                let size = t.size();
                match t.root(size) {
                    Ok(root) => format!("tree_size={size} root={root}"),
                    Err(e) => format!("tree_size={size} root_error={e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicated::command::{decode_result, encode_leaves};
    use crate::sigsum::crypto::Signature;

    fn leaf(n: u8) -> TreeLeaf {
        TreeLeaf {
            checksum: Hash([n; 32]),
            signature: Signature([n; 64]),
            key_hash: Hash([1; 32]),
        }
    }

    fn open(dir: &std::path::Path) -> LeafState {
        let state = LeafState::new();
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
        let first = state.apply(&[&cmd], &mut |_| metas += 1).unwrap();
        // As after a crash between applying and recording last_applied elsewhere.
        let again = state.apply(&[&cmd], &mut |_| metas += 1).unwrap();
        assert_eq!(metas, 2, "the Raft metadata goes into every apply's batch");
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
        let out = state.apply(&[&bad, &good], &mut |_| {}).unwrap();
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
}
