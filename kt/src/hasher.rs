//! The CONIKS sparse Merkle tree hasher, with the byte layout of Trillian's
//! `merkle/coniks` package, so its published test vectors check ours.
//!
//! A node is named by its depth (0 = root, 256 = leaf) and the first `depth` bits of an
//! index. Hashes are domain-separated by a one-byte prefix and bound to the map's id and
//! the node's position:
//!
//! - empty subtree: `H("E" || map_id (u64 BE) || index masked to depth (32 bytes) || depth (u32 BE))`
//! - leaf: `H("L" || map_id || index || 256 (u32 BE) || value)`
//! - interior node: `H(left || right)`
//!
//! An empty subtree's hash depends on where it is, so a proof may leave out empty
//! siblings and the verifier recomputes them; and a tree holding one leaf is not a chain of
//! equal hashes an attacker could splice elsewhere.

use sha2::digest::Digest;
use std::marker::PhantomData;

/// Bits in a map index, and the depth of a leaf.
pub const DEPTH: usize = 256;

/// A 256-bit map index.
pub type Index = [u8; 32];

/// A node hash (32 bytes for both supported hash functions).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `index` with every bit after the first `depth` cleared.
pub fn masked(index: &Index, depth: usize) -> Index {
    let mut out = [0u8; 32];
    let whole = depth / 8;
    out[..whole].copy_from_slice(&index[..whole]);
    let rest = depth % 8;
    if rest != 0 {
        out[whole] = index[whole] & (0xffu8 << (8 - rest));
    }
    out
}

/// Bit `i` of `index`, counting from the most significant bit (bit 0 picks the root's child).
pub fn bit(index: &Index, i: usize) -> bool {
    index[i / 8] & (0x80 >> (i % 8)) != 0
}

/// The CONIKS hasher over digest `D`, which must produce 32 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Coniks<D> {
    map_id: u64,
    _digest: PhantomData<D>,
}

/// Trillian's default strategy (`CONIKS_SHA512_256`), the one with published vectors.
pub type ConiksSha512_256 = Coniks<sha2::Sha512_256>;
/// The same layout over SHA-256 (`CONIKS_SHA256`, Key Transparency's choice since 2018),
/// which the CPU accelerates; the directory uses this one.
pub type ConiksSha256 = Coniks<sha2::Sha256>;

impl<D: Digest> Coniks<D> {
    /// The hasher of map `map_id`, which every hash of the map is bound to.
    pub fn new(map_id: u64) -> Self {
        assert_eq!(
            <D as Digest>::output_size(),
            32,
            "the map needs a 32-byte hash"
        );
        Coniks {
            map_id,
            _digest: PhantomData,
        }
    }

    pub fn map_id(&self) -> u64 {
        self.map_id
    }

    fn finish(d: D) -> Hash {
        let mut h = [0u8; 32];
        h.copy_from_slice(&d.finalize());
        Hash(h)
    }

    /// The hash of the empty subtree at `depth` on the path to `index`.
    pub fn empty(&self, index: &Index, depth: usize) -> Hash {
        let mut d = D::new();
        d.update(b"E");
        d.update(self.map_id.to_be_bytes());
        d.update(masked(index, depth));
        d.update((depth as u32).to_be_bytes());
        Self::finish(d)
    }

    /// The hash of a leaf holding `value` at `index`.
    pub fn leaf(&self, index: &Index, value: &[u8]) -> Hash {
        let mut d = D::new();
        d.update(b"L");
        d.update(self.map_id.to_be_bytes());
        d.update(index);
        d.update((DEPTH as u32).to_be_bytes());
        d.update(value);
        Self::finish(d)
    }

    /// The hash of an interior node from its children's.
    pub fn children(&self, left: &Hash, right: &Hash) -> Hash {
        let mut d = D::new();
        d.update(left.0);
        d.update(right.0);
        Self::finish(d)
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from Trillian's `merkle/coniks/coniks_test.go` (SHA-512/256).
    use super::*;

    fn h(s: &str) -> Hash {
        Hash(hex::decode(s).unwrap().try_into().unwrap())
    }

    const ZEROS: Index = [0; 32];
    const ONES: Index = [0x11; 32];

    #[test]
    fn children_vectors() {
        // Trillian's vectors also hash inputs shorter than a node hash; the layout is the
        // same concatenation, so check it on the raw digest.
        let raw = |l: &[u8], r: &[u8]| {
            let mut d = sha2::Sha512_256::new();
            d.update(l);
            d.update(r);
            hex::encode(d.finalize())
        };
        assert_eq!(
            raw(&[], &[]),
            "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"
        );
        assert_eq!(
            raw(&[0x00], &[0x11]),
            "248423e26b964db547e51deaffefc7e07bea495283dba563d74d69bf06b87497"
        );
        assert_eq!(
            raw(&[0x11], &[0x00]),
            "b5fbd3a07d7d309062044c5f92bc32bb860900f6e2a0e63b034846e267cb25bb"
        );
        let c = ConiksSha512_256::new(0);
        assert_eq!(
            c.children(&Hash(ZEROS), &Hash(ONES)),
            h("c1c6101db394de0d197b6bd90406fa300d28fee7028c7b37406b16edb61cccb4")
        );
        assert_eq!(
            c.children(&Hash(ONES), &Hash(ZEROS)),
            h("4698c0cfa150974ad8d55e9c3f7d20dcdd56e7023931e1f7b5f61fbcf15770c3")
        );
    }

    #[test]
    fn empty_vectors() {
        let cases = [
            (
                0,
                ZEROS,
                0,
                "2b71932d625e7b83ce864f8092ae4eb470670ccff37eaac83f21679bb3b24bbb",
            ),
            (
                1,
                ZEROS,
                0,
                "9a908ed88f429272254a97c6a55f781e15b0cff753fb90ce7591988b398378ea",
            ),
            (
                0,
                ONES,
                1,
                "a9804d4c78c33a72903a5dc71a900a00e55136a425b6e4365c2d90f8303eb233",
            ),
            (
                0,
                ZEROS,
                256,
                "af8545ff33b365f2a45971abc45167634c17bfc883ff0280f56e542663b02417",
            ),
        ];
        for (map, index, depth, want) in cases {
            assert_eq!(
                ConiksSha512_256::new(map).empty(&index, depth),
                h(want),
                "map {map} depth {depth}"
            );
        }
    }

    #[test]
    fn leaf_vectors() {
        let cases: [(u64, Index, &[u8], &str); 5] = [
            (
                0,
                ZEROS,
                b"",
                "b4e04ff32be7f76c9621dd28946c261dd8aea6494bf713c03da75dd9f1ce2fec",
            ),
            (
                1,
                ZEROS,
                b"",
                "83800c063525c35afdfe60733fb631be976d06835f79e9914dd268ec2f313721",
            ),
            (
                0,
                ONES,
                b"",
                "4a95b36a21da32aba1a32d05ae3a1ef200f896c82a7c5ad03da52b17fdcbeb37",
            ),
            (
                0,
                ZEROS,
                b"foo",
                "d1f7b835e5ed66fc564b5a9e0a7ca028a6e4ec85a6c7d9d96b2ad6d0c1369700",
            ),
            // "Test vector from Key Transparency".
            (
                0,
                ONES,
                b"leaf",
                "87f51e6ceb5a46947fedbd1de543482fb72f7459055d853a841566ef8e43c4a2",
            ),
        ];
        for (map, index, value, want) in cases {
            assert_eq!(ConiksSha512_256::new(map).leaf(&index, value), h(want));
        }
    }

    #[test]
    fn masking_keeps_exactly_the_leading_bits() {
        let all = [0xff; 32];
        assert_eq!(masked(&all, 0), [0; 32]);
        let m = masked(&all, 1);
        assert_eq!((m[0], m[1]), (0x80, 0));
        let m = masked(&all, 9);
        assert_eq!((m[0], m[1], m[2]), (0xff, 0x80, 0));
        assert_eq!(masked(&all, 255)[31], 0xfe);
        assert_eq!(masked(&all, 256), all);
        assert!(bit(&all, 0) && !bit(&[0x7f; 32], 0) && bit(&[0x01; 32], 7));
    }

    #[test]
    fn sha256_layout_matches_an_independent_computation() {
        // Computed with Python's hashlib from the layout above (not published upstream).
        assert_eq!(
            ConiksSha256::new(0).empty(&ZEROS, 0),
            h("f3b630c94b7ad406b56bbf86d21ca501e7c25841c6befd7fa151b18244dcb557")
        );
        assert_eq!(
            ConiksSha256::new(0).leaf(&ONES, b"leaf"),
            h("c4a4facdc88fdbc3dc49ec09438700385a4b54ec3572adfcf759cdd39fa4527f")
        );
    }
}
