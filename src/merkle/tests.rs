//! Store behaviour beyond the reference comparison: deduplication, bounds, persistence,
//! atomic extra writes and corruption detection.

use super::*;

fn h(i: u64) -> Hash {
    leaf_hash(&i.to_be_bytes())
}

fn store() -> (tempfile::TempDir, MerkleStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = MerkleStore::open(dir.path()).unwrap();
    (dir, s)
}

#[test]
fn empty_tree() {
    let (_d, s) = store();
    assert_eq!(s.size(), 0);
    assert_eq!(s.root(0).unwrap(), empty_root());
    assert!(matches!(s.root(1), Err(MerkleError::SizeTooLarge { .. })));
    assert!(s.index_of(&h(0)).unwrap().is_none());
}

#[test]
fn duplicates_keep_their_first_index() {
    let (_d, s) = store();
    let out = s.append(&[h(1), h(2), h(1)]).unwrap();
    assert_eq!(out.indexes, vec![0, 1, 0]);
    assert_eq!(out.added, 2);
    assert_eq!(out.size, 2);
    let out = s.append(&[h(2), h(3)]).unwrap();
    assert_eq!(out.indexes, vec![1, 2]);
    assert_eq!(out.added, 1);
    assert_eq!(s.size(), 3);
    assert_eq!(s.index_of(&h(3)).unwrap(), Some(2));
    assert_eq!(s.leaf_hash(2).unwrap(), h(3));
}

#[test]
fn a_tree_without_an_index_keeps_repeated_leaves_beside_another_tree() {
    let cols = TreeColumns {
        tiles: "other_tiles",
        edge: "other_edge",
        index: None,
        meta: "other_meta",
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfs = MerkleStore::column_families();
    cfs.extend(MerkleStore::column_families_for(&cols));
    let db = std::sync::Arc::new(
        rocksdb::DB::open_cf_descriptors(&MerkleStore::db_options(), dir.path(), cfs).unwrap(),
    );
    let log = MerkleStore::new(db.clone()).unwrap();
    let other = MerkleStore::new_in(db, cols).unwrap();
    log.append(&[h(9)]).unwrap();
    let out = other.append(&[h(1), h(2), h(1)]).unwrap();
    assert_eq!(out.indexes, vec![0, 1, 2]);
    assert_eq!(other.append(&[h(1)]).unwrap().indexes, vec![3]);
    assert_eq!(other.leaf_hash(3).unwrap(), h(1));
    let (_d, reference) = store();
    for leaf in [h(1), h(2)] {
        reference.append(&[leaf]).unwrap();
    }
    assert_eq!(other.root(2).unwrap(), reference.root(2).unwrap());
    assert!(other.index_of(&h(1)).unwrap().is_none());
    // The two trees share the database and nothing else.
    assert_eq!(log.size(), 1);
    assert_eq!(log.leaf_hash(0).unwrap(), h(9));
}

#[test]
fn bounds_are_typed_errors() {
    let (_d, s) = store();
    s.append(&[h(1), h(2), h(3)]).unwrap();
    assert!(matches!(
        s.inclusion_proof(3, 3),
        Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
    ));
    assert!(matches!(
        s.inclusion_proof(0, 4),
        Err(MerkleError::SizeTooLarge {
            requested: 4,
            current: 3
        })
    ));
    assert!(matches!(
        s.inclusion_proof_by_hash(&h(3), 2),
        Err(MerkleError::LeafNotFound { size: 2 })
    ));
    assert!(matches!(
        s.consistency_proof(0, 3),
        Err(MerkleError::InvalidRange { .. })
    ));
    assert!(matches!(
        s.consistency_proof(3, 3),
        Err(MerkleError::InvalidRange { .. })
    ));
    assert!(matches!(
        s.leaf_hash(3),
        Err(MerkleError::IndexOutOfRange { .. })
    ));
}

#[test]
fn extra_writes_land_in_the_same_batch() {
    let (dir, s) = store();
    s.append_with(&[h(1), h(2)], |batch, outcome| {
        let meta = s.db().cf_handle(CF_META).unwrap();
        batch.put_cf(meta, b"applied", outcome.size.to_be_bytes());
    })
    .unwrap();
    drop(s);
    let s = MerkleStore::open(dir.path()).unwrap();
    let meta = s.db().cf_handle(CF_META).unwrap();
    assert_eq!(
        s.db().get_cf(meta, b"applied").unwrap().unwrap(),
        2u64.to_be_bytes()
    );
    assert_eq!(s.size(), 2);
}

#[test]
fn reopen_keeps_size_root_and_index() {
    let (dir, s) = store();
    let leaves: Vec<Hash> = (0..1000).map(h).collect();
    s.append(&leaves[..700]).unwrap();
    let root = s.root(700).unwrap();
    drop(s);
    let s = MerkleStore::open(dir.path()).unwrap();
    assert_eq!(s.size(), 700);
    assert_eq!(s.root(700).unwrap(), root);
    s.append(&leaves[700..]).unwrap();
    assert_eq!(s.root(700).unwrap(), root);
    assert_eq!(s.index_of(&leaves[999]).unwrap(), Some(999));
}

#[test]
fn corrupted_blocks_are_reported_not_served() {
    let (dir, s) = store();
    let leaves: Vec<Hash> = (0..5000).map(h).collect();
    s.append(&leaves).unwrap();
    s.db()
        .flush_cf(s.db().cf_handle(CF_TILES).unwrap())
        .unwrap();
    drop(s);

    // Flip bytes inside the data blocks of every table file (tiles are the bulk of them).
    let mut flipped = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sst") {
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes.len() > 20_000 {
                for i in (64..bytes.len() - 4096).step_by(4096) {
                    bytes[i] ^= 0x55;
                }
                std::fs::write(&path, bytes).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(flipped > 0, "expected a table file holding the tiles");

    // Either open or reads must fail; a wrong hash must never come back.
    let Ok(s) = MerkleStore::open(dir.path()) else {
        return;
    };
    let mut detected = 0;
    for (i, leaf) in leaves.iter().enumerate() {
        match s.leaf_hash(i as u64) {
            Ok(got) => assert_eq!(got, *leaf, "a corrupted block was served"),
            Err(MerkleError::Storage(e)) => {
                assert!(e.to_string().to_lowercase().contains("corrupt"), "{e}");
                detected += 1;
            }
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert!(detected > 0, "corruption went unnoticed");
}

#[test]
fn small_appends_overlay_compacted_tiles_correctly() {
    // Growing tiles are written as merge operands; once compacted they become base values
    // and later operands must be overlaid on them, not replace them.
    let (_d1, s) = store();
    let (_d2, reference) = store();
    let leaves: Vec<Hash> = (0..600).map(h).collect();
    reference.append(&leaves).unwrap();
    let db = s.db().clone();
    let compact = || {
        for cf in MerkleStore::column_families() {
            let handle = db.cf_handle(cf.name()).unwrap();
            db.flush_cf(handle).unwrap();
            db.compact_range_cf(handle, None::<&[u8]>, None::<&[u8]>);
        }
    };
    for (i, chunk) in leaves.chunks(7).enumerate() {
        s.append(chunk).unwrap();
        // The last compaction leaves a few appends after it, so reads merge operands over
        // compacted base values.
        if i % 9 == 4 && i < 80 {
            compact();
        }
    }
    for size in [1, 7, 100, 255, 256, 257, 511, 512, 530, 535, 600] {
        assert_eq!(
            s.root(size).unwrap(),
            reference.root(size).unwrap(),
            "size {size}"
        );
    }
    for i in [0, 5, 250, 300, 520, 530, 537, 599] {
        assert_eq!(
            s.inclusion_proof(i, 600).unwrap(),
            reference.inclusion_proof(i, 600).unwrap()
        );
    }
}
