//! RFC 6962 / RFC 9162 inclusion and consistency proofs, generated over any source of
//! perfect-subtree hashes (verification is in `quorumlog_sigsum::merkle`).
//!
//! Every hash a proof needs is either a *perfect* subtree (2^l leaves starting at a multiple
//! of 2^l), which never changes once complete, or the hash of a right-edge range built from a
//! few perfect subtrees. Generation therefore only asks its [`NodeSource`] for perfect
//! subtrees, which is what makes proofs at an old tree size possible after the tree has grown.

use quorumlog_sigsum::merkle::{node_hash, Hash};

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

/// Root of a tree of `size` leaves (size >= 1) from its perfect subtrees.
pub(crate) fn root<S: NodeSource>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, size)
}
