//! RFC 6962 Merkle tree hashing and proof verification, written for the checkers alone.
//!
//! Deliberately independent of the server's `src/merkle`: a bug shared by the log and its
//! checker would otherwise stay invisible. Verification follows RFC 9162 §2.1.3.2
//! (inclusion) and §2.1.4.2 (consistency); the proof generators (tests only) follow the
//! RFC 6962 PATH and SUBPROOF definitions, so generator and verifier are two different
//! formulations that must agree.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 output: a leaf hash, a node hash or a root.
pub(crate) type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub(crate) fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub(crate) fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (`n >= 2`): the RFC 6962 split point.
#[cfg(test)]
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of a list of leaf hashes, by the RFC 6962 recursion: the proof generators' and
/// tests' reference; the checkers use [`Tree`], which answers prefix roots faster.
#[cfg(test)]
pub(crate) fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// A tree that answers "root at size S" in O(log n), since the checkers ask it for every
/// head observed (thousands of heads over tens of thousands of leaves).
///
/// `levels[k][i]` is the hash of the perfect subtree of `2^k` leaves starting at
/// `i * 2^k`. The MTH of any prefix is the right fold of the perfect subtrees of its
/// binary decomposition, largest first.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// Builds all complete levels over `leaves` (leaf hashes).
    pub(crate) fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        loop {
            let below = levels.last().expect("level 0 exists");
            if below.len() < 2 {
                break;
            }
            let next = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        Tree { levels }
    }

    /// Number of leaves.
    pub(crate) fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The leaf hashes, in tree order.
    pub(crate) fn leaves(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// MTH of the first `size` leaves, or none if the tree is smaller.
    pub(crate) fn root_at(&self, size: u64) -> Option<Hash> {
        if size > self.len() {
            return None;
        }
        if size == 0 {
            return Some(empty_root());
        }
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for k in (0..64u32).rev() {
            if size & (1 << k) != 0 {
                pieces.push(self.levels[k as usize][(offset >> k) as usize]);
                offset += 1 << k;
            }
        }
        let mut acc = pieces.pop().expect("size > 0 has a bit set");
        while let Some(left) = pieces.pop() {
            acc = node_hash(&left, &acc);
        }
        Some(acc)
    }
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The old size exceeds the new one.
    #[error("old size {old} exceeds new size {new}")]
    SizesReversed {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The path has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length for these sizes")]
    WrongLength,
    /// The path hashes to a different root.
    #[error("proof does not reproduce the root")]
    RootMismatch,
}

/// RFC 9162 §2.1.3.2: does `path` prove `leaf` at `index` in the tree of `size` with `root`?
pub(crate) fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: does `path` prove the tree (`old_size`, `old_root`) is a prefix of
/// (`new_size`, `new_root`)? Equal sizes need an empty path and equal roots; the empty
/// tree is a prefix of every tree (empty path).
pub(crate) fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesReversed {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !path.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if path.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if path.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(path.len() + 1);
    if old_size.is_power_of_two() {
        nodes.push(*old_root);
    }
    nodes.extend_from_slice(path);
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (nodes[0], nodes[0]);
    for c in &nodes[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 6962 PATH(m, D[n]): the inclusion proof of leaf `index`; none if out of range.
#[cfg(test)]
pub(crate) fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
        if d.len() <= 1 {
            return;
        }
        let k = split(d.len() as u64) as usize;
        if m < k {
            path(m, &d[..k], out);
            out.push(root(&d[k..]));
        } else {
            path(m - k, &d[k..], out);
            out.push(root(&d[..k]));
        }
    }
    let index = usize::try_from(index).ok()?;
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Some(out)
}

/// RFC 6962 PROOF(m, D[n]): the consistency proof from the first `old_size` leaves to
/// all of them; none if `old_size` exceeds the tree. Empty for 0 and for `n`.
#[cfg(test)]
pub(crate) fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
    fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
        if m == d.len() {
            if !complete {
                out.push(root(d));
            }
            return;
        }
        let k = split(d.len() as u64) as usize;
        if m <= k {
            subproof(m, &d[..k], complete, out);
            out.push(root(&d[k..]));
        } else {
            subproof(m - k, &d[k..], false, out);
            out.push(root(&d[..k]));
        }
    }
    let m = usize::try_from(old_size).ok()?;
    if m > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Certificate Transparency test leaves.
    const CT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// Published MTH of the first 1..=8 CT leaves.
    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn ct_leaf_hashes() -> Vec<Hash> {
        CT_LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    /// MTH straight from the RFC text, on raw leaf bytes, with sha2 used directly: an
    /// independent recomputation that shares nothing with the code under test.
    fn mth_by_definition(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => Sha256::digest(b"").into(),
            1 => Sha256::digest([&[0u8][..], &d[0]].concat()).into(),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                let l = mth_by_definition(&d[..k]);
                let r = mth_by_definition(&d[k..]);
                Sha256::digest([&[1u8][..], &l, &r].concat()).into()
            }
        }
    }

    fn synthetic_leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn hashing_primitives_use_the_rfc_6962_prefixes() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let expected: Hash = Sha256::digest([0u8, 0xab]).into();
        assert_eq!(leaf_hash(&[0xab]), expected);
        let (l, r) = ([1u8; 32], [2u8; 32]);
        let expected: Hash = Sha256::digest([&[1u8][..], &l, &r].concat()).into();
        assert_eq!(node_hash(&l, &r), expected);
    }

    #[test]
    fn roots_of_the_ct_test_tree_match_the_published_vectors() {
        let leaves = ct_leaf_hashes();
        let raw: Vec<Vec<u8>> = CT_LEAVES.iter().map(|l| hex::decode(l).unwrap()).collect();
        let tree = Tree::new(leaves.clone());
        assert_eq!(tree.root_at(0), Some(empty_root()));
        for (i, want) in CT_ROOTS.iter().enumerate() {
            let n = i + 1;
            assert_eq!(hex::encode(root(&leaves[..n])), *want, "root() size {n}");
            assert_eq!(
                hex::encode(tree.root_at(n as u64).unwrap()),
                *want,
                "Tree size {n}"
            );
            assert_eq!(
                hex::encode(mth_by_definition(&raw[..n])),
                *want,
                "definition {n}"
            );
        }
        assert_eq!(tree.root_at(9), None);
    }

    #[test]
    fn prefix_roots_agree_with_the_recursion_on_larger_trees() {
        let leaves = synthetic_leaves(70);
        let raw: Vec<Vec<u8>> = (0..70u64).map(|i| i.to_be_bytes().to_vec()).collect();
        let tree = Tree::new(leaves.clone());
        for n in 0..=70 {
            let want = mth_by_definition(&raw[..n]);
            assert_eq!(root(&leaves[..n]), want, "root() size {n}");
            assert_eq!(tree.root_at(n as u64), Some(want), "Tree size {n}");
        }
    }

    #[test]
    fn published_ct_inclusion_and_consistency_proofs_verify() {
        let leaves = ct_leaf_hashes();
        let r = |n: usize| h(CT_ROOTS[n - 1]);
        // (index, size, path), from the Certificate Transparency test data.
        let inclusion: [(u64, u64, Vec<&str>); 4] = [
            (
                0,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                vec![
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                vec![
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, path) in inclusion {
            let path: Vec<Hash> = path.into_iter().map(h).collect();
            let root = r(size as usize);
            verify_inclusion(&leaves[index as usize], index, size, &path, &root).unwrap();
            assert_eq!(inclusion_proof(&leaves[..size as usize], index), Some(path));
        }
        // (old, new, path)
        let consistency: [(u64, u64, Vec<&str>); 3] = [
            (
                1,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, path) in consistency {
            let path: Vec<Hash> = path.into_iter().map(h).collect();
            verify_consistency(old, new, &r(old as usize), &r(new as usize), &path).unwrap();
            assert_eq!(consistency_proof(&leaves[..new as usize], old), Some(path));
        }
    }

    #[test]
    fn generated_inclusion_proofs_verify_and_tampered_ones_fail() {
        let leaves = synthetic_leaves(21);
        for size in 1..=21u64 {
            let root = root(&leaves[..size as usize]);
            for index in 0..size {
                let leaf = leaves[index as usize];
                let path = inclusion_proof(&leaves[..size as usize], index).unwrap();
                verify_inclusion(&leaf, index, size, &path, &root).unwrap();
                // A flipped bit in any proof hash, the leaf or the root fails.
                for i in 0..path.len() {
                    let mut bad = path.clone();
                    bad[i][0] ^= 1;
                    assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
                }
                let mut bad_leaf = leaf;
                bad_leaf[31] ^= 0x80;
                assert!(verify_inclusion(&bad_leaf, index, size, &path, &root).is_err());
                let mut bad_root = root;
                bad_root[5] ^= 4;
                assert!(verify_inclusion(&leaf, index, size, &path, &bad_root).is_err());
                // Wrong index or size, a truncated or padded path, all fail.
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(verify_inclusion(&leaf, other, size, &path, &root).is_err());
                }
                assert!(verify_inclusion(&leaf, index, size * 2, &path, &root).is_err());
                if !path.is_empty() {
                    let short = &path[..path.len() - 1];
                    assert!(verify_inclusion(&leaf, index, size, short, &root).is_err());
                }
                let mut long = path.clone();
                long.push(root);
                assert!(verify_inclusion(&leaf, index, size, &long, &root).is_err());
            }
            assert_eq!(
                verify_inclusion(&leaves[0], size, size, &[], &root),
                Err(ProofError::IndexOutOfRange { index: size, size })
            );
        }
    }

    #[test]
    fn generated_consistency_proofs_verify_and_tampered_ones_fail() {
        let leaves = synthetic_leaves(19);
        for new in 1..=19u64 {
            let new_root = root(&leaves[..new as usize]);
            for old in 0..=new {
                let old_root = root(&leaves[..old as usize]);
                let path = consistency_proof(&leaves[..new as usize], old).unwrap();
                verify_consistency(old, new, &old_root, &new_root, &path).unwrap();
                if old == 0 || old == new {
                    assert!(path.is_empty());
                    continue;
                }
                for i in 0..path.len() {
                    let mut bad = path.clone();
                    bad[i][7] ^= 2;
                    assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
                }
                assert!(verify_consistency(old, new, &new_root, &new_root, &path).is_err());
                assert!(verify_consistency(old, new, &old_root, &old_root, &path).is_err());
                assert!(verify_consistency(old, new, &old_root, &new_root, &[]).is_err());
                let short = &path[..path.len() - 1];
                assert!(verify_consistency(old, new, &old_root, &new_root, short).is_err());
                let mut long = path.clone();
                long.push(new_root);
                assert!(verify_consistency(old, new, &old_root, &new_root, &long).is_err());
                assert!(verify_consistency(old + 1, new, &old_root, &new_root, &path).is_err());
                assert!(verify_consistency(new, old, &new_root, &old_root, &path).is_err());
            }
        }
        // A tree whose old part was rewritten is not consistent with the old root.
        let mut forked = leaves.clone();
        forked[2] = leaf_hash(b"other");
        let path = consistency_proof(&forked[..10], 4).unwrap();
        let old_root = root(&leaves[..4]);
        let new_root = root(&forked[..10]);
        assert_eq!(
            verify_consistency(4, 10, &old_root, &new_root, &path),
            Err(ProofError::RootMismatch)
        );
    }
}
