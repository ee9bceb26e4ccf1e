//! Tile layout: how perfect-subtree hashes are grouped into RocksDB values.
//!
//! A tile of tile-level `t` and index `i` holds the complete subtree hashes of tree levels
//! `8t ..= 8t+8` below one node at level `8t+8`: up to 256 base hashes and every interior
//! hash above them, 511 in all. Inside the value the hashes are in *in-order* position
//! (leftmost base hash, its parent, its sibling, ...), so a tile whose first `w` base hashes
//! exist is stored as a prefix of `2w - 1` slots and grows by appending. Incomplete interior
//! slots inside that prefix are zero and never read: callers only ask for complete subtrees.
//!
//! A proof at a million leaves touches three tiles (levels 0-7, 8-15, 16-19), so it costs a
//! handful of reads.
//!
//! Appends do not rewrite the growing bottom tile: they write a RocksDB *merge operand*
//! holding only the slots they set (`slot u16 BE || hash` each), and the merge operator
//! overlays operands onto the stored prefix. An append of a few leaves therefore writes a
//! few hundred bytes instead of up to 16 KiB. The bottom tile is written whole when it is
//! complete and after every 16 operands (reads merge its operands); upper tiles, which
//! change once per 256 nodes below them, are always written whole.

use quorumlog_sigsum::merkle::Hash;

/// Tree levels per tile (each tile spans `TILE_HEIGHT` levels below its root).
pub(crate) const TILE_HEIGHT: u32 = 8;
/// Base hashes per full tile.
pub(crate) const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Hash slots in a full tile (2 * width - 1).
pub(crate) const TILE_SLOTS: usize = 2 * TILE_WIDTH as usize - 1;
/// Bytes in a full tile.
pub(crate) const TILE_BYTES: usize = TILE_SLOTS * Hash::LEN;

/// Identifies one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TileId {
    /// Tile level: the tile's base is tree level `TILE_HEIGHT * level`.
    pub level: u8,
    /// Position of the tile among the tiles of its level.
    pub index: u64,
}

impl TileId {
    /// RocksDB key: the level byte then the big-endian index, so tiles sort by position.
    pub fn key(&self) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = self.level;
        k[1..].copy_from_slice(&self.index.to_be_bytes());
        k
    }
}

/// Where the hash of the perfect subtree (tree `level`, `index`) lives: its tile and its
/// slot in that tile. Nodes at a tile boundary level are addressed in the tile above, as its
/// base, never as the root slot of the tile below.
pub(crate) fn locate(level: u32, index: u64) -> (TileId, usize) {
    let tile_level = level / TILE_HEIGHT;
    let local = level % TILE_HEIGHT;
    let per_tile = TILE_HEIGHT - local; // log2 of nodes of this local level per tile
    let tile = TileId {
        level: tile_level as u8,
        index: index >> per_tile,
    };
    let k = index & ((1u64 << per_tile) - 1);
    (tile, slot(local, k))
}

/// In-order slot of the node at `local` level with position `k` inside its tile.
pub(crate) fn slot(local: u32, k: u64) -> usize {
    ((k << (local + 1)) + (1u64 << local) - 1) as usize
}

/// Inverse of [`slot`]: the local level and position of the node at an in-order slot.
pub(crate) fn slot_position(slot: usize) -> (u32, u64) {
    let local = (slot + 1).trailing_zeros();
    (local, (slot as u64) >> (local + 1))
}

/// Number of slots in a stored tile whose first `width` base hashes exist.
pub(crate) fn stored_slots(width: u64) -> usize {
    debug_assert!((1..=TILE_WIDTH).contains(&width));
    (2 * width - 1) as usize
}

/// Bytes of one overlay entry in a merge operand: slot number and hash.
pub(crate) const OVERLAY_ENTRY: usize = 2 + Hash::LEN;

/// Name under which the overlay merge operator is registered (part of the on-disk format).
pub(crate) const OVERLAY_MERGE: &str = "quorumlog-tile-overlay-v1";

/// Appends the overlay entry for `slot` to an operand.
pub(crate) fn push_overlay(operand: &mut Vec<u8>, slot: usize, hash: &[u8]) {
    operand.extend_from_slice(&(slot as u16).to_be_bytes());
    operand.extend_from_slice(hash);
}

/// Full merge: the stored tile prefix with every operand's slots written over it, in
/// order. The result is as long as the furthest slot written (the newest base hash is
/// always the last slot of the prefix). `None` (RocksDB reports corruption) if an operand
/// is malformed.
pub(crate) fn overlay_full<'a>(
    existing: Option<&[u8]>,
    operands: impl IntoIterator<Item = &'a [u8]> + Clone,
) -> Option<Vec<u8>> {
    let base = existing.unwrap_or_default();
    if base.len() > TILE_BYTES || !base.len().is_multiple_of(Hash::LEN) {
        return None;
    }
    // Size the result first: reads of growing tiles merge on every get, and most growing
    // tiles are far smaller than a full one.
    let mut len = base.len();
    for op in operands.clone() {
        if !op.len().is_multiple_of(OVERLAY_ENTRY) {
            return None;
        }
        for entry in op.chunks_exact(OVERLAY_ENTRY) {
            let slot = u16::from_be_bytes([entry[0], entry[1]]) as usize;
            if slot >= TILE_SLOTS {
                return None;
            }
            len = len.max((slot + 1) * Hash::LEN);
        }
    }
    let mut value = Vec::with_capacity(len);
    value.extend_from_slice(base);
    value.resize(len, 0);
    for op in operands {
        for entry in op.chunks_exact(OVERLAY_ENTRY) {
            let slot = u16::from_be_bytes([entry[0], entry[1]]) as usize;
            value[slot * Hash::LEN..(slot + 1) * Hash::LEN].copy_from_slice(&entry[2..]);
        }
    }
    Some(value)
}

/// Partial merge: operands concatenated in order (later entries win when applied).
pub(crate) fn overlay_partial<'a>(operands: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for op in operands {
        if !op.len().is_multiple_of(OVERLAY_ENTRY) {
            return None;
        }
        out.extend_from_slice(op);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_slots_cover_the_tile_once() {
        let mut seen = vec![false; TILE_SLOTS];
        for local in 0..=TILE_HEIGHT {
            for k in 0..(TILE_WIDTH >> local) {
                let s = slot(local, k);
                assert!(!seen[s], "slot {s} used twice");
                seen[s] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn slot_position_inverts_slot() {
        for local in 0..=TILE_HEIGHT {
            for k in 0..(TILE_WIDTH >> local) {
                assert_eq!(slot_position(slot(local, k)), (local, k));
            }
        }
    }

    #[test]
    fn complete_nodes_fit_in_the_stored_prefix() {
        // Every node whose leaves are all among the first w base hashes is inside the prefix.
        for width in 1..=TILE_WIDTH {
            for local in 0..=TILE_HEIGHT {
                for k in 0..(TILE_WIDTH >> local) {
                    if (k + 1) << local <= width {
                        assert!(slot(local, k) < stored_slots(width));
                    }
                }
            }
        }
    }

    #[test]
    fn boundary_levels_live_in_the_tile_above() {
        let (tile, s) = locate(8, 5);
        assert_eq!(tile, TileId { level: 1, index: 0 });
        assert_eq!(s, slot(0, 5));
        let (tile, s) = locate(3, 1000);
        assert_eq!(
            tile,
            TileId {
                level: 0,
                index: 1000 >> 5
            }
        );
        assert_eq!(s, slot(3, 1000 & 31));
    }

    #[test]
    fn overlays_apply_in_order_and_reject_garbage() {
        let h = |b: u8| [b; 32];
        let mut a = Vec::new();
        push_overlay(&mut a, 0, &h(1));
        push_overlay(&mut a, 2, &h(2));
        let mut b = Vec::new();
        push_overlay(&mut b, 1, &h(3));
        push_overlay(&mut b, 2, &h(4));
        let v = overlay_full(None, [a.as_slice(), b.as_slice()]).unwrap();
        assert_eq!(v, [h(1), h(3), h(4)].concat());
        // Partial merges then a full merge give the same value.
        let p = overlay_partial([a.as_slice(), b.as_slice()]).unwrap();
        assert_eq!(overlay_full(None, [p.as_slice()]).unwrap(), v);
        // Existing prefix kept, extended.
        let mut c = Vec::new();
        push_overlay(&mut c, 4, &h(5));
        let w = overlay_full(Some(&v), [c.as_slice()]).unwrap();
        assert_eq!(w, [h(1), h(3), h(4), [0; 32], h(5)].concat());
        assert!(overlay_full(None, [&[1u8, 2, 3][..]]).is_none());
        let mut bad = Vec::new();
        push_overlay(&mut bad, TILE_SLOTS, &h(1));
        assert!(overlay_full(None, [bad.as_slice()]).is_none());
        assert!(overlay_full(Some(&[0u8; 5][..]), []).is_none());
    }
}
