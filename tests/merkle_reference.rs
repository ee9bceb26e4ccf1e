//! Property tests: the RocksDB tree against a naive in-memory RFC 6962 implementation.

use proptest::prelude::*;
use quorumlog::merkle::{
    empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, MerkleStore,
};

/// RFC 6962 section 2.1, written directly from the definitions.
mod naive {
    use super::*;

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    pub fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = split(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn subproof(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if whole { vec![] } else { vec![mth(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], whole);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    pub fn consistency(m: usize, d: &[Hash]) -> Vec<Hash> {
        subproof(m, d, true)
    }
}

fn leaves(n: usize, salt: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[salt.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

/// Builds a store of `all` leaves, appended in batches of the given sizes. Once halfway
/// the tables are flushed and compacted (so growing tiles become merged base values that
/// later appends overlay) and the database is reopened (so the in-memory right edge is
/// reloaded from disk).
fn build(all: &[Hash], batches: &[usize]) -> (tempfile::TempDir, MerkleStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = MerkleStore::open(dir.path()).unwrap();
    let mut done = 0;
    let mut reopened = false;
    for &b in batches.iter().cycle() {
        if done == all.len() {
            break;
        }
        let end = (done + b).min(all.len());
        let out = store.append(&all[done..end]).unwrap();
        assert_eq!(out.indexes, (done as u64..end as u64).collect::<Vec<_>>());
        done = end;
        if !reopened && done >= all.len() / 2 {
            let db = store.db();
            for cf in MerkleStore::column_families() {
                let h = db.cf_handle(cf.name()).unwrap();
                db.flush_cf(h).unwrap();
                db.compact_range_cf(h, None::<&[u8]>, None::<&[u8]>);
            }
            drop(store);
            store = MerkleStore::open(dir.path()).unwrap();
            reopened = true;
        }
    }
    assert_eq!(store.size(), all.len() as u64);
    (dir, store)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn roots_and_proofs_match_the_naive_tree(
        n in 1usize..3000,
        batches in prop::collection::vec(1usize..400, 1..8),
        queries in prop::collection::vec((any::<u64>(), any::<u64>()), 24),
    ) {
        let all = leaves(n, 7);
        let (_dir, store) = build(&all, &batches);
        for &(a, b) in &queries {
            // Root at an arbitrary old size.
            let size = (a % n as u64) + 1;
            let root = store.root(size).unwrap();
            prop_assert_eq!(root, naive::mth(&all[..size as usize]));

            // Inclusion at that size, by index and by hash.
            let index = b % size;
            let proof = store.inclusion_proof(index, size).unwrap();
            prop_assert_eq!(&proof, &naive::path(index as usize, &all[..size as usize]));
            prop_assert!(verify_inclusion(&all[index as usize], index, size, &proof, &root).is_ok());
            let (i, by_hash) = store.inclusion_proof_by_hash(&all[index as usize], size).unwrap();
            prop_assert_eq!(i, index);
            prop_assert_eq!(by_hash, proof);

            // Consistency between two arbitrary sizes.
            let (old, new) = (b % size, size);
            if old > 0 && old < new {
                let c = store.consistency_proof(old, new).unwrap();
                prop_assert_eq!(&c, &naive::consistency(old as usize, &all[..new as usize]));
                let old_root = store.root(old).unwrap();
                prop_assert!(verify_consistency(old, new, &old_root, &root, &c).is_ok());
            }
        }
    }

    #[test]
    fn tampered_proofs_fail(
        n in 2usize..600,
        pick in any::<u64>(),
        which in any::<prop::sample::Index>(),
        bit in 0usize..256,
    ) {
        let all = leaves(n, 9);
        let (_dir, store) = build(&all, &[n]);
        let size = n as u64;
        let root = store.root(size).unwrap();
        let index = pick % size;
        let proof = store.inclusion_proof(index, size).unwrap();
        let flip = |p: &[Hash], at: usize| {
            let mut p = p.to_vec();
            p[at].0[bit / 8] ^= 1 << (bit % 8);
            p
        };
        let leaf = all[index as usize];
        if !proof.is_empty() {
            let bad = flip(&proof, which.index(proof.len()));
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
        prop_assert!(verify_inclusion(&all[((index + 1) % size) as usize], index, size, &proof, &root).is_err());
        let mut other_root = root;
        other_root.0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &other_root).is_err());
        // The sibling's index swaps left and right at the bottom level.
        if index ^ 1 < size {
            prop_assert!(verify_inclusion(&leaf, index ^ 1, size, &proof, &root).is_err());
        }
        prop_assert!(verify_inclusion(&leaf, size, size, &proof, &root).is_err());

        let old = 1 + pick % (size - 1);
        let old_root = store.root(old).unwrap();
        let c = store.consistency_proof(old, size).unwrap();
        prop_assert!(verify_consistency(old, size, &old_root, &root, &c).is_ok());
        let bad = flip(&c, which.index(c.len()));
        prop_assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
        prop_assert!(verify_consistency(old, size, &old_root, &other_root, &c).is_err());
        prop_assert!(verify_consistency(old, size, &other_root, &root, &c).is_err());
        prop_assert!(verify_consistency(old, size, &old_root, &root, &c[..c.len() - 1]).is_err());
        if old + 1 < size {
            prop_assert!(verify_consistency(old + 1, size, &old_root, &root, &c).is_err());
        }
    }
}

#[test]
fn exhaustive_small_trees() {
    // Every (index, size) and (old, new) pair up to 70 leaves: covers all shapes of the
    // right edge across the first tile boundaries in the proof recursion.
    let all = leaves(70, 3);
    let (_dir, store) = build(&all, &[1, 2, 3, 5, 8]);
    for new in 1..=70u64 {
        let root = store.root(new).unwrap();
        assert_eq!(root, naive::mth(&all[..new as usize]));
        for i in 0..new {
            let p = store.inclusion_proof(i, new).unwrap();
            assert_eq!(p, naive::path(i as usize, &all[..new as usize]));
            verify_inclusion(&all[i as usize], i, new, &p, &root).unwrap();
        }
        for old in 1..new {
            let c = store.consistency_proof(old, new).unwrap();
            assert_eq!(c, naive::consistency(old as usize, &all[..new as usize]));
            verify_consistency(old, new, &store.root(old).unwrap(), &root, &c).unwrap();
        }
    }
}

#[test]
fn tile_boundaries_at_65536_leaves() {
    // Crosses the second tile level (256 * 256 leaves) so tile-level-2 nodes are exercised.
    let n = 65_536 + 300;
    let all = leaves(n, 11);
    let (_dir, store) = build(&all, &[1000, 4096, 17]);
    for size in [255u64, 256, 257, 65_535, 65_536, 65_537, n as u64] {
        let root = store.root(size).unwrap();
        assert_eq!(root, naive::mth(&all[..size as usize]), "root at {size}");
        for i in [0, size / 3, size - 1] {
            let p = store.inclusion_proof(i, size).unwrap();
            verify_inclusion(&all[i as usize], i, size, &p, &root).unwrap();
        }
        for old in [1, 255, 256, 65_535, 65_536] {
            if old < size {
                let c = store.consistency_proof(old, size).unwrap();
                verify_consistency(old, size, &store.root(old).unwrap(), &root, &c).unwrap();
            }
        }
    }
}

#[test]
fn reads_between_appends_see_the_grown_tree() {
    // Upper tiles are cached by readers; a cached prefix must never hide a node that a
    // later append completed. Ask for roots and proofs after every append of a growing tree.
    let all = leaves(2000, 13);
    let dir = tempfile::tempdir().unwrap();
    let store = MerkleStore::open(dir.path()).unwrap();
    let mut done = 0;
    for (step, b) in [1usize, 7, 64, 200, 255, 256, 300, 5]
        .iter()
        .cycle()
        .enumerate()
    {
        if done >= all.len() {
            break;
        }
        let end = (done + b).min(all.len());
        store.append(&all[done..end]).unwrap();
        done = end;
        let size = done as u64;
        let root = store.root(size).unwrap();
        assert_eq!(
            root,
            naive::mth(&all[..done]),
            "root at {size} after step {step}"
        );
        let i = (step as u64 * 7919) % size;
        let p = store.inclusion_proof(i, size).unwrap();
        verify_inclusion(&all[i as usize], i, size, &p, &root).unwrap();
        if size > 1 {
            let old = 1 + (step as u64 * 104729) % (size - 1);
            let c = store.consistency_proof(old, size).unwrap();
            verify_consistency(old, size, &store.root(old).unwrap(), &root, &c).unwrap();
        }
    }
}
