//! Roots and proofs of a sparse Merkle map given all its leaves: the definition every
//! stored, versioned map must agree with, and the proof check clients and monitors run.
//!
//! A proof holds the 256 siblings of the path from the root to an index, root first;
//! `None` stands for an empty subtree, whose hash the verifier recomputes from its
//! position. The same proof form shows a value (inclusion) and shows that an index holds
//! nothing (non-inclusion).

use crate::hasher::{bit, Coniks, Hash, Index, DEPTH};
use sha2::digest::Digest;
use thiserror::Error;

/// The siblings of the path to one index, root first (`siblings[d]` is the sibling of the
/// path's node at depth `d + 1`); `None` for an empty subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub siblings: Vec<Option<Hash>>,
}

impl Proof {
    /// A 32-byte bitmap (bit `d`, most significant first, set if `siblings[d]` is a hash),
    /// then the hashes in order.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; 32];
        for (d, s) in self.siblings.iter().enumerate() {
            if let Some(h) = s {
                b[d / 8] |= 0x80 >> (d % 8);
                b.extend_from_slice(&h.0);
            }
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<Proof, ProofError> {
        let Some((bitmap, mut rest)) = b.split_at_checked(32) else {
            return Err(ProofError::Encoding);
        };
        let mut siblings = Vec::with_capacity(DEPTH);
        for d in 0..DEPTH {
            if bitmap[d / 8] & (0x80 >> (d % 8)) == 0 {
                siblings.push(None);
                continue;
            }
            let (h, tail) = rest.split_at_checked(32).ok_or(ProofError::Encoding)?;
            siblings.push(Some(Hash(h.try_into().expect("32 bytes"))));
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(ProofError::Encoding);
        }
        Ok(Proof { siblings })
    }
}

/// A proof that does not lead to the expected root.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("a map proof has {0} siblings, not 256")]
    Length(usize),
    #[error("the map proof leads to a different root")]
    RootMismatch,
    #[error("a map proof is a 32-byte bitmap and one 32-byte hash per bit set")]
    Encoding,
}

/// `index` with bit `depth` set to `right` (the bits after it do not matter to a hash).
fn with_bit(index: &Index, depth: usize, right: bool) -> Index {
    let mut i = *index;
    let m = 0x80u8 >> (depth % 8);
    if right {
        i[depth / 8] |= m;
    } else {
        i[depth / 8] &= !m;
    }
    i
}

/// The leaves of a map: `(index, leaf hash)`, sorted by index, indexes distinct.
pub type Leaves<'a> = &'a [(Index, Hash)];

/// The hash of the subtree at `depth` on the path to `path`, holding `leaves` (all of
/// which lie under it); `None` if it is empty.
fn subtree<D: Digest>(h: &Coniks<D>, leaves: Leaves, depth: usize, path: &Index) -> Option<Hash> {
    match leaves {
        [] => None,
        [(_, leaf)] if depth == DEPTH => Some(*leaf),
        _ => {
            let split = leaves.partition_point(|(i, _)| !bit(i, depth));
            let (l, r) = leaves.split_at(split);
            let (lp, rp) = (with_bit(path, depth, false), with_bit(path, depth, true));
            let lh = subtree(h, l, depth + 1, &lp).unwrap_or_else(|| h.empty(&lp, depth + 1));
            let rh = subtree(h, r, depth + 1, &rp).unwrap_or_else(|| h.empty(&rp, depth + 1));
            Some(h.children(&lh, &rh))
        }
    }
}

/// The root of the map holding `leaves`.
pub fn root<D: Digest>(h: &Coniks<D>, leaves: Leaves) -> Hash {
    subtree(h, leaves, 0, &[0; 32]).unwrap_or_else(|| h.empty(&[0; 32], 0))
}

/// The proof for `index` in the map holding `leaves`, whether or not `index` is set.
pub fn prove<D: Digest>(h: &Coniks<D>, leaves: Leaves, index: &Index) -> Proof {
    let mut siblings = Vec::with_capacity(DEPTH);
    let mut under = leaves;
    for depth in 0..DEPTH {
        let split = under.partition_point(|(i, _)| !bit(i, depth));
        let (l, r) = under.split_at(split);
        let right = bit(index, depth);
        let (mine, other) = if right { (r, l) } else { (l, r) };
        let other_path = with_bit(index, depth, !right);
        siblings.push(subtree(h, other, depth + 1, &other_path));
        under = mine;
    }
    Proof { siblings }
}

/// The root `proof` leads to for `index` holding `value` (`None`: holding nothing).
pub fn root_from_proof<D: Digest>(
    h: &Coniks<D>,
    index: &Index,
    value: Option<&[u8]>,
    proof: &Proof,
) -> Result<Hash, ProofError> {
    if proof.siblings.len() != DEPTH {
        return Err(ProofError::Length(proof.siblings.len()));
    }
    // `None` while the subtree climbed so far is empty.
    let mut current = value.map(|v| h.leaf(index, v));
    for depth in (0..DEPTH).rev() {
        let sibling = proof.siblings[depth];
        if current.is_none() && sibling.is_none() {
            continue;
        }
        let mine = current.unwrap_or_else(|| h.empty(index, depth + 1));
        let other_path = with_bit(index, depth, !bit(index, depth));
        let other = sibling.unwrap_or_else(|| h.empty(&other_path, depth + 1));
        current = Some(if bit(index, depth) {
            h.children(&other, &mine)
        } else {
            h.children(&mine, &other)
        });
    }
    Ok(current.unwrap_or_else(|| h.empty(index, 0)))
}

/// Checks that `proof` shows `index` holding `value` (`None`: nothing) in the map of `root`.
pub fn verify<D: Digest>(
    h: &Coniks<D>,
    root: &Hash,
    index: &Index,
    value: Option<&[u8]>,
    proof: &Proof,
) -> Result<(), ProofError> {
    if root_from_proof(h, index, value, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hasher::ConiksSha256;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn leaves(h: &ConiksSha256, m: &BTreeMap<Index, Vec<u8>>) -> Vec<(Index, Hash)> {
        m.iter().map(|(i, v)| (*i, h.leaf(i, v))).collect()
    }

    /// The map's root straight from the definition: every one of the 2^256 positions is
    /// visited only where some leaf lies below; written without `subtree` or `prove`.
    fn definition_root(h: &ConiksSha256, m: &BTreeMap<Index, Vec<u8>>) -> Hash {
        fn node(
            h: &ConiksSha256,
            m: &BTreeMap<Index, Vec<u8>>,
            prefix: &Index,
            depth: usize,
        ) -> Hash {
            let below: Vec<(&Index, &Vec<u8>)> = m
                .iter()
                .filter(|(i, _)| {
                    crate::hasher::masked(i, depth) == crate::hasher::masked(prefix, depth)
                })
                .collect();
            if below.is_empty() {
                return h.empty(prefix, depth);
            }
            if depth == DEPTH {
                return h.leaf(below[0].0, below[0].1);
            }
            let l = node(h, m, &with_bit(prefix, depth, false), depth + 1);
            let r = node(h, m, &with_bit(prefix, depth, true), depth + 1);
            h.children(&l, &r)
        }
        node(h, m, &[0; 32], 0)
    }

    #[test]
    fn the_empty_map() {
        let h = ConiksSha256::new(7);
        assert_eq!(root(&h, &[]), h.empty(&[0; 32], 0));
        let p = prove(&h, &[], &[9; 32]);
        assert!(p.siblings.iter().all(Option::is_none));
        verify(&h, &root(&h, &[]), &[9; 32], None, &p).unwrap();
        assert_eq!(
            verify(&h, &root(&h, &[]), &[9; 32], Some(b"x"), &p),
            Err(ProofError::RootMismatch)
        );
    }

    #[test]
    fn neighbours_differing_in_the_last_bit() {
        let h = ConiksSha256::new(1);
        let mut a = [0x5a; 32];
        a[31] &= !1;
        let mut b = a;
        b[31] |= 1;
        let m: BTreeMap<Index, Vec<u8>> = [(a, b"a".to_vec()), (b, b"b".to_vec())].into();
        let l = leaves(&h, &m);
        let r = root(&h, &l);
        assert_eq!(r, definition_root(&h, &m));
        let p = prove(&h, &l, &a);
        assert_eq!(p.siblings.iter().filter(|s| s.is_some()).count(), 1);
        verify(&h, &r, &a, Some(b"a"), &p).unwrap();
        verify(&h, &r, &b, Some(b"b"), &prove(&h, &l, &b)).unwrap();
    }

    #[test]
    fn a_short_proof_is_refused() {
        let h = ConiksSha256::new(1);
        let p = Proof {
            siblings: vec![None; 255],
        };
        assert_eq!(
            verify(&h, &root(&h, &[]), &[0; 32], None, &p),
            Err(ProofError::Length(255))
        );
    }

    fn index() -> impl Strategy<Value = Index> {
        // Few distinct leading bytes, so leaves share long prefixes and also split early.
        (0u8..4, any::<[u8; 31]>()).prop_map(|(first, rest)| {
            let mut i = [0u8; 32];
            i[0] = first << 6;
            i[1..].copy_from_slice(&rest);
            i
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn proofs_show_members_and_non_members(
            m in prop::collection::btree_map(index(), prop::collection::vec(any::<u8>(), 0..8), 0..12),
            absent in index(),
        ) {
            let h = ConiksSha256::new(42);
            let l = leaves(&h, &m);
            let r = root(&h, &l);
            prop_assert_eq!(r, definition_root(&h, &m));
            for (i, v) in &m {
                let p = prove(&h, &l, i);
                prop_assert!(verify(&h, &r, i, Some(v), &p).is_ok());
                let mut other = v.clone();
                other.push(1);
                prop_assert!(verify(&h, &r, i, Some(&other), &p).is_err());
                prop_assert!(verify(&h, &r, i, None, &p).is_err());
            }
            let p = prove(&h, &l, &absent);
            let bytes = p.encode();
            prop_assert_eq!(Proof::decode(&bytes), Ok(p.clone()));
            prop_assert_eq!(Proof::decode(&bytes[..bytes.len() - 1]), Err(ProofError::Encoding));
            match m.get(&absent) {
                None => {
                    prop_assert!(verify(&h, &r, &absent, None, &p).is_ok());
                    prop_assert!(verify(&h, &r, &absent, Some(b""), &p).is_err());
                }
                Some(v) => prop_assert!(verify(&h, &r, &absent, Some(v), &p).is_ok()),
            }
            // A root of another map id never matches.
            let other = ConiksSha256::new(43);
            prop_assert_ne!(root(&other, &leaves(&other, &m)), r);
        }
    }
}
