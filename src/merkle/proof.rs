//! RFC 6962 / RFC 9162 inclusion and consistency proofs: generation over any source of
//! perfect-subtree hashes, and verification.
//!
//! Every hash a proof needs is either a *perfect* subtree (2^l leaves starting at a multiple
//! of 2^l), which never changes once complete, or the hash of a right-edge range built from a
//! few perfect subtrees. Generation therefore only asks its [`NodeSource`] for perfect
//! subtrees, which is what makes proofs at an old tree size possible after the tree has grown.

use super::hash::{node_hash, Hash};
use thiserror::Error;

/// Where proof generation reads perfect-subtree hashes from.
pub(crate) trait NodeSource {
    /// The source's read error.
    type Error;

    /// Hash of the perfect subtree of height `level` whose leftmost leaf is
    /// `index << level`. Level 0 is the leaf hashes. Callers only ask for complete subtrees.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// A previously computed hash of the leaves `[start, end)`, if the source keeps them.
    fn cached_range(&mut self, _start: u64, _end: u64) -> Option<Hash> {
        None
    }

    /// Offers a computed hash of the leaves `[start, end)` for [`Self::cached_range`].
    fn remember_range(&mut self, _start: u64, _end: u64, _hash: Hash) {}
}

/// Why a proof did not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The sizes or index do not describe a valid proof request.
    #[error("invalid proof parameters: {0}")]
    InvalidInput(&'static str),
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root does not match the expected one.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Hash of the leaves `[start, end)` as a subtree (RFC 6962 MTH), where `start` is aligned to
/// a power of two at least `end - start`, as every range inside a proof is.
pub(crate) fn range_hash<S: NodeSource>(
    src: &mut S,
    start: u64,
    end: u64,
) -> Result<Hash, S::Error> {
    debug_assert!(end > start);
    if (end - start).is_power_of_two() {
        let level = (end - start).trailing_zeros();
        return src.node(level, start >> level);
    }
    // Right-edge ranges repeat across proofs at the same tree size (the published one).
    if let Some(h) = src.cached_range(start, end) {
        return Ok(h);
    }
    // Peaks left to right: the binary decomposition of the range size, largest first.
    let mut peaks: [Hash; 64] = [Hash::default(); 64];
    let mut count = 0;
    let mut pos = start;
    let mut remaining = end - start;
    while remaining > 0 {
        let level = 63 - remaining.leading_zeros();
        peaks[count] = src.node(level, pos >> level)?;
        count += 1;
        pos += 1u64 << level;
        remaining -= 1u64 << level;
    }
    let mut acc = peaks[count - 1];
    for peak in peaks[..count - 1].iter().rev() {
        acc = node_hash(peak, &acc);
    }
    src.remember_range(start, end, acc);
    Ok(acc)
}

/// RFC 6962 PATH(m, D[0:n]) in RFC 9162 order (the leaf's sibling first).
pub(crate) fn inclusion_path<S: NodeSource>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    debug_assert!(index < size);
    let mut ranges = Vec::with_capacity(64);
    let (mut m, mut start, mut n) = (index, 0u64, size);
    while n > 1 {
        let k = split_point(n);
        if m < k {
            ranges.push((start + k, start + n));
            n = k;
        } else {
            ranges.push((start, start + k));
            m -= k;
            start += k;
            n -= k;
        }
    }
    hash_ranges(src, &ranges)
}

/// RFC 6962 PROOF(m, D[0:n]) for 0 < m < n, in RFC 9162 order.
pub(crate) fn consistency_path<S: NodeSource>(
    src: &mut S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, S::Error> {
    debug_assert!(0 < old_size && old_size < new_size);
    let mut ranges = Vec::with_capacity(64);
    let (mut m, mut start, mut n, mut whole) = (old_size, 0u64, new_size, true);
    loop {
        if m == n {
            // SUBPROOF's base case: the old tree's own subtree is needed unless it is the
            // whole old tree, which the verifier already knows.
            if !whole {
                ranges.push((start, start + n));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            ranges.push((start + k, start + n));
            n = k;
        } else {
            ranges.push((start, start + k));
            m -= k;
            start += k;
            n -= k;
            whole = false;
        }
    }
    hash_ranges(src, &ranges)
}

/// Hashes of proof ranges given top-down, returned bottom-up (RFC 9162 order).
fn hash_ranges<S: NodeSource>(src: &mut S, top_down: &[(u64, u64)]) -> Result<Vec<Hash>, S::Error> {
    top_down
        .iter()
        .rev()
        .map(|&(start, end)| range_hash(src, start, end))
        .collect()
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::InvalidInput("leaf index not below tree size"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if snode == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongLength);
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2) between the tree of `old_size`
/// with root `old_root` and the tree of `new_size` with root `new_root`.
///
/// The trivial cases need an empty proof: `old_size == 0` (the empty tree is a prefix of
/// every tree) and `old_size == new_size` (the roots must then be equal).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::InvalidInput("old size larger than new size"));
    }
    if old_size == 0 || old_size == new_size {
        if !path.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        if old_size == new_size && old_root != new_root {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }
    if path.is_empty() {
        return Err(VerifyError::WrongLength);
    }
    let mut hashes = path.iter();
    let first = if old_size.is_power_of_two() {
        *old_root
    } else {
        *hashes.next().expect("path is not empty")
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in hashes {
        if snode == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Root of a tree of `size` leaves (size >= 1) from its perfect subtrees.
pub(crate) fn root<S: NodeSource>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, size)
}
