//! The map's versioned trie records (`quorumlog_kt::trie`) in RocksDB.
//!
//! Column family `kt_trie`, key `node key (34 bytes) || !epoch (8, big-endian)`: the
//! versions of one node sort newest first, so a forward seek to `node || !e` lands on the
//! newest version not after epoch `e`. Records are only ever added, in the same write
//! batch as the rest of an epoch, so the trie of every epoch stays readable.

use quorumlog_kt::trie::{TrieError, Versioned, Write};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};

pub const CF_KT_TRIE: &str = "kt_trie";

const KEY_LEN: usize = 34 + 8;

fn versioned_key(node: &[u8; 34], epoch: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..34].copy_from_slice(node);
    k[34..].copy_from_slice(&(!epoch).to_be_bytes());
    k
}

/// The column family's descriptor: hashes do not compress.
pub fn column_family() -> ColumnFamilyDescriptor {
    let mut o = Options::default();
    o.set_compression_type(rocksdb::DBCompressionType::None);
    ColumnFamilyDescriptor::new(CF_KT_TRIE, o)
}

/// The trie's records in `db` (which must have [`column_family`]).
pub struct TrieStore<'a> {
    db: &'a DB,
}

impl<'a> TrieStore<'a> {
    pub fn new(db: &'a DB) -> TrieStore<'a> {
        TrieStore { db }
    }

    /// Adds the records `trie::update` returned for `epoch` to `batch`.
    pub fn put(
        &self,
        batch: &mut WriteBatch,
        epoch: u64,
        writes: &[Write],
    ) -> Result<(), TrieError> {
        let cf = self.cf()?;
        for (node, value) in writes {
            batch.put_cf(cf, versioned_key(node, epoch), value);
        }
        Ok(())
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily, TrieError> {
        self.db
            .cf_handle(CF_KT_TRIE)
            .ok_or_else(|| TrieError::Store(format!("column family {CF_KT_TRIE} is missing")))
    }
}

impl Versioned for TrieStore<'_> {
    fn get(&self, node: &[u8; 34], epoch: u64) -> Result<Option<Vec<u8>>, TrieError> {
        let from = versioned_key(node, epoch);
        let mut it = self
            .db
            .iterator_cf(self.cf()?, IteratorMode::From(&from, Direction::Forward));
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(TrieError::Store(e.to_string())),
            Some(Ok((k, v))) if k.len() == KEY_LEN && k[..34] == node[..] => Ok(Some(v.to_vec())),
            Some(Ok(_)) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_kt::hasher::{ConiksSha256, Hash, Index};
    use quorumlog_kt::map;
    use quorumlog_kt::trie::{self, MemoryStore, Reader};

    fn open(dir: &std::path::Path) -> DB {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        DB::open_cf_descriptors(&o, dir, vec![column_family()]).unwrap()
    }

    #[test]
    fn reads_take_the_newest_version_not_after_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let s = TrieStore::new(&db);
        let (a, mut b) = ([1u8; 34], [1u8; 34]);
        b[33] = 2;
        let mut batch = WriteBatch::default();
        for e in [1u64, 3, 7] {
            s.put(&mut batch, e, &[(a, vec![e as u8])]).unwrap();
        }
        s.put(&mut batch, 2, &[(b, vec![99])]).unwrap();
        db.write(batch).unwrap();
        let want = [
            None,
            Some(1),
            Some(1),
            Some(3),
            Some(3),
            Some(3),
            Some(3),
            Some(7),
            Some(7),
        ];
        for (e, w) in want.iter().enumerate() {
            assert_eq!(
                s.get(&a, e as u64).unwrap(),
                w.map(|v| vec![v]),
                "epoch {e}"
            );
        }
        assert_eq!(
            s.get(&b, 1).unwrap(),
            None,
            "a neighbour's version is not ours"
        );
        assert_eq!(s.get(&b, u64::MAX).unwrap(), Some(vec![99]));
        assert_eq!(s.get(&[0; 34], 5).unwrap(), None);
    }

    /// The same epochs through RocksDB and through the in-memory store give the same
    /// roots and proofs, and both match the map's definition.
    #[test]
    fn the_trie_on_rocksdb_matches_the_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let h = ConiksSha256::new(9);
        let mut memory = MemoryStore::default();
        let mut all = std::collections::BTreeMap::new();
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for epoch in 1..=5u64 {
            let mut changes: Vec<(Index, Hash)> = (0..40)
                .map(|_| {
                    let mut i = [0u8; 32];
                    for c in i.chunks_mut(8) {
                        c.copy_from_slice(&next().to_be_bytes());
                    }
                    i[0] &= 0x03;
                    if next() % 2 == 0 {
                        // One of eight indexes, so later epochs update existing users.
                        let b = i[1] & 0x01;
                        i[1..].fill(b);
                    }
                    (i, h.leaf(&i, &next().to_be_bytes()))
                })
                .collect();
            changes.sort();
            changes.dedup_by_key(|(i, _)| *i);
            let store = TrieStore::new(&db);
            let (root, writes) = trie::update(&h, &store, epoch, &changes).unwrap();
            let (mroot, mwrites) = trie::update(&h, &memory, epoch, &changes).unwrap();
            assert_eq!(root, mroot);
            let mut batch = WriteBatch::default();
            store.put(&mut batch, epoch, &writes).unwrap();
            db.write(batch).unwrap();
            memory.write(epoch, mwrites);
            all.extend(changes.iter().copied());
            let leaves: Vec<(Index, Hash)> = all.iter().map(|(i, l)| (*i, *l)).collect();
            assert_eq!(root, map::root(&h, &leaves));
            for e in 0..=epoch {
                let on_disk = Reader::new(&h, &store, e);
                let in_memory = Reader::new(&h, &memory, e);
                assert_eq!(on_disk.root().unwrap(), in_memory.root().unwrap());
                for (i, _) in leaves.iter().take(5) {
                    assert_eq!(on_disk.prove(i).unwrap(), in_memory.prove(i).unwrap());
                }
            }
        }
    }
}
